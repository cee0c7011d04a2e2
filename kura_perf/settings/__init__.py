"""Settings: `RunSettings` (run.py), the data paths (paths.py), the one module that reads the process
environment (environment.py) and the one that writes it for third-party libraries (third_party_env.py).
This package's __init__ imports none of them, so importing one never runs the others (no import loop
through the package)."""
