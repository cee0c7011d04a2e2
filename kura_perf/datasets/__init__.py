"""Datasets shipped inside the package, named from a profile as `data_file = "builtin:<name>"`.

A profile that names a shipped dataset must run the same wherever kura_perf is installed, so it cannot
hold an absolute path: "builtin:clinc150" is resolved here, in the one place every reader of data_file
goes through (resolve_data_file). The files and their licences are beside this module (README.md:
CLINC150 is CC BY 3.0, attribution required wherever the file or figures from it are published).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kura_perf.corpus import NotEnoughConversations
from kura_perf.errors import KuraPerfError

PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinDataset:
    file: str  # beside this module
    conversations: int  # rows in the file: a larger scale is refused before anything runs
    truth_levels: tuple[str, ...]  # what its profiles score against, coarse to fine
    attribution: str


BUILTINS: dict[str, BuiltinDataset] = {
    "clinc150": BuiltinDataset(
        file="clinc150.jsonl.gz", conversations=22_500, truth_levels=("metadata.domain", "topic"),
        attribution="CLINC150 (Larson et al., EMNLP-IJCNLP 2019), CC BY 3.0: 150 intents in 10 domains"),
}


def builtin_name(data_file: str | None) -> str | None:
    """'clinc150' for 'builtin:clinc150', None for a path (or no data file)."""
    if data_file and data_file.startswith(PREFIX):
        return data_file[len(PREFIX):]
    return None


def _unknown(name: str) -> KuraPerfError:
    return KuraPerfError(f"data_file '{PREFIX}{name}': no such built-in dataset; known: "
                         f"{', '.join(PREFIX + known for known in BUILTINS)}")


def check_data_file(data_file: str | None) -> str | None:
    """data_file unchanged when it is a path or a known builtin; ValueError (for the profile's
    validation message) naming the known builtins otherwise."""
    name = builtin_name(data_file)
    if name is not None and name not in BUILTINS:
        raise ValueError(str(_unknown(name)))
    return data_file


def resolve_data_file(data_file: str) -> str:
    """The file to read for a profile's data_file: a builtin's installed path, else the path as given."""
    name = builtin_name(data_file)
    if name is None:
        return data_file
    if name not in BUILTINS:
        raise _unknown(name)
    path = Path(str(resources.files("kura_perf.datasets").joinpath(BUILTINS[name].file)))
    if not path.is_file():
        raise KuraPerfError(f"data_file '{data_file}': {path} is missing from this installation "
                            f"(package data not installed?)")
    return str(path)


def known_size(data_file: str | None) -> int | None:
    """Conversations in the data file when known without reading it (a builtin's), else None."""
    name = builtin_name(data_file)
    return BUILTINS[name].conversations if name in BUILTINS else None


def check_scale_fits(data_file: str | None, scale_n: int, allow_short: bool = False) -> None:
    """Refuse, before anything runs, a scale larger than a data file of known size (NotEnoughConversations
    names the file and both counts); unknown sizes are left to the loader, which refuses the same way."""
    available = known_size(data_file)
    if available is None or allow_short or scale_n <= available:
        return

    raise NotEnoughConversations(f"{data_file} ({resolve_data_file(data_file)})", available, scale_n)
