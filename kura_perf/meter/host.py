"""What makes two measurements comparable: the machine, the code and the key package versions."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

KEY_PACKAGES = (
    "kura", "dagster", "duckdb", "pandas", "numpy", "scikit-learn", "hdbscan", "umap-learn",
    "sentence-transformers", "torch", "openai", "pyarrow",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def host_info() -> dict:
    info = {
        "host_cpu": _cpu_model(),
        "host_cores": os.cpu_count() or 0,
        "host_ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "host_os": f"{platform.system()} {platform.release()}",
    }
    raw = json.dumps(info, sort_keys=True).encode()
    info["host_fingerprint"] = hashlib.sha256(raw).hexdigest()[:12]
    return info


def worker_identity() -> str:
    """Who ran this: the Celery worker's name (e.g. 'w1@host') inside a Celery task, else the host
    name; then the pid. Not cached: a forked pool process has its own pid."""
    name = None
    celery = sys.modules.get("celery")  # only when Celery is already in use: the core never imports it
    if celery is not None:
        try:
            task = celery.current_task
            name = getattr(task.request, "hostname", None) if task is not None else None
        except Exception:  # noqa: BLE001 - outside a task there is no request
            name = None
    return f"{name or socket.gethostname()} pid={os.getpid()}"


@functools.cache
def package_versions() -> dict[str, str]:
    """The key packages' versions, and the interpreter's as "python" (part of a published record's host
    fingerprint, results/: the same code on another Python is another measurement)."""
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def code_version() -> str:
    """The git sha of the kura_perf checkout (with '+dirty' when it has local changes), else the package version."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, env=env)
        if sha.returncode != 0:
            raise OSError(sha.stderr)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, env=env).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "v" + metadata.version("kura_perf")
        except metadata.PackageNotFoundError:
            return "unknown"
