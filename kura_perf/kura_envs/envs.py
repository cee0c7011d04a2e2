"""One cached environment per Kura spec, under the data root's kura_envs/<key>/.

Why not a full virtualenv per spec: the main environment already holds torch (the CPU wheel),
sentence-transformers, Dagster and kura_perf itself, gigabytes that every Kura release since 0.5.0
accepts at the constrained versions. So a spec's environment is a bare venv (`python -m venv
--without-pip`, under a second) whose site-packages holds

  - Kura itself, installed with --no-deps (the release, or the checkout / commit's own build), and
  - any dependency the spec needs at another version than the main environment has (pip's own
    resolution with the main environment's constraints, `pip install --dry-run --report` run by the
    spec environment's interpreter, which sees the main environment's packages as installed), also
    --no-deps,

plus a .pth that adds the main environment's site-packages AFTER its own (site.addsitedir, so the
main environment's own .pth files, editable installs included, work). The spec's Kura and pins shadow
the main ones; everything else is shared. Nothing is ever installed into the main environment
(`--target` into the spec's folder; pip never uninstalls there).

The environment is built in a temporary folder and renamed into place whole, its manifest
(kura-perf-spec.json) last inside it, under a file lock: a second run, or a second process, finds it
and builds nothing. A spec pip cannot install, or whose Kura does not import, is refused with the
reason in one line (KuraSpecError) and leaves nothing behind. No Dagster here.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import site
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from kura_perf.errors import KuraSpecError
from kura_perf.files.atomic import atomic_write_text, publish
from kura_perf.files.locks import file_lock
from kura_perf.kura_envs.spec import ResolvedSpec, checkout_files, pip_reason
from kura_perf.settings.third_party_env import kura_child_env

log = logging.getLogger("kura_perf")

MANIFEST = "kura-perf-spec.json"
MAIN_PTH = "_kura_perf_main_env.pth"
PIP_TIMEOUT_S = 1800
# The constraints the main environment was built with (torch's CPU wheel among them: a plain torch
# requirement pulls a multi-GB CUDA build); a checkout of kura_perf has it at its root.
DEFAULT_CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
IMPORT_CHECK = ("import json, sys, kura, kura.types; from importlib import metadata; "
                "print(json.dumps({'version': metadata.version('kura'), 'file': kura.__file__}))")


@dataclass(frozen=True)
class SpecEnv:
    folder: Path
    manifest: dict
    built: bool  # True: built by this call; False: found in the cache

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def kura_version(self) -> str:
        return self.manifest["kura_version"]


def envs_root(data_root: Path) -> Path:
    return Path(data_root) / "kura_envs"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main_site_packages() -> list[str]:
    """The site-packages of the environment kura_perf runs in (the main one)."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def _run_pip(args: list[str], spec: str, what: str, python: Path | str = sys.executable) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([str(python), "-m", "pip", *args, "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise KuraSpecError(f"kura spec '{spec}': pip {what} took over {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise KuraSpecError(f"kura spec '{spec}': pip cannot {what} it: {pip_reason(done.stderr)}")
    return done


def _source(resolved: ResolvedSpec, work: Path) -> str:
    """What pip installs: `kura==<version>`, or a clean copy of the checkout / commit (pip builds in the
    folder it is given, so the user's checkout is never written to)."""
    spec = resolved.spec
    if spec.kind == "release":
        return f"kura=={resolved.resolved}"
    src = work / "src"
    if spec.kind == "git":
        done = subprocess.run(["git", "-C", str(spec.source), "archive", "--format=tar", resolved.resolved],
                              capture_output=True, timeout=300)
        if done.returncode != 0:
            raise KuraSpecError(f"kura spec '{spec.text}': git archive: {pip_reason(done.stderr.decode())}")
        with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
            tar.extractall(src, filter="data")
    else:
        for path in checkout_files(spec.source):
            target = src / path.relative_to(spec.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return str(src)


def plan(resolved: ResolvedSpec, python: Path, source: str, constraints: Path | None) -> list[str]:
    """pip's resolution of the spec with the main environment's constraints, run by the spec environment's
    interpreter, which sees the main environment's packages as installed: the `name==version` pins the
    spec needs and the main environment does not already satisfy (kura itself aside). A dry run: pip
    installs and uninstalls nothing."""
    report = Path(tempfile.mkstemp(suffix=".json")[1])
    try:
        args = ["install", "--dry-run", "--quiet", "--report", str(report), source]
        if constraints is not None:
            args += ["-c", str(constraints)]
        _run_pip(args, resolved.text, "install", python=python)
        install = json.loads(report.read_text())["install"]
    finally:
        report.unlink(missing_ok=True)
    return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in install
                  if _normal(item["metadata"]["name"]) != "kura")


def _bare_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    sites = sorted(folder.glob("lib/python*/site-packages"))
    if len(sites) != 1:
        raise KuraSpecError(f"the new environment {folder} has no single site-packages")
    lines = [f"import site; site.addsitedir({p!r})" for p in main_site_packages()]
    (sites[0] / MAIN_PTH).write_text("\n".join(lines) + "\n")
    return sites[0]


def _import_check(folder: Path, spec: str) -> dict:
    done = subprocess.run([str(folder / "bin" / "python"), "-c", IMPORT_CHECK], capture_output=True, text=True,
                          timeout=600, cwd=folder, env=kura_child_env())
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise KuraSpecError(f"kura spec '{spec}': installed, but kura does not import: "
                            f"{lines[-1] if lines else 'exit ' + str(done.returncode)}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(found["file"]).resolve().is_relative_to(folder.resolve()):
        raise KuraSpecError(f"kura spec '{spec}': the environment imports kura from {found['file']}, not its own")
    return found


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def ensure_env(resolved: ResolvedSpec, data_root: Path, constraints: Path | None = DEFAULT_CONSTRAINTS) -> SpecEnv:
    """The spec's environment: found in the cache, or built (once, under a lock) and then cached."""
    root = envs_root(data_root).resolve()
    folder = root / resolved.key
    if (manifest := read_manifest(folder)) is not None:
        return SpecEnv(folder, manifest, built=False)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{resolved.key}.lock"):
        if (manifest := read_manifest(folder)) is not None:  # another process built it meanwhile
            return SpecEnv(folder, manifest, built=False)
        if folder.exists():  # a folder without its manifest: an interrupted build, renamed over
            shutil.rmtree(folder)
        constraints = constraints if constraints is not None and Path(constraints).is_file() else None
        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f".building-{resolved.key}-", dir=root))
        try:
            source = _source(resolved, work)
            env = work / "env"
            site_packages = _bare_venv(env)
            log.info("kura env %s: resolving %s with pip", resolved.key, resolved.text)
            pins = plan(resolved, env / "bin" / "python", source, constraints)
            # Kura always, --no-deps into the spec's own site-packages: first on its path, it shadows the
            # main environment's kura even when pip would call that one "already satisfied".
            args = ["install", "--no-deps", "--no-compile", "--quiet", "--target", str(site_packages), source, *pins]
            log.info("kura env %s: installing %s%s", resolved.key, resolved.text,
                     f" and {len(pins)} pinned dependencies ({', '.join(pins)})" if pins else "")
            _run_pip(args, resolved.text, "install")
            found = _import_check(env, resolved.text)
            manifest = {"spec": resolved.text, "kind": resolved.spec.kind, "key": resolved.key,
                        "resolved": resolved.resolved, "kura_version": found["version"], "pins": pins,
                        "main_site_packages": main_site_packages(),
                        "constraints": str(constraints) if constraints else None,
                        "build_s": round(time.perf_counter() - started, 1)}
            atomic_write_text(env / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
            publish(env, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info("kura env %s built in %.1f s", resolved.key, manifest["build_s"])
    return SpecEnv(folder, manifest, built=True)


def current_env_manifest() -> dict | None:
    """The manifest of the spec environment this process runs in, or None in the main environment."""
    return read_manifest(Path(sys.prefix))
