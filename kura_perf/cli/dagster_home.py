"""The CLI's Dagster instance and the clean-up after dead runs; `kura-perf dagster-home`.

A persistent Dagster instance beside the data ($DAGSTER_HOME, else <data root>/dagster_home), so CLI runs
show up in the UI too. Created and first initialised under a file lock: concurrent first runs would
otherwise race in its migrations. Runs open it explicitly (`instance`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kura_perf.defs.instance import DAGSTER_YAML, default_home, open_instance, prepare_dagster_home, reap_and_fail
from kura_perf.settings.paths import Paths

__all__ = ["DAGSTER_YAML", "add_commands", "clean_up_dead_runs", "home", "instance"]


def home(paths: Paths) -> Path:
    """The Dagster home of this data root, created (and first initialised) if needed."""
    return prepare_dagster_home(default_home(paths.root))


def instance(paths: Paths):
    """The CLI's Dagster instance (a context manager: closed when the command is done)."""
    return open_instance(home(paths))


def clean_up_dead_runs(paths: Paths | None = None, check_runs: bool = False) -> list[str]:
    """Stages whose process died become `died` records, their Dagster runs are marked failed. Run before
    every command that reads or writes run records (`main` decides, from the command's `reaps` default).
    Never fatal: a clean-up that fails is a warning, the command still runs."""
    paths = paths or Paths.from_env()
    if not check_runs and not paths.running.is_dir():
        return []
    try:
        return reap_and_fail(paths.root, home=default_home(paths.root), check_runs=check_runs)
    except Exception as exc:  # noqa: BLE001 - clean-up never stops the command (see the docstring)
        logging.getLogger("kura_perf").warning("could not clean up after dead runs: %s: %s", type(exc).__name__, exc)
        return []


def cmd_dagster_home(args) -> int:
    print(home(Paths.from_env()))
    return 0


def add_commands(sub) -> None:
    dagster_home = sub.add_parser("dagster-home", help="create (if needed) and print the Dagster instance folder")
    dagster_home.set_defaults(func=cmd_dagster_home, reaps=False)
