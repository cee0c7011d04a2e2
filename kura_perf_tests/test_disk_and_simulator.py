"""Issue 23, defects 4 and 8.

Disk full (4): on a real small tmpfs (mounted for the test; skipped where mounting is not allowed),
every stage writer (Parquet tables, .npy arrays, the manifest; all at once or streamed) fails with
an error that says "No space left on device" and names the file, and leaves nothing of the stage
behind: no temp file and no output file without its manifest. numpy's errno-less short write
("384000 requested and 100320 written") is translated too, also tested without a mount.

The simulator (8): it refuses what the real OpenAI API refuses, in OpenAI's error shape: an unknown
model (404 model_not_found), `n` outside 1..128 and a bad `max_tokens` (400 naming the param), a
request over the model's context (400) and a body over the size cap (413), and a client that hangs up
mid-request costs one log line, not a traceback. Models a profile or the config names are served.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kura_perf.files import atomic, outputs
from kura_perf.files.outputs import StageData
from kura_perf.pipeline import streaming
from kura_perf.stages.base import StageResult
from kura_perf_tests.simulator_fixtures import fresh_simulator, pid_gone, shared_simulator
from kura_perf_tests.tmpfs import mounted_tmpfs

# --- disk full ------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted after the test (also on failure)."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def _leave_free(disk: Path, leave_bytes: int) -> None:
    """A ballast file that leaves about `leave_bytes` free on the tmpfs."""
    st = os.statvfs(disk)
    with open(disk / "ballast", "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave_bytes, 0))


def _left_behind(folder: Path, stage: str) -> list[str]:
    """Whatever of `stage` is in `folder` besides its (empty) lock file: outputs, temps, part folders."""
    return sorted(p.name for p in folder.iterdir() if stage in p.name and p.name != f".{stage}.lock")


def _ids(n: int) -> pd.DataFrame:
    return pd.DataFrame({"chat_id": [f"chat-{i:06d}" for i in range(n)]})


def _assert_disk_full_named(exc: BaseException, path: Path) -> None:
    assert "no space left on device" in str(exc).lower(), str(exc)
    assert str(path) in str(exc), str(exc)


def test_disk_full_on_an_array_names_it_and_leaves_no_table_behind(tiny_disk):
    """The fault probe's case: embeddings' ids table fits, its 300 KB vectors do not."""
    folder = tiny_disk / "out"
    folder.mkdir()
    _leave_free(tiny_disk, 100_000)
    data = StageData(tables={"ids": _ids(200)}, arrays={"main": np.ones((200, 384), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(folder, "embeddings", data)
    _assert_disk_full_named(raised.value, folder / "embeddings.npy")
    assert _left_behind(folder, "embeddings") == []
    assert not outputs.has_stage(folder, "embeddings")


def test_disk_full_on_the_manifest_unpublishes_the_stage_files(tiny_disk):
    """Tables and arrays fit, the manifest (here made large by its checkpoint) does not: none of the
    stage's files may stay in place without it."""
    folder = tiny_disk / "out"
    folder.mkdir()
    _leave_free(tiny_disk, 200_000)
    data = StageData(tables={"main": _ids(50)}, arrays={"main": np.ones((50, 8), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(folder, "summaries", data, checkpoint={"padding": "x" * 400_000})
    _assert_disk_full_named(raised.value, folder / "summaries.manifest.json")
    assert _left_behind(folder, "summaries") == []


def test_disk_full_while_streaming_names_the_file_and_cleans_up(tiny_disk):
    folder = tiny_disk / "out"
    outputs.write_stage(folder, "summaries", StageData(tables={"main": _ids(600)}))
    _leave_free(tiny_disk, 150_000)

    class Vectors:
        name = "fake"

        def run(self, stage, inputs):
            table = inputs.upstream["summaries"].tables["main"]
            vectors = np.ones((len(table), 256), dtype=np.float32)  # 100 KB a batch
            return StageResult(StageData(tables={"ids": table}, arrays={"main": vectors}), len(table), len(table))

    with pytest.raises(OSError) as raised:
        streaming.run_streamed("embeddings", Vectors(), folder, 600, batch_size=100)
    _assert_disk_full_named(raised.value, folder / "embeddings.npy")
    assert _left_behind(folder, "embeddings") == []
    assert outputs.has_stage(folder, "summaries")  # the upstream stage is untouched


def test_numpy_short_write_is_called_disk_full_and_named(tmp_path, monkeypatch):
    """Without a mount: np.save's own message, on a disk with (as the filesystem reports) no room left."""
    def short_write(path, array):
        path.write_bytes(b"\x93NUMPY partial")
        raise OSError("384000 requested and 100320 written")

    monkeypatch.setattr(outputs, "_save_npy", short_write)
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: 0, raising=False)  # the filesystem says: full
    data = StageData(tables={"ids": _ids(10)}, arrays={"main": np.ones((10, 4), dtype=np.float32)})
    with pytest.raises(OSError) as raised:
        outputs.write_stage(tmp_path, "embeddings", data)
    _assert_disk_full_named(raised.value, tmp_path / "embeddings.npy")
    assert "384000" in str(raised.value)  # what numpy said is kept
    assert _left_behind(tmp_path, "embeddings") == []


# --- the simulator refuses what the real API refuses ----------------------------------------------------------

FAST = {"latency_ms": 2, "p99_ms": 8, "chat_ms_per_output_token": 0, "seed": 3}
sim = shared_simulator(FAST)
fresh = fresh_simulator(FAST)
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client(fresh):
    import openai

    with openai.OpenAI(base_url=fresh.base_url, api_key="sk-test", max_retries=0, timeout=20) as c:
        yield c


def _refused(call, status: int) -> dict:
    """The error object of a refused call, after checking OpenAI's shape: message, type, param, code."""
    import openai

    with pytest.raises(openai.APIStatusError) as raised:
        call()
    assert raised.value.status_code == status, raised.value
    error = raised.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    return error


def test_unknown_model_is_404_model_not_found(fresh, client):
    for call in (lambda: client.chat.completions.create(model="gpt-4o-minii", messages=HELLO),
                 lambda: client.embeddings.create(model="text-embeding-3-small", input="x")):
        error = _refused(call, 404)
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert "does not exist" in error["message"]
    known = client.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=HELLO)  # a dated snapshot
    assert known.choices[0].message.content
    statuses = {e["model"]: e["status"] for e in fresh.log()["entries"]}
    assert statuses == {"gpt-4o-minii": "404", "text-embeding-3-small": "404", "gpt-4o-mini-2024-07-18": "200"}


@pytest.mark.parametrize("n, code", [(-3, "integer_below_min_value"), (0, "integer_below_min_value"),
                                     (129, "integer_above_max_value"), (100_000_000, "integer_above_max_value"),
                                     ("2", "invalid_type")])
def test_n_outside_1_to_128_is_400_naming_n(client, n, code):
    error = _refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, n=n), 400)
    assert (error["param"], error["code"], error["type"]) == ("n", code, "invalid_request_error")
    assert (str(n) if code != "invalid_type" else "a string") in error["message"]


def test_n_within_range_gives_n_choices(client):
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, n=3)
    assert [c.index for c in answer.choices] == [0, 1, 2]


@pytest.mark.parametrize("param, value, code", [
    ("max_tokens", 1e12, "invalid_type"),  # JSON 1e12 is a decimal number
    ("max_tokens", 10**12, "invalid_value"),  # over gpt-4o-mini's 16,384 output tokens
    ("max_tokens", 0, "integer_below_min_value"),
    ("max_completion_tokens", -5, "integer_below_min_value"),
    ("max_completion_tokens", 16_385, "invalid_value"),
])
def test_max_tokens_must_be_a_positive_integer_within_the_models_limit(client, param, value, code):
    error = _refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, **{param: value}), 400)
    assert (error["param"], error["code"]) == (param, code), error


def test_max_tokens_at_the_models_limit_is_served(client):
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_completion_tokens=16_384)
    assert answer.choices[0].message.content


def test_body_over_the_size_cap_is_413_before_it_is_read(fresh, client):
    from kura_perf.simulator import SimulatorConfig

    assert SimulatorConfig().max_body_bytes == 25 * 1024 * 1024  # OpenAI's own cap, by default
    fresh.configure(max_body_bytes=100_000)
    big = [{"role": "user", "content": "word " * 40_000}]  # 200 KB
    error = _refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=big), 413)
    assert "100000" in error["message"]
    assert fresh.log()["by_endpoint"]["chat.completions"]["by_status"] == {"413": 1}
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices  # small ones still pass


def test_a_request_no_limit_could_ever_serve_is_refused_at_once(fresh, client):
    """With a raised TPM, a prompt over the model's context is still refused (400, not scheduled), as is
    an embeddings request over 300,000 tokens; one over the token bucket gets OpenAI's 429 at once."""
    fresh.configure(tpm=10**9, rpm=10**6)
    long = [{"role": "user", "content": "word " * 130_000}]  # 650 KB: 130,001 tokens (o200k_base) > 128,000
    error = _refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=long), 400)
    assert (error["param"], error["code"]) == ("messages", "context_length_exceeded")
    near = [{"role": "user", "content": "word " * 115_000}]  # 115,001 tokens: fits, but not with 16,000 more
    error = _refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=near, max_tokens=16_000),
                     400)
    assert error["code"] == "context_length_exceeded" and "in the completion" in error["message"]
    too_long_input = _refused(lambda: client.embeddings.create(model="text-embedding-3-small",
                                                                input=["w " * 20_000]), 400)
    assert "8192" in too_long_input["message"]
    many = ["word " * 6_000] * 51  # each 6,001 tokens (cl100k_base), 306,051 in all
    error = _refused(lambda: client.embeddings.create(model="text-embedding-3-small", input=many), 400)
    assert error["code"] == "max_tokens_per_request" and "300000" in error["message"]
    fresh.configure(tpm=1_000)
    error = _refused(lambda: client.embeddings.create(model="text-embedding-3-small", input=["word " * 2_000]), 429)
    assert "Request too large" in error["message"]
    assert "200" not in fresh.log()["by_endpoint"]["embeddings"]["by_status"]


def test_client_disconnect_is_one_line_not_a_traceback():
    from kura_perf.simulator import SimulatorProcess

    simulator = SimulatorProcess(FAST)
    with simulator:
        pid = simulator.pid
        with socket.create_connection(("127.0.0.1", simulator.port), timeout=5) as s:
            s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{\"model\": \"text-embedding-3-small\", \"input\": \"")
        deadline = time.monotonic() + 10  # bounded wait for the server to notice
        while time.monotonic() < deadline and "disconnected" not in simulator.log()["by_endpoint"].get(
                "embeddings", {}).get("by_status", {}):
            time.sleep(0.05)
        assert simulator.log()["by_endpoint"]["embeddings"]["by_status"] == {"disconnected": 1}
        assert simulator.health()["status"] == "ok"  # and it goes on serving
    assert pid_gone(pid)
    lines = [line for line in simulator.output.splitlines() if line.strip()]
    assert "Traceback" not in simulator.output, simulator.output
    assert len([line for line in lines if "client disconnected" in line]) == 1, simulator.output
    assert not [line for line in lines if line.startswith((" ", "\t"))], simulator.output  # no stack frames


def test_models_named_in_the_config_are_served(fresh, client):
    fresh.configure(models={"my-gateway-model": {"kind": "chat", "max_output_tokens": 100}})
    answer = client.chat.completions.create(model="my-gateway-model", messages=HELLO)
    assert answer.choices[0].message.content
    error = _refused(lambda: client.chat.completions.create(model="my-gateway-model", messages=HELLO,
                                                            max_tokens=101), 400)
    assert "at most 100" in error["message"]
    assert "my-gateway-model" in [m.id for m in client.models.list().data]
    fresh.configure(models=["*"])  # a gateway's: any name
    assert client.embeddings.create(model="whatever-embedder", input="x").data


def test_models_setting_from_the_command_line_and_a_profile():
    from types import SimpleNamespace

    from kura_perf.simulator import SimulatorConfig
    from kura_perf.simulator.cli import build_parser, config_from_args
    from kura_perf.simulator.models import ModelTable, profile_models

    config = config_from_args(build_parser().parse_args(["--model", "local-llm", "--model", "gpt-4o-mini"]))
    assert config.models == {"local-llm": {}}  # gpt-4o-mini is built in
    profile = SimpleNamespace(summary_model="openai:gpt-4o-mini", naming_model="openai:my-llm",
                              embedding_model="openai:bge-m3")
    assert profile_models(profile) == ["bge-m3", "gpt-4o-mini", "my-llm"]
    served = ModelTable(SimulatorConfig().serving(profile_models(profile)).models)  # as the run's resource does
    assert served.lookup("bge-m3") and served.lookup("my-llm") and ModelTable().lookup("bge-m3") is None
    with pytest.raises(ValueError, match="models.x.kind"):
        SimulatorConfig.from_dict({"models": {"x": {"kind": "images"}}})


def test_every_model_the_builtin_profiles_and_kura_send_is_known():
    from kura_perf.backends.kura_models import NATIVE_DIMENSIONS as KURA_EMBEDDERS
    from kura_perf.models.openai_api.prices import PRICES_PER_1M_TOKENS
    from kura_perf.profiles import load_profiles
    from kura_perf.simulator.models import ModelTable, profile_models

    table = ModelTable()
    sent = {name for profile in load_profiles().values() for name in profile_models(profile)}
    assert {"gpt-4o-mini", "text-embedding-3-small", "text-embedding-3-large"} <= sent
    kura_defaults = {"gpt-4o-mini", "text-embedding-3-small"}  # Kura's SummaryModel, cluster models, embedder
    openai_priced = {name for name in PRICES_PER_1M_TOKENS if not name.startswith("claude")}
    for name in sent | kura_defaults | set(KURA_EMBEDDERS) | openai_priced:
        assert table.lookup(name) is not None, name
