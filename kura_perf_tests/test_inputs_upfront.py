"""Every bad input refused up front, before anything starts: a FIFO as data file (and Ctrl-C during a
blocking read), JSON nested 10,000 deep, an unusable data root, profile values of the wrong type, an
empty data_file, gzip-compressed conversation files."""

from __future__ import annotations

import builtins
import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kura_perf.corpus import MAX_JSON_DEPTH, generate_conversations, load_conversations, write_conversations_jsonl
from kura_perf.errors import InputDataError, ProfileError

REPO = Path(__file__).resolve().parents[1]
GOOD = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
DEEP = "[" * 10_000 + "]" * 10_000


def _in_thread(function, timeout_s: float = 30.0):
    """Run `function` in a daemon thread; (finished, result or exception). A regression that blocks
    fails the test instead of hanging the suite."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive(), outcome.get("error", outcome.get("value"))


def _unblock_reader(fifo: Path) -> None:
    """Let a reader stuck opening `fifo` go (a writer comes and leaves), so a failed test leaves no thread behind."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def _write_profiles(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    return path


def _cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str, str]:
    """`kura-perf ARGS` in this process, failing the test if it gets as far as Dagster's home."""
    from kura_perf.cli import dagster_home
    from kura_perf.cli.main import main

    def no_dagster(*_a, **_k):
        raise AssertionError("the command reached Dagster")

    monkeypatch.setattr(dagster_home, "home", no_dagster)
    monkeypatch.setattr(dagster_home, "instance", no_dagster)
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 2: a FIFO as data file ----------------------------------------------------------------------------
def test_a_fifo_is_refused_quickly_and_never_opened(tmp_path, monkeypatch):
    fifo = tmp_path / "conversations.jsonl"
    os.mkfifo(fifo)
    real_open = builtins.open

    def watched_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == fifo:
            raise AssertionError(f"{fifo} was opened")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watched_open)
    try:
        finished, outcome = _in_thread(lambda: load_conversations(fifo))
    finally:
        _unblock_reader(fifo)
    assert finished, "load_conversations blocked on a FIFO"
    assert isinstance(outcome, InputDataError), outcome
    assert str(fifo) in str(outcome) and "FIFO" in str(outcome) and "regular file" in str(outcome)
    # and no reader ever came: a non-blocking writer finds nobody at the other end
    with pytest.raises(OSError) as no_reader:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO


def test_run_refuses_a_fifo_data_file_before_dagster(tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "chats.jsonl"
    os.mkfifo(fifo)
    profiles = _write_profiles(tmp_path, f'[piped]\ndata_file = "{fifo}"\n')
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    try:
        finished, outcome = _in_thread(lambda: _cli(monkeypatch, capsys, ["run", "--profile", "piped",
                                                                           "--profiles", str(profiles)]))
    finally:
        _unblock_reader(fifo)
    assert finished, "kura-perf run blocked on a FIFO"
    code, _, err = outcome
    assert code == 2
    line = _one_line(err)
    assert str(fifo) in line and "FIFO" in line


_BLOCKING_READ = """
import signal
import sys
from kura_perf.pipeline.interrupts import own_interrupts

# A shell that starts the suite in the background hands its children SIGINT ignored, and Python then
# installs no handler; take Python's own, as an interactive `kura-perf run` has.
signal.signal(signal.SIGINT, signal.default_int_handler)

with own_interrupts():
    try:
        with open(sys.argv[1], "rb") as pipe:
            pipe.read()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
print("the read ended without an interrupt", flush=True)
sys.exit(1)
"""


def test_ctrl_c_ends_a_blocking_read_inside_the_interrupt_guard(tmp_path):
    """The guard once blocked SIGINT in the main thread for the whole run: a read that never returns
    (here, a FIFO whose writer sends nothing) then ignored Ctrl-C for good."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _BLOCKING_READ, str(fifo)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # opens once the child has the FIFO open for reading
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > deadline or child.poll() is not None:
                    raise
                time.sleep(0.05)
        time.sleep(0.5)  # let the child get from open() into read(); nothing is written, so read() waits
        os.kill(child.pid, signal.SIGINT)
        try:
            out, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGINT did not end a read blocked inside own_interrupts()")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if writer is not None:
            os.close(writer)
    assert child.returncode == 130, (out, err)
    assert out.strip() == "interrupted"


_MASKS = """
import signal, subprocess, sys
from kura_perf.pipeline.interrupts import own_interrupts

def sigint_blocked_in(status):
    mask = next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1]
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))

status = [sys.executable, "-c", "print(open('/proc/self/status').read())"]
with own_interrupts():
    print("main", signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    print("child", sigint_blocked_in(subprocess.run(status, capture_output=True, text=True).stdout))
    print("tail", sigint_blocked_in(subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout))
print("after", sigint_blocked_in(subprocess.run(status, capture_output=True, text=True).stdout))
"""


def test_the_guard_still_keeps_ctrl_c_from_the_processes_it_starts():
    """What the guard protects: helpers started during a run (Dagster's tail and watcher) are created
    with SIGINT blocked, so a terminal's Ctrl-C reaches kura-perf only; the main thread keeps it open."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _MASKS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = dict(line.split() for line in done.stdout.splitlines())
    assert seen == {"main": "False", "child": "True", "tail": "True", "after": "False"}


# -- 5: JSON nested 10,000 deep ------------------------------------------------------------------------
def _deep_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "deep.jsonl"
    deep_record = json.dumps(GOOD)[:-1] + f', "metadata": {{"x": {DEEP}}}}}'
    path.write_text("\n".join([json.dumps(GOOD), deep_record, json.dumps({**GOOD, "id": "third"})]) + "\n")
    return path


def test_deep_json_is_refused_naming_file_and_line(tmp_path):
    path = _deep_jsonl(tmp_path)
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert err.value.path == path and err.value.line == 2
    assert f"at most {MAX_JSON_DEPTH} levels" in str(err.value) and f"{path}, line 2" in str(err.value)


def test_deep_json_is_skipped_and_reported_under_lenient(tmp_path):
    loaded = load_conversations(_deep_jsonl(tmp_path), lenient=True)
    assert [c.chat_id for c in loaded.conversations] == ["deep:1", "third"]
    assert loaded.skipped == 1 and "line 2" in loaded.problems[0] and "levels" in loaded.problems[0]


def test_deep_json_in_a_json_list_is_located_and_skipped(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" + json.dumps(GOOD) + ",\n" + f'{{"x": {DEEP}}},\n' + json.dumps({**GOOD, "id": "c"}) + "]")
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert err.value.line == 2 and err.value.field == "[1]"
    loaded = load_conversations(path, lenient=True)
    assert [c.chat_id for c in loaded.conversations] == ["deep:item-0", "c"] and loaded.skipped == 1


def test_brackets_inside_strings_do_not_count_as_depth(tmp_path):
    path = tmp_path / "brackets.jsonl"
    text = "[{" * 500 + ' "quoted \\" [[[ ' + "}]" * 500
    path.write_text(json.dumps({"messages": [{"role": "user", "content": text}]}) + "\n")
    assert load_conversations(path).conversations[0].messages[0].content == text


# -- 6: an unusable data root --------------------------------------------------------------------------
def test_an_unusable_data_root_is_one_line_and_exit_2_before_dagster(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv("KURA_PERF_HOME", str(a_file / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    code, out, err = _cli(monkeypatch, capsys, ["run", "--scale", "100", "--stages", "conversations"])
    assert code == 2 and "(no stage records)" not in out
    line = _one_line(err)
    assert str(a_file / "data") in line and f"{a_file} is a file, not a folder" in line
    assert not (tmp_path / "dagster_home").exists()


def test_matrix_refuses_an_unusable_data_root_before_any_partition(tmp_path, monkeypatch, capsys):
    from kura_perf.experiments import matrix

    def no_partition(*_a, **_k):
        raise AssertionError("a partition started")

    monkeypatch.setattr(matrix, "run_partition_process", no_partition)
    (tmp_path / "root").write_text("x")
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "root"))
    code, _, err = _cli(monkeypatch, capsys, ["matrix", "--scales", "100", "--profiles", "offline"])
    assert code == 2
    assert "it is a file, not a folder" in _one_line(err)


def test_matrix_refuses_a_missing_data_file_before_any_partition(tmp_path, monkeypatch, capsys):
    from kura_perf.experiments import matrix

    monkeypatch.setattr(matrix, "run_partition_process", lambda *a, **k: pytest.fail("a partition started"))
    missing = tmp_path / "gone.jsonl"
    profiles = _write_profiles(tmp_path, f'[from-file]\ndata_file = "{missing}"\n')
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    code, _, err = _cli(monkeypatch, capsys, ["matrix", "--scales", "100", "--profiles", "offline", "from-file",
                                              "--profiles-file", str(profiles)])
    assert code == 2
    line = _one_line(err)
    assert str(missing) in line and "no such file" in line


# -- 7: profile values of the right type, a non-empty data_file ----------------------------------------
@pytest.mark.parametrize("body, key, shown", [
    ("batch_size = true", "batch_size", "true"),
    ("seed = false", "seed", "false"),
    ("lenient = 1", "lenient", "1"),
    ("stage_timeout_s = true", "stage_timeout_s", "true"),
    ("memory_limit_mb = 512.0", "memory_limit_mb", "512.0"),
    ("[wrong.api]\nconcurrency = true", "api.concurrency", "true"),
])
def test_profile_values_of_the_wrong_type_are_refused(tmp_path, body, key, shown):
    from kura_perf.profiles import load_profiles

    with pytest.raises(ProfileError) as err:
        load_profiles(_write_profiles(tmp_path, f"[wrong]\n{body}\n"))
    message = str(err.value)
    assert "profile 'wrong'" in message and f"key '{key}'" in message and f"(got {shown})" in message


def test_numbers_of_the_right_type_still_load(tmp_path):
    from kura_perf.profiles import load_profiles

    path = _write_profiles(tmp_path, "[fine]\nbatch_size = 8\nstage_timeout_s = 60\nregression_threshold = 1\n"
                                     "[fine.api]\ntimeout_s = 10\nprices = { m = [1, 0.5] }\n")
    profile = load_profiles(path)["fine"]
    assert (profile.batch_size, profile.stage_timeout_s, profile.api.timeout_s) == (8, 60.0, 10.0)
    assert profile.api.prices == {"m": (1.0, 0.5)}


def test_batch_size_true_is_refused_by_run_before_dagster(tmp_path, monkeypatch, capsys):
    profiles = _write_profiles(tmp_path, "[flag]\nbatch_size = true\n")
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    code, _, err = _cli(monkeypatch, capsys, ["run", "--profile", "flag", "--profiles", str(profiles)])
    assert code == 2
    line = _one_line(err)
    assert "profile 'flag'" in line and "key 'batch_size'" in line and "(got true)" in line


@pytest.mark.parametrize("value", ['""', '"  "'])
def test_an_empty_data_file_is_refused_not_taken_as_synthetic(tmp_path, value):
    from kura_perf.profiles import load_profiles

    with pytest.raises(ProfileError) as err:
        load_profiles(_write_profiles(tmp_path, f"[blank]\ndata_file = {value}\n"))
    message = str(err.value)
    assert "profile 'blank'" in message and "key 'data_file'" in message and repr(json.loads(value)) in message


# -- 10: gzip-compressed conversation files ------------------------------------------------------------
def test_jsonl_gz_round_trip(tmp_path):
    conversations = generate_conversations(12, seed=3)
    path = tmp_path / "chats.jsonl.gz"
    assert write_conversations_jsonl(conversations, path) == 12
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    loaded = load_conversations(path)
    assert loaded.conversations == conversations and loaded.container == "jsonl"


def test_an_error_inside_a_gz_file_names_the_uncompressed_line(tmp_path):
    path = tmp_path / "chats.jsonl.gz"
    lines = [json.dumps(GOOD), "", json.dumps(GOOD), json.dumps({"messages": "oops"})]
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines) + "\n")
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert err.value.line == 4 and err.value.field == "messages" and f"{path}, line 4" in str(err.value)
    loaded = load_conversations(path, lenient=True)
    assert [c.chat_id for c in loaded.conversations] == ["chats:1", "chats:3"] and loaded.skipped == 1


def test_a_json_list_gz_is_read(tmp_path):
    path = tmp_path / "chats.json.gz"
    with gzip.open(path, "wt") as out:
        json.dump([GOOD, {**GOOD, "id": "b"}], out)
    loaded = load_conversations(path)
    assert loaded.container == "json-list" and [c.chat_id for c in loaded.conversations] == ["chats:item-0", "b"]


def test_gzip_under_a_plain_jsonl_name_is_read(tmp_path):
    conversations = generate_conversations(5, seed=4)
    plain = tmp_path / "plain.jsonl"
    write_conversations_jsonl(conversations, plain)
    disguised = tmp_path / "export.jsonl"  # gzip, named as plain JSONL (as some export tools do)
    disguised.write_bytes(gzip.compress(plain.read_bytes()))
    loaded = load_conversations(disguised)
    assert loaded.conversations == conversations and loaded.source == str(disguised)


def test_a_truncated_gz_file_is_named_as_such(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    records = [json.dumps({**GOOD, "id": f"c{i}", "pad": os.urandom(64).hex()}) for i in range(3000)]
    data = gzip.compress(("\n".join(records) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert "gzip-compressed" in str(err.value) and err.value.line is not None and err.value.line > 1
