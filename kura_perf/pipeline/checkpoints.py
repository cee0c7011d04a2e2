"""Stage outputs as checkpoints: what produced each one, so a resumed pipeline reuses only what still holds.

Each stage's manifest (kura_perf/files/outputs.py) can carry a `checkpoint` entry: the profile hash it was
computed under, the run that produced it, a nonce of its own, and the nonces of the upstream outputs it
read. An output is reusable when its profile hash matches and every input it read is still the same
file set (same nonces): redoing an upstream stage gives it a new nonce, which invalidates everything
built on the old one, so a resume never mixes outputs of two different upstream runs.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from kura_perf.files.outputs import peek_manifest as read_manifest


def nonce(folder: Path, stage: str) -> str | None:
    manifest = read_manifest(folder, stage) or {}
    return (manifest.get("checkpoint") or {}).get("nonce")


def describe(folder: Path, reads: tuple[str, ...], profile_hash: str, run_id: str,
             custom_step: str | None = None, carry_inputs_of: str | None = None) -> dict:
    """The checkpoint entry for an output about to be computed from `reads`.

    carry_inputs_of: a custom step rewrites the output of the stage it follows; the rewritten output
    depends on what that stage read, not on the stage's own (replaced) output.
    """
    if carry_inputs_of is not None:
        previous = (read_manifest(folder, carry_inputs_of) or {}).get("checkpoint") or {}
        inputs = dict(previous.get("inputs") or {})
    else:
        inputs = {name: nonce(folder, name) for name in reads}
    return {"profile_hash": profile_hash, "run_id": run_id, "nonce": uuid.uuid4().hex, "inputs": inputs,
            "custom_step": custom_step}


def reusable(folder: Path, stage: str, reads: tuple[str, ...], profile_hash: str,
             custom_step: str | None = None) -> bool:
    """True when the stored output of `stage` was computed under this profile from the current inputs
    (and, for the stage a custom step follows, already transformed by that step, or not, as asked)."""
    checkpoint = (read_manifest(folder, stage) or {}).get("checkpoint")
    if not checkpoint or checkpoint.get("profile_hash") != profile_hash:
        return False
    if checkpoint.get("custom_step") != custom_step:
        return False
    current = {name: nonce(folder, name) for name in reads}
    return all(current.values()) and checkpoint.get("inputs") == current


def producer_run(folder: Path, stage: str) -> str | None:
    """The run whose stage produced the stored output (for checks on a stage a resume skipped)."""
    manifest = read_manifest(folder, stage) or {}
    return (manifest.get("checkpoint") or {}).get("run_id")
