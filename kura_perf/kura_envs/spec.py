"""Which Kura to measure: a spec, parsed and resolved to what it means right now.

  kura==0.5.2           a release from the package index (`kura` alone: the latest release)
  path:/src/kura        a local checkout, as it is on disk (uncommitted changes included)
  git:/src/kura@<rev>   one commit of a local git repository (any revision git understands)

Resolving pins a spec to the thing that is built: a release to its version, a commit to its full sha, a
checkout to a hash of its files (plus its commit, for the record). The key names the cached
environment (kura_envs/envs.py), so two specs that mean the same code share one environment, and a
checkout that changed gets a new one. No Dagster here.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kura_perf.errors import KuraSpecError

RELEASE = re.compile(r"^kura(?:==(?P<version>[0-9][0-9A-Za-z.+!-]*))?$")
# What a checkout's hash leaves out when it is no git repository (a git one hashes `git ls-files`).
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache",
             "node_modules", ".tox"}


@dataclass(frozen=True)
class KuraSpec:
    text: str  # as given, kept on every record
    kind: str  # release | path | git
    version: str | None = None  # release: the pinned version; None: the latest
    source: Path | None = None  # path / git: the folder or repository
    rev: str | None = None  # git: the revision as given


@dataclass(frozen=True)
class ResolvedSpec:
    spec: KuraSpec
    resolved: str  # the release's version, the commit's sha, or the checkout's "<commit>[-dirty] tree <hash>"
    key: str  # the cached environment's folder name

    @property
    def text(self) -> str:
        return self.spec.text


def parse_spec(text: str) -> KuraSpec:
    """A spec from its text, or a KuraSpecError naming the three forms."""
    text = text.strip()
    if match := RELEASE.match(text):
        return KuraSpec(text, "release", version=match.group("version"))
    if text.startswith("path:") and len(text) > 5:
        return KuraSpec(text, "path", source=Path(text[5:]).expanduser().resolve())
    if text.startswith("git:") and "@" in text[4:]:
        repo, _, rev = text[4:].rpartition("@")
        if repo and rev:
            return KuraSpec(text, "git", source=Path(repo).expanduser().resolve(), rev=rev)
    raise KuraSpecError(f"kura spec '{text}': expected kura==<version>, path:<folder> or git:<repository>@<revision>")


def _git(repo: Path, *args: str, spec: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KuraSpecError(f"kura spec '{spec}': git failed: {exc}") from None
    if done.returncode != 0:
        reason = next((line for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
        raise KuraSpecError(f"kura spec '{spec}': git {args[0]}: {reason.strip()}")
    return done.stdout


def latest_release(spec: str, python: str = sys.executable) -> str:
    """The newest kura on the package index, asked through pip (`pip index versions`)."""
    done = subprocess.run([python, "-m", "pip", "index", "versions", "kura", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    match = re.search(r"^kura \(([^)]+)\)", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise KuraSpecError(f"kura spec '{spec}': pip cannot list kura's releases: {pip_reason(done.stderr)}")
    return match.group(1)


def pip_reason(stderr: str) -> str:
    """pip's reason in one line: its first ERROR line (else its last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return (errors[0] if errors else (lines[-1] if lines else "no output"))[:400]


def _is_git(folder: Path) -> bool:
    return (subprocess.run(["git", "-C", str(folder), "rev-parse", "--is-inside-work-tree"], capture_output=True,
                           text=True).stdout.strip() == "true")


def checkout_files(folder: Path) -> list[Path]:
    """The files of a checkout that make up its code: git's tracked and untracked-not-ignored files in a
    repository, else every file outside the usual build, cache and environment folders."""
    if _is_git(folder):
        listed = _git(folder, "ls-files", "-co", "--exclude-standard", "-z", spec=f"path:{folder}")
        return sorted(folder / name for name in listed.split("\0") if name and (folder / name).is_file())
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(folder).parts[:-1]) \
                and not any(p.endswith(".egg-info") for p in path.relative_to(folder).parts):
            files.append(path)
    return files


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in checkout_files(folder):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def resolve(spec: KuraSpec, python: str = sys.executable) -> ResolvedSpec:
    """Pin the spec: a release to its version (asking the index only for `kura` unpinned), a commit to its
    sha, a checkout to its files' hash. A folder that is not there, or a revision git does not know, is
    refused here."""
    if spec.kind == "release":
        version = spec.version or latest_release(spec.text, python)
        return ResolvedSpec(spec, version, f"kura-{version}")
    if not spec.source.is_dir():
        raise KuraSpecError(f"kura spec '{spec.text}': {spec.source} is not a folder")
    if spec.kind == "git":
        sha = _git(spec.source, "rev-parse", "--verify", f"{spec.rev}^{{commit}}", spec=spec.text).strip()
        return ResolvedSpec(spec, sha, f"commit-{sha}")
    tree = tree_hash(spec.source)
    commit = ""
    if _is_git(spec.source):
        head = subprocess.run(["git", "-C", str(spec.source), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = _git(spec.source, "status", "--porcelain", spec=spec.text).strip()
        if head.returncode == 0:
            commit = head.stdout.strip() + ("-dirty" if dirty else "") + " "
    return ResolvedSpec(spec, f"{commit}tree {tree}", f"tree-{tree}")
