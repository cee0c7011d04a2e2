"""Where a report goes, and whose files are there: checked before anything is built.

A report's destination may be any folder (`kura-perf report --out DIR`). A manifest (.kura-perf-report.json)
lists the files an earlier report wrote there; only those are ever replaced or removed. This module is
light on purpose (no pandas, matplotlib or store): `kura-perf report` checks the destination with it
before it imports the report's modules or reads a record, so a folder holding someone else's index.html
is refused at once, with nothing built and nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

from kura_perf.errors import KuraPerfError

INDEX = "index.html"  # every report writes it (the figures beside it vary with the records)
MANIFEST = ".kura-perf-report.json"  # the files this report wrote, so a rebuild removes only those
REPORT_FILES = (".html", ".png")


def owned_files(out_dir: Path, legacy_ok: bool) -> set[str]:
    """Names the previous report in out_dir wrote (its manifest). In the default reports folder, a report
    from before manifests existed owns its .html and .png files: that folder is kura-perf's own."""
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        try:
            names = json.loads(manifest.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            names = []
        return {n for n in names if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")}
    if legacy_ok and out_dir.is_dir():
        return {p.name for p in out_dir.iterdir() if p.is_file() and p.suffix in REPORT_FILES}
    return set()


def refuse_to_overwrite_foreign(out_dir: Path, names, owned: set[str]) -> None:
    """A KuraPerfError naming the files among `names` that exist in out_dir and no earlier report wrote."""
    foreign = [n for n in names if n not in owned and (out_dir / n).exists()]
    if foreign:
        raise KuraPerfError(f"refusing to overwrite {', '.join(foreign[:5])} in {out_dir}: not written by an earlier "
                            f"kura-perf report (not in {MANIFEST}); move them or choose another folder")


def check_destination(out_dir: Path, default: bool) -> set[str]:
    """The files of out_dir an earlier report owns, once out_dir is known to be usable for a report: not
    a file, and no index.html there that kura-perf did not write. default: out_dir is the data root's own
    reports folder (where a report from before manifests existed owns its files)."""
    if out_dir.is_file():
        raise KuraPerfError(f"report destination {out_dir} is a file, not a folder")
    owned = owned_files(out_dir, legacy_ok=default)
    refuse_to_overwrite_foreign(out_dir, [INDEX], owned)
    return owned
