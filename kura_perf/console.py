"""What a person sees on the console: kura_perf's own lines, not the chatter of the libraries under it.

Set at the edges only (the CLI's `main`, the Dagster code location `kura_perf/definitions.py`), never
deep in the code: a library that logs or warns is configured where the process starts. No Dagster
import here (the CLI imports this before it knows whether Dagster is needed).
"""

from __future__ import annotations

import logging
import warnings

# Loggers whose INFO lines are one per request or per file: raised to WARNING on the console, so
# their warnings and errors still show. httpx2 / httpcore2: openai 3.x's default HTTP client (what
# Kura's instructor client uses) logs `HTTP Request: POST ... "200 OK"` at INFO for every call;
# httpx / httpcore: the same from the clients that carry our counting transport.
QUIET_LOGGERS = ("alembic", "sentence_transformers", "numba",
                 "httpx", "httpcore", "httpx2", "httpcore2", "openai")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# dagster-celery and dagster-postgres trail dagster by one patch release: the newest on the package
# index is 0.29.27 (for dagster 1.13.27) while dagster is 1.13.28, and each of their releases pins one
# exact dagster, so they are installed with --no-deps (Makefile, README "Cluster mode"). dagster-shared
# then warns on every import of them (each `kura-perf run`, every `dagster dev` load). Only that
# same-minor mismatch is ignored: a wider one (another minor) still warns. Drop this when the index
# has a release matching dagster's.
CLUSTER_LIBRARY_MISMATCH = (r"Found version mismatch between `dagster-shared` \(1\.13\.\d+\) expected library "
                            r"version \(0\.29\.\d+\) and `dagster-(celery|postgres)` \(0\.29\.\d+\)")


def ignore_cluster_library_mismatch() -> None:
    """Ignore dagster-shared's warning about dagster-celery / dagster-postgres one patch behind (see
    CLUSTER_LIBRARY_MISMATCH); every other warning is left as it was."""
    warnings.filterwarnings("ignore", message=CLUSTER_LIBRARY_MISMATCH, category=UserWarning)


def cluster_library_warning_filters() -> str:
    """PYTHONWARNINGS for a process we start that imports dagster-celery / dagster-postgres before any code of
    ours can filter (a Celery worker: `dagster-celery worker start` imports dagster_celery first): `ignore`
    entries for the exact mismatch warnings of the installed libraries, only when they are the same minor
    as the dagster installed (the one-patch lag CLUSTER_LIBRARY_MISMATCH describes); "" otherwise. The
    variable takes literal message prefixes, not patterns, hence the exact text."""
    from importlib.metadata import PackageNotFoundError, version

    from dagster_shared.libraries import library_version_from_core_version
    from dagster_shared.version import __version__ as core

    expected = library_version_from_core_version(core)
    entries = []
    for name in ("dagster-celery", "dagster-postgres"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed != expected and installed.split(".")[:2] == expected.split(".")[:2]:
            message = (f"Found version mismatch between `dagster-shared` ({core}) expected library version "
                       f"({expected}) and `{name}` ({installed}).")
            entries.append(f"ignore:{message}:UserWarning")
    return ",".join(entries)


def quiet_third_party_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(verbose: bool = False) -> None:
    """The CLI's console logging: ours at INFO (DEBUG with -v) on stderr, the chatty libraries at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")
    quiet_third_party_loggers()
