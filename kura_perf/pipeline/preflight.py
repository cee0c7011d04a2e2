"""Pre-flight: every input a run needs, checked before Dagster, a model or a stage starts.

One function, `check_run_inputs`, called by every way a run begins: `kura-perf run` and `sweep`
before they open the Dagster instance, `kura-perf matrix` for each of its profiles before the first
partition, and each stage asset (defs/assets.py) before its stage runs, for runs launched from the UI.
A bad input is one KuraPerfError naming the path, profile or key (the CLI prints it as one line and
exits 2) instead of an error from deep inside a run that has already started:

* the stage names (`--stages sumaries` is refused naming the nearest stage, before anything is
  imported or created: a typo used to cost a Dagster instance and seconds of start-up first);
* the profile: found, and every value of the right type (profiles/schema.py: `batch_size = true` and
  `data_file = ""` are refused there, naming the profile, key and value);
* the profile's data_file, when the conversations stage is to run: present, readable and a regular
  file (corpus/files.py looks with stat(), so a FIFO is never opened: reading one blocks for ever),
  refused naming the profile, its file, the key and the path it resolved to (a relative data_file is
  taken from the working directory: the message says which);
* for a run of only some stages (`kura-perf run --stages`), the stored outputs those stages read: a
  stage whose input is missing would otherwise fail inside Dagster (exit 1 and a failed record) for
  what is a wrong command line;
* what the profile's models need here (an API key for a real endpoint, the kura package for the kura
  backend: backends/model_factory.preflight);
* the data root (KURA_PERF_HOME) and a local results location: folders that exist or can be made,
  and can be written in (checked last, as it creates the data root when there is none yet).

It reads no conversation: the records themselves are checked, line by line, when the stage loads them.
"""

from __future__ import annotations

import errno
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path

from kura_perf.backends.model_factory import preflight as check_models
from kura_perf.corpus.files import check_conversation_file
from kura_perf.datasets import builtin_name, check_scale_fits, resolve_data_file
from kura_perf.errors import InputDataError, KuraPerfError, did_you_mean, where_path
from kura_perf.files.location import Location
from kura_perf.files.outputs import has_stage
from kura_perf.profiles import Profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES, UPSTREAM

DATA_STAGE = "conversations"  # the one stage that reads the profile's data_file


def check_run_inputs(settings: RunSettings, profile_name: str, stages: Iterable[str] | None = None,
                     scale_n: int | None = None, inputs_in: Path | Location | None = None,
                     kura_in_spec_env: bool = False) -> Profile:
    """The profile to run, once everything the run needs has been checked; a KuraPerfError otherwise.

    stages: the stages about to run (None: all of them); the data file matters only to conversations.
    scale_n: the partition's conversation count, checked against a built-in dataset's size when given.
    inputs_in: the partition folder whose stored outputs the stages read, when only some stages run
    (`kura-perf run --stages`): each stage's input must be there or be among the stages.
    kura_in_spec_env: the Kura stages run in a spec's own environment (`run --kura`, `versions`), so
    Kura need not be installed in this one."""
    if stages is not None:
        check_stage_names(stages)
    profile = settings.profile(profile_name)
    if inputs_in is not None and stages is not None:
        check_stage_inputs(inputs_in, stages)
    if profile.data_file and (stages is None or DATA_STAGE in stages):
        check_profile_data_file(profile, settings)
        if scale_n is not None:
            check_scale_fits(profile.data_file, scale_n, profile.allow_short_data)  # 50k of 22,500 rows

    check_models(profile, settings, kura_in_spec_env=kura_in_spec_env)
    check_data_root(settings.paths)  # last: it may create the data root, which a refused run must not
    return profile


def check_stage_names(stages: Iterable[str], option: str = "--stages") -> None:
    """Every name one of STAGES; else one line naming the first unknown one, its nearest stage and all."""
    for name in stages:
        if name not in STAGES:
            raise KuraPerfError(f"{option}: unknown stage '{name}'{did_you_mean(name, STAGES)}; "
                                f"the stages are {', '.join(STAGES)}")


def check_stage_inputs(folder: Path | Location, stages: Iterable[str]) -> None:
    """Each stage's upstream output (stages/base.py UPSTREAM) is stored in `folder`, or is one of `stages`."""
    stages = list(stages)
    for stage in (s for s in STAGES if s in stages):  # pipeline order: the first stage that would fail
        missing = [u for u in UPSTREAM[stage] if u not in stages and not has_stage(folder, u)]
        if missing:
            needed = ", ".join(f"'{u}'" for u in missing)
            raise KuraPerfError(f"--stages: stage '{stage}' reads the output of {needed}, which is not stored in "
                                f"{folder}; add {' '.join(missing)} to --stages (or run them first)")


def check_profile_data_file(profile: Profile, settings: RunSettings) -> Path:
    """The profile's data_file as the conversations stage will open it, checked (present, readable, a
    regular file); else one line naming the profile, where it is defined, the key and the path it resolved
    to, with what a relative path was resolved against."""
    data_file = profile.data_file
    try:
        resolved = resolve_data_file(data_file)
    except KuraPerfError as exc:
        raise KuraPerfError(f"profile '{profile.name}' ({profile_source(profile.name, settings)}): {exc}") from None
    try:
        return check_conversation_file(resolved)
    except InputDataError as exc:
        where = f"'{data_file}' is {resolved}" if builtin_name(data_file) else where_path(resolved)
        problem = f"expected {exc.expected}" + (f" (got {exc.got})" if exc.got is not None else "")
        raise KuraPerfError(f"profile '{profile.name}' ({profile_source(profile.name, settings)}), key 'data_file': "
                            f"{where}: {problem}") from None


def profile_source(name: str, settings: RunSettings) -> str:
    """Where a profile is defined: the extra profiles file (named by --profiles, --profiles-file or
    KURA_PERF_PROFILES; its profiles win over the built-in ones) when it has `name`, else the built-ins."""
    extra = settings.profiles_file
    if extra:
        try:
            names = set(tomllib.loads(Path(extra).read_text()))
        except (OSError, ValueError):  # already loaded once for the profile itself: not expected here
            names = set()
        if name in names:
            return f"defined in {Path(extra).absolute()}"
    return "a built-in profile"


def check_data_root(paths: Paths) -> None:
    """The data root, and the results location when it is another local folder, exist (or can be
    created) and can be written in."""
    usable_folder(paths.root, "data root", "KURA_PERF_HOME")
    results = paths.results_root
    if not isinstance(results, Location) and Path(results) != paths.root:
        usable_folder(Path(results), "results location", "KURA_PERF_RESULTS")


def usable_folder(folder: Path, what: str, setting: str) -> None:
    """Create `folder` if needed and write a scratch file in it; a KuraPerfError saying why not."""
    what = f"{what} {folder} ({setting})"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise KuraPerfError(f"{what} is not usable: it is a file, not a folder") from None
    except NotADirectoryError:
        raise KuraPerfError(f"{what} is not usable: {_file_in_path(folder)} is a file, not a folder") from None
    except OSError as exc:
        raise KuraPerfError(f"{what} is not usable: cannot create it ({_reason(exc)})") from None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".kp-preflight-"):
            pass
    except OSError as exc:
        raise KuraPerfError(f"{what} is not usable: cannot write in it ({_reason(exc)})") from None


def _file_in_path(folder: Path) -> Path:
    """The first component of `folder` that exists but is not a folder."""
    for parent in [*reversed(folder.parents), folder]:
        if parent.exists() and not parent.is_dir():
            return parent
    return folder


def _reason(exc: OSError) -> str:
    names = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENOSPC: "no space left on the device"}
    return names.get(exc.errno) or exc.strerror or type(exc).__name__

