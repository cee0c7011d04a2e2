"""What every usability record carries so rows from different machines and code stay comparable
(the store's COMPARABILITY columns)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from kura_perf.meter.host import code_version, host_info, package_versions


def comparability(run_id: str) -> dict:
    versions = package_versions()
    return {
        "run_id": run_id,
        "code_version": code_version(),
        "package_versions": json.dumps(versions, sort_keys=True),
        "kura_version": versions.get("kura"),
        **host_info(),
    }


def new_row(run_id: str, **fields) -> dict:
    return {"record_id": uuid.uuid4().hex, "recorded_at": datetime.now(timezone.utc), **fields,
            **comparability(run_id)}
