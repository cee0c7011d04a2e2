"""Run the error catalogue (error_cases.CASES) against the installed Kura and grade what it says.

One worker subprocess imports Kura once and runs the cases one after another, each in its own thread
with the case's timeout: a case that does not return in time is recorded as a `hang` and the worker
moves on (the stuck thread is abandoned; the worker exits when done). Kura's LLM calls go to the
simulator the parent started; cases that need faults reconfigure it through its control endpoint
and restore it afterwards. The parent has an overall deadline too: cases the worker never reported
(it crashed or hung as a whole) are recorded as `hang`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Sequence

from kura_perf.corpus.generator import generate_conversations
from kura_perf.errors import KuraPerfError
from kura_perf.experiments.usability.error_cases import CASES, ErrorCase
from kura_perf.experiments.usability.error_grading import grade
from kura_perf.experiments.usability.records import new_row
from kura_perf.settings.third_party_env import default_openai_key_for_kura, openai_for_kura
from kura_perf.simulator.process import SimulatorControl, SimulatorProcess

_RESULT_MARK = "KURA_PERF_ERROR_CASE "


# -- drivers: the Kura calls a case can make (run inside the worker) -------------------------------------
def _conversations(spec) -> list:
    from kura.types import Conversation

    from kura_perf.backends.kura_types import kura_conversation  # kura: optional

    if spec is not None:
        return [Conversation.model_validate(c) for c in spec]
    return [kura_conversation(c) for c in generate_conversations(2)]


def _summaries(n: int) -> list:
    from kura_perf.experiments.usability.kura_objects import build_kura_objects  # kura: optional

    return build_kura_objects(n)["summaries"] if n else []


def _fill(value, ctx):
    if isinstance(value, str):
        return value.replace("{tmp}", str(ctx["tmp"])).replace("{sim}", ctx["base_url"])
    return value


def drive_validate_conversation(inp, ctx):
    from kura.types import Conversation

    return Conversation.model_validate(inp["record"])


def _dump_path(inp, ctx) -> str:
    if "path" in inp:
        return _fill(inp["path"], ctx)
    path = Path(ctx["tmp"]) / "conversations.json"
    path.write_text(inp["text"])
    return str(path)


def drive_load_dump(inp, ctx):
    from kura.types import Conversation

    return Conversation.from_conversation_dump(_dump_path(inp, ctx))


def drive_load_claude_dump(inp, ctx):
    from kura.types import Conversation

    return Conversation.from_claude_conversation_dump(_dump_path(inp, ctx))


def _checkpoint_manager(spec, ctx, conversations):
    if not spec:
        return None
    from kura.checkpoints import JSONLCheckpointManager, ParquetCheckpointManager

    folder = Path(ctx["tmp"]) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    if spec["format"] == "jsonl":
        (folder / spec["file"]).write_text(spec["text"])
        return JSONLCheckpointManager(str(folder))
    manager = ParquetCheckpointManager(str(folder))
    summaries = _summaries(len(conversations))
    summaries[0].languages = None  # a summary without languages: what an LLM leaves out now and then
    manager.save_checkpoint("summaries", summaries)
    return manager


def drive_summarise(inp, ctx):
    from kura.summarisation import SummaryModel, summarise_conversations

    conversations = _conversations(inp.get("conversations"))
    manager = _checkpoint_manager(inp.get("checkpoint"), ctx, conversations)
    model = SummaryModel(model=inp.get("model", "openai/gpt-4o-mini"), **inp.get("model_kwargs", {}))
    return asyncio.run(summarise_conversations(conversations, model=model, checkpoint_manager=manager))


def _mixed_dimension_model():
    """A Kura embedding model that answers 384-d vectors for some texts and 1536-d for others."""
    from kura.base_classes import BaseEmbeddingModel

    class MixedDimensions(BaseEmbeddingModel):
        async def embed(self, texts):
            return [[0.1] * (384 if i % 2 else 1536) for i, _ in enumerate(texts)]

        def slug(self):
            return "mixed-dimensions"

    return MixedDimensions()


def drive_cluster(inp, ctx):
    from kura.cluster import (
        ClusterDescriptionModel,
        KmeansClusteringModel,
        generate_base_clusters_from_conversation_summaries,
    )
    from kura.embedding import OpenAIEmbeddingModel

    embedding = _mixed_dimension_model() if inp.get("embedding") == "mixed_dimensions" else OpenAIEmbeddingModel()
    return asyncio.run(generate_base_clusters_from_conversation_summaries(
        _summaries(inp.get("n", 0)), embedding_model=embedding,
        clustering_method=KmeansClusteringModel(**inp.get("kmeans", {})),
        clustering_model=ClusterDescriptionModel()))


def drive_checkpoint_dir(inp, ctx):
    from kura.checkpoints import JSONLCheckpointManager

    path = Path(_fill(inp["path"], ctx))
    path.write_text("this is a file, not a folder\n")
    manager = JSONLCheckpointManager(str(path))
    from kura_perf.experiments.usability.kura_objects import build_kura_objects  # kura: optional

    manager.save_checkpoint("summaries", build_kura_objects(2)["summaries"])
    return manager


DRIVERS = {name[len("drive_"):]: fn for name, fn in globals().items() if name.startswith("drive_")}


# -- one case ---------------------------------------------------------------------------------------------
class _Logged(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _raised_in(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    filename = frames[-1].filename
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1].removesuffix(".py").replace("/", ".")
    parts = Path(filename).with_suffix("").parts
    return ".".join(parts[-2:])


def _apply_env(case: ErrorCase, ctx):
    """Kura's clients configured as the case says (they read only the environment); undo() when done."""

    return openai_for_kura(ctx["api_key"], case.input.get("base_url", ctx["base_url"]),
                           unset=case.input.get("unset_env", []))


def run_case(case: ErrorCase, ctx: dict) -> dict:
    """Run one case in a thread with its timeout; a raw result dict (graded by the parent)."""
    import dataclasses

    if ctx.get("max_timeout_s"):
        case = dataclasses.replace(case, timeout_s=min(case.timeout_s, ctx["max_timeout_s"]))

    tmp = Path(tempfile.mkdtemp(prefix=f"{case.case_id}-", dir=ctx["workdir"]))
    case_ctx = {**ctx, "tmp": tmp}
    control = None
    if case.input.get("simulator") and ctx.get("sim_port"):
        control = SimulatorControl()
        control.port = ctx["sim_port"]
        control.configure(**case.input["simulator"])
    env = _apply_env(case, ctx)
    handler = _Logged()
    logging.getLogger("kura").addHandler(handler)
    box: dict = {}

    def target():
        try:
            box["result"] = DRIVERS[case.driver](case.input, case_ctx)
        except BaseException as exc:  # noqa: BLE001 - the error is the finding
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"case-{case.case_id}", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    thread.join(case.timeout_s)
    wall = time.perf_counter() - t0
    logging.getLogger("kura").removeHandler(handler)
    env.undo()
    if control is not None:
        control.configure(rate_limit_rate=0.0, error_rate=0.0)
        control.reset()
    out = {"case_id": case.case_id, "wall_s": wall, "timeout_s": case.timeout_s}
    if thread.is_alive():
        return {**out, "outcome": "hang",
                "error_message": f"no answer within {case.timeout_s:g} s" +
                                 (f" (Kura logged: {'; '.join(handler.messages)[:500]})" if handler.messages else "")}
    if "error" in box:
        exc = box["error"]
        return {**out, "outcome": "error", "error_type": type(exc).__name__, "error_message": str(exc)[:4000],
                "raised_in": _raised_in(exc)}
    if handler.messages:
        return {**out, "outcome": "silent", "error_type": "logged", "error_message": "; ".join(handler.messages)[:4000],
                "raised_in": "kura (logged, call went on)"}
    return {**out, "outcome": "accepted", "error_message": None}


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the error-clarity worker (used by kura-perf error-clarity)")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--cases", nargs="+", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--sim-port", type=int)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--max-timeout", type=float)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("kura").setLevel(logging.ERROR)  # what Kura logs at ERROR is part of a case's answer

    default_openai_key_for_kura("sk-kura-perf-simulator")
    openai_for_kura(None, args.base_url)  # this worker process exists to run Kura: never undone
    import kura.summarisation  # noqa: F401 - imported once, before the timed cases

    ctx = {"base_url": args.base_url, "sim_port": args.sim_port, "workdir": args.workdir,
           "api_key": "sk-kura-perf-simulator", "max_timeout_s": args.max_timeout}
    by_id = {c.case_id: c for c in CASES}
    for case_id in args.cases:
        print(_RESULT_MARK + json.dumps(run_case(by_id[case_id], ctx), default=str), flush=True)
    sys.stdout.flush()
    os._exit(0)  # abandoned (hung) case threads must not keep the worker alive


# -- the parent ---------------------------------------------------------------------------------------------
def run_error_catalogue(workdir: Path, cases: Sequence[str] | None = None, run_id: str | None = None,
                        log=None, max_timeout_s: float | None = None) -> list[dict]:
    """Every case (or the named ones), graded; rows ready for the store table `error_clarity`.
    max_timeout_s caps every case's timeout (the tests use it to record a hang quickly)."""
    import subprocess

    by_id = {c.case_id: c for c in CASES}
    chosen = list(cases or by_id)
    unknown = [c for c in chosen if c not in by_id]
    if unknown:
        raise KuraPerfError(f"unknown error case(s) {unknown}; expected some of {', '.join(by_id)}")
    run_id = run_id or uuid.uuid4().hex
    scratch = Path(workdir) / run_id[:12]  # the cases' files; removed when the catalogue is done
    scratch.mkdir(parents=True, exist_ok=True)
    timeouts = {c: min(by_id[c].timeout_s, max_timeout_s or by_id[c].timeout_s) for c in chosen}
    deadline = 120.0 + sum(timeouts.values())
    raw: dict[str, dict] = {}
    with SimulatorProcess({"latency_ms": 2, "p99_ms": 2}) as sim:
        command = [sys.executable, "-m", "kura_perf.experiments.usability.error_clarity", "--worker", "--cases", *chosen,
                   "--base-url", sim.base_url, "--sim-port", str(sim.port), "--workdir", str(scratch)]
        if max_timeout_s:
            command += ["--max-timeout", str(max_timeout_s)]
        env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            stdout, stderr = proc.communicate()
        for line in stdout.splitlines():
            if line.startswith(_RESULT_MARK):
                result = json.loads(line[len(_RESULT_MARK):])
                raw[result["case_id"]] = result
    shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for case_id in chosen:
        case = by_id[case_id]
        result = raw.get(case_id) or {
            "outcome": "hang", "timeout_s": timeouts[case_id],
            "error_message": f"the worker never reported this case (exit code {proc.returncode}): "
                             f"{' / '.join(stderr.strip().splitlines()[-3:])[:800]}"}
        g = grade(result["outcome"], result.get("error_message"), result.get("error_type"),
                  result.get("raised_in"), case.subjects)
        rows.append(new_row(run_id, case_id=case_id, category=case.category, description=case.description,
                            kura_call=case.kura_call, outcome=result["outcome"], error_type=result.get("error_type"),
                            error_message=result.get("error_message"), raised_in=result.get("raised_in"),
                            wall_s=result.get("wall_s"), timeout_s=result.get("timeout_s", timeouts[case_id]),
                            names_subject=g.names_subject,
                            says_expected=g.says_expected, suggests_fix=g.suggests_fix,
                            raw_traceback=g.raw_traceback, score=g.score, grade=g.grade))
        if log:
            log(f"error case {case_id}: {result['outcome']} -> {g.grade} ({g.score}/4)")
    return rows


if __name__ == "__main__":
    worker_main()
