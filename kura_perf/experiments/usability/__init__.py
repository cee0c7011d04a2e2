"""Kura's usability and checkpoint formats (proposal §2.1, issue 13): measured through the installed
Kura package itself. No Dagster here: `kura_perf/defs/usability.py` and the CLI wire these modules.

  kura_objects    Kura's own objects (conversations, summaries, clusters, projected clusters) at a scale
  checkpoints     write/reload time, bytes and peak memory of Kura's three checkpoint managers
  examples        the example scripts in examples/: line counts and running them against the simulator
  onboarding      time to a first working pipeline in a fresh virtualenv
  error_cases     the catalogue of bad inputs fed to Kura (data: one entry per case)
  error_grading   the explicit rules each Kura error is graded by
  error_clarity   runs the catalogue (each case with a timeout) into graded rows
"""
