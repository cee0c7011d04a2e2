"""A first run prints kura_perf's own lines (issue 20): no onnxruntime quantization chatter, no
dagster-shared version-mismatch warning, no per-request HTTP log lines, and a progress bar for a person
at a terminal (plain progress lines everywhere else)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with the default warning filters (no PYTHONWARNINGS of ours)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["KURA_PERF_HOME"] = str(tmp_path / "data")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)


# -- 1. onnxruntime's quantization logs through the root logger -------------------------------------

def _record(name: str, level: int, pathname: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 530, msg, None, None)


ORT_QUANTIZER = "/venv/lib/python3.11/site-packages/onnxruntime/quantization/onnx_quantizer.py"


def test_the_quantization_filter_drops_onnxruntimes_root_chatter_only():
    from kura_perf.models.onnx_export import QuantizationChatter

    chatter = QuantizationChatter()
    # What onnxruntime's `logging.info(...)` makes: a record of the root logger from its quantization package.
    assert not chatter.filter(_record("root", logging.INFO, ORT_QUANTIZER,
                                      'Quantization parameters for tensor:"x" not specified'))
    assert not chatter.filter(_record("root", logging.WARNING, ORT_QUANTIZER.replace("onnx_quantizer", "quantize"),
                                      "Please consider to run pre-processing before quantization. Refer to ..."))
    # Its other warnings, our lines, another library's root INFO: all pass.
    assert chatter.filter(_record("root", logging.WARNING, ORT_QUANTIZER, "Failed to infer data type of tensor"))
    assert chatter.filter(_record("kura_perf", logging.INFO, "/repo/kura_perf/models/onnx_export.py", "exported"))
    assert chatter.filter(_record("root", logging.INFO, "/venv/lib/python3.11/site-packages/other/x.py", "hello"))


def _tiny_exporter(model_path: str, target: Path, max_seq_length: int) -> None:
    """A two-MatMul graph: enough for onnxruntime's dynamic quantizer to log its per-tensor INFO lines."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from transformers.utils.logging import tqdm as hf_tqdm

    for _ in hf_tqdm(range(3), desc="Loading weights"):  # what from_pretrained draws on stderr
        pass
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random((8, 4), dtype=np.float32), "W1"),
               numpy_helper.from_array(rng.random((4, 3), dtype=np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(target))


def _vectors(texts) -> np.ndarray:
    """Deterministic vectors per text: the 'encoder' and the 'reference' agree exactly."""
    return np.array([[len(t) + 1.0, (sum(map(ord, t)) % 97) + 1.0, 1.0] for t in texts], dtype=np.float32)


@pytest.fixture
def console():
    """A console handler on the root logger at INFO (what the CLI's basicConfig makes), removed after."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level, filters = root.level, list(root.filters)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        assert root.filters == filters  # the quantization filter is scoped to the quantize call


def test_the_int8_export_prints_our_line_and_not_onnxruntimes(tmp_path, console, capfd):
    pytest.importorskip("onnxruntime")
    from kura_perf.models.onnx_export import ExportCache

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"not real weights: only fingerprinted")
    encoder = SimpleNamespace(encode=_vectors)
    cache = ExportCache(tmp_path / "onnx", str(model_dir), 16, reference=_vectors,
                        encoder_factory=lambda _file: encoder, exporter=_tiny_exporter)
    made = cache.get("onnx-int8")  # the fp32 export, then onnxruntime's quantize_dynamic on it
    assert made.exported_now and made.path.stat().st_size > 0
    out = console.getvalue()
    assert "Quantization parameters" not in out and "pre-processing" not in out, out
    assert "embedding_backend 'onnx-int8': exported the ONNX model and checked it against torch in" in out, out
    assert "embedding_backend 'onnx': exported" in out  # the fp32 graph it was quantized from
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bars, off for the export only
    console.truncate(0)
    assert not cache.get("onnx-int8").exported_now and console.getvalue() == ""  # cached: nothing to say


# -- 2. dagster-shared's version-mismatch warning ---------------------------------------------------

def test_no_version_mismatch_warning_from_the_cli(tmp_path):
    """`kura-perf profiles`, then what `kura-perf run` imports once it builds the definitions (the
    cluster jobs' dagster_celery): stderr has no version-mismatch warning."""
    out = _python("import sys\n"
                  "from kura_perf.cli.main import main\n"
                  "code = main(['profiles'])\n"
                  "import kura_perf.defs.cluster\n"
                  "assert 'dagster_celery' in sys.modules\n"
                  "sys.exit(code)\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "offline" in out.stdout
    assert "version mismatch" not in out.stderr, out.stderr


def test_no_version_mismatch_warning_from_the_code_location(tmp_path):
    """What `dagster dev` loads (workspace.yaml -> kura_perf.definitions)."""
    out = _python("import sys\nimport kura_perf.definitions\nassert 'dagster_celery' in sys.modules\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "version mismatch" not in out.stderr, out.stderr


def test_the_mismatch_filter_is_that_warning_only():
    from kura_perf.console import ignore_cluster_library_mismatch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_cluster_library_mismatch()
        warnings.warn("Found version mismatch between `dagster-shared` (1.13.28) expected library version "
                      "(0.29.28) and `dagster-celery` (0.29.27).", UserWarning, stacklevel=1)
        warnings.warn("Found version mismatch between `dagster-shared` (1.14.0) expected library version "
                      "(0.30.0) and `dagster-celery` (0.29.27).", UserWarning, stacklevel=1)  # another minor: still said
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message)[:60] for w in caught] == [
        "Found version mismatch between `dagster-shared` (1.14.0) exp", "something else"]


def test_a_celery_worker_process_gets_the_same_filter_in_its_environment(tmp_path):
    """A Celery worker (`dagster-celery worker start`) imports dagster_celery before any code of ours runs:
    spawn_worker hands it PYTHONWARNINGS from cluster_library_warning_filters. With that variable, the
    import is quiet; without it, the warning is printed exactly when the installed versions lag."""
    from importlib.metadata import version

    from dagster_shared.libraries import library_version_from_core_version
    from dagster_shared.version import __version__ as core

    from kura_perf.console import cluster_library_warning_filters

    code = "import dagster_celery, dagster_postgres\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    lagging = version("dagster-celery") != library_version_from_core_version(core)
    assert ("version mismatch" in loud.stderr) == lagging, loud.stderr
    assert bool(cluster_library_warning_filters()) == lagging
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                           env={**env, "PYTHONWARNINGS": cluster_library_warning_filters()})
    assert quiet.returncode == 0 and "version mismatch" not in quiet.stderr, quiet.stderr


# -- 3. per-request HTTP log lines -----------------------------------------------------------------

def test_http_client_info_lines_do_not_reach_the_console(tmp_path):
    """The CLI's console logging: the HTTP clients' INFO lines (one per request; openai 3.x's client is
    httpx2) are dropped, their warnings and our own INFO lines are not."""
    out = _python("import logging, sys\n"
                  "from kura_perf.cli.main import main\n"
                  "code = main(['profiles'])\n"
                  "for name in ('httpx', 'httpx2', 'httpcore', 'httpcore2', 'openai'):\n"
                  "    logging.getLogger(name).info('HTTP Request: POST http://127.0.0.1/v1 from %s', name)\n"
                  "    logging.getLogger(name + '._client').info('HTTP Request: POST (child of %s)', name)\n"
                  "    logging.getLogger(name).warning('a warning from %s', name)\n"
                  "logging.getLogger('kura_perf').info('our own line')\n"
                  "sys.exit(code)\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "HTTP Request" not in out.stderr, out.stderr
    assert "INFO kura_perf: our own line" in out.stderr
    assert "WARNING httpx2: a warning from httpx2" in out.stderr


# -- 4. progress: a bar at a terminal, plain lines elsewhere --------------------------------------

class FakeStream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_cli_asks_for_a_bar_only_at_a_terminal():
    from kura_perf.cli.run import progress_bar_wanted

    assert progress_bar_wanted(FakeStream(tty=True)) is True
    assert progress_bar_wanted(FakeStream(tty=False)) is False
    assert progress_bar_wanted(object()) is False  # no isatty at all: not a terminal


def _report(progress, total: int = 40) -> None:
    for done in range(0, total + 1, 8):
        progress(done, total)
    progress.close()


def test_at_a_terminal_progress_is_one_updating_line(tmp_path, caplog):
    from kura_perf.cli.run import progress_bar_wanted
    from kura_perf.pipeline.metered import ProgressLog, progress_for

    stream = FakeStream(tty=True)
    settings = RunSettings(paths=Paths(tmp_path), progress_bar=progress_bar_wanted(stream))
    assert progress_for(SimpleNamespace(settings=settings), "embeddings").bar is not None
    from kura_perf.meter.progress_bar import ProgressBar

    with caplog.at_level(logging.INFO, logger="kura_perf"):
        progress = ProgressLog("embeddings", bar=ProgressBar("embeddings", stream, mininterval_s=0))
        _report(progress)
    written = stream.getvalue()
    assert written.count("\r") >= 2, written  # redrawn in place
    assert written.count("\n") == 1 and written.endswith("\n"), written  # one line, ended when the stage ends
    last = written.rstrip("\n").split("\r")[-1]
    assert last.startswith("embeddings") and "40/40" in last and "items/s" in last, last
    assert progress.latest.done == 40 and progress.latest.total == 40  # still kept for the heartbeat and record
    assert not [r for r in caplog.records if "embeddings:" in r.getMessage()]  # no log lines beside the bar


def test_elsewhere_progress_is_plain_log_lines(tmp_path, caplog):
    from kura_perf.cli.run import progress_bar_wanted
    from kura_perf.pipeline.metered import progress_for

    stream = FakeStream(tty=False)
    settings = RunSettings(paths=Paths(tmp_path), progress_bar=progress_bar_wanted(stream))
    progress = progress_for(SimpleNamespace(settings=settings), "embeddings")
    assert progress.bar is None
    with caplog.at_level(logging.INFO, logger="kura_perf"):
        _report(progress)
    lines = [r.getMessage() for r in caplog.records if r.name == "kura_perf"]
    assert lines and lines[-1].startswith("embeddings: 40/40 (100%)"), lines
    assert all("\r" not in line for line in lines)
    assert stream.getvalue() == ""


def test_a_log_line_during_the_bar_prints_above_it(tmp_path):
    """Console log lines go through tqdm.write while the bar is open, then the handlers are put back."""
    from kura_perf.meter.progress_bar import ProgressBar

    stream = FakeStream(tty=True)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # a console handler, as basicConfig makes
    root.addHandler(handler)
    try:
        bar = ProgressBar("summaries", stream, mininterval_s=0)
        bar.update(1, 4)
        assert handler not in root.handlers  # swapped for tqdm's while the bar is open
        bar.update(4, 4)
        bar.close()
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)


def test_the_bar_setting_survives_the_dagster_resource(tmp_path):
    """The CLI's settings reach the assets through KuraPerfResource: the flag must not be lost there."""
    from kura_perf.defs.resources import KuraPerfResource

    settings = RunSettings(paths=Paths(tmp_path), progress_bar=True)
    assert KuraPerfResource.from_settings(settings).settings().progress_bar is True


def test_progress_rates_count_from_the_start_of_the_work_not_the_set_up(monkeypatch, caplog):
    """A first run exports the embedding model before the work (220 s); the first progress line read
    "256/1000 (26%), 1 items/s, eta 674 s". The rate counts from ProgressLog.start() (called as the
    meter starts), so 500 items 10 s into the work read 50 items/s whatever the set-up took."""
    from kura_perf.pipeline import metered

    clock = [1000.0]
    monkeypatch.setattr(metered.time, "perf_counter", lambda: clock[0])
    progress = metered.ProgressLog("embeddings")
    clock[0] += 220.0  # the backend's set-up
    progress.start()
    clock[0] += 10.0
    with caplog.at_level(logging.INFO, logger="kura_perf"):
        progress(500, 1000)
    line = next(r.getMessage() for r in caplog.records if "embeddings:" in r.getMessage())
    assert "500/1000 (50%), 50 items/s, eta 10 s" in line, line
    assert progress.latest.last_s == 10.0  # seconds since the stage (the meter) started
