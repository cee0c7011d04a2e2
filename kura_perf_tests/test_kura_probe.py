"""`kura-perf kura-probe` (issue 19): Kura's own CPU steps of its clusters stage measured on a stored partition,
each in a process of its own; stopped at a time limit; refused on the wrong inputs; published from results/probes/
with what was measured apart from what was projected."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from kura.types import ConversationSummary

from kura_perf.backends.kura_types import summaries_to_table
from kura_perf.cli.main import main
from kura_perf.experiments.kura_probe import (
    FINISHED,
    SAMPLED,
    STOPPED,
    ProbeError,
    probe,
    stage_total_s,
    write_probe,
)
from kura_perf.files.outputs import StageData, write_stage
from kura_perf.profiles import get_profile
from kura_perf.results.probes import add_probes, probes_lines, read_probes
from kura_perf.results.records import ResultsError

N, GROUPS, DIM = 120, 4, 16


def _partition(folder):
    """A kura partition's stored summaries and embeddings: N summaries in GROUPS well-separated blobs."""
    rng = np.random.default_rng(0)
    chat_ids = [f"c{i:03d}" for i in range(N)]
    summaries = [ConversationSummary(chat_id=c, summary=f"summary of {c} about topic {i % GROUPS}", metadata={})
                 for i, c in enumerate(chat_ids)]
    centres = rng.normal(size=(GROUPS, DIM)) * 10
    vectors = (centres[np.arange(N) % GROUPS] + rng.normal(size=(N, DIM))).astype(np.float32)
    write_stage(folder, "summaries", StageData(tables={"main": summaries_to_table(summaries, chat_ids)}))
    import pandas as pd

    write_stage(folder, "embeddings", StageData(tables={"ids": pd.DataFrame({"chat_id": chat_ids})},
                                                arrays={"main": vectors}))
    return folder


@pytest.fixture
def partition(tmp_path):
    return _partition(tmp_path / "storage" / "kura-defaults" / "100")


def test_both_steps_run_kuras_own_calls_and_the_kernel_meters_them(partition):
    profile = get_profile("kura-defaults")
    record = probe(profile, profile, "100", N, partition, sample=5, time_limit_s=600, echo=lambda _: None)
    clustering, contrastive = record.phases
    assert clustering.status == contrastive.status == FINISHED
    assert clustering.call == "KmeansClusteringMethod.cluster"
    assert (clustering.items, clustering.clusters) == (N, N // 10)  # Kura's rule: k = ceil(n / 10)
    assert clustering.stage_s == clustering.work_wall_s
    # The kernel's figures for the whole process cover the call the phase timed itself.
    for phase in record.phases:
        assert phase.cpu_s >= phase.work_cpu_s * 0.95
        assert phase.wall_s >= phase.work_wall_s
        assert phase.peak_rss_mb > 50  # an interpreter with numpy and Kura loaded
    assert contrastive.call == "kura.cluster.get_contrastive_examples"
    assert contrastive.detail["grouping"] == "the clustering phase's grouping"
    assert (contrastive.sampled, contrastive.clusters, contrastive.basis) == (5, N // 10, SAMPLED)
    assert contrastive.stage_s == pytest.approx(contrastive.detail["per_call_s"]["mean"] * (N // 10))
    total, basis = stage_total_s(record)
    assert total == pytest.approx(clustering.stage_s + contrastive.stage_s + (record.naming or {}).get("seconds", 0))
    assert "contrastive projected from a sample" in basis
    assert record.host_fingerprint and record.code_version and record.kura_version


def test_a_phase_past_its_time_limit_is_killed_with_its_group_and_recorded_as_stopped(partition):
    profile = get_profile("kura-defaults")
    # No interpreter imports numpy, pandas and Kura in 10 ms: the limit is always reached.
    record = probe(profile, profile, "100", N, partition, phases=("clustering",), time_limit_s=0.01,
                   echo=lambda _: None)
    (phase,) = record.phases
    assert phase.status == STOPPED and phase.stage_s is None
    assert phase.wall_s >= 0.01 and "not finished after 0.01 s" in phase.message
    assert stage_total_s(record) == (None, "clustering stopped at time limit")


def test_inputs_of_another_profile_must_have_been_made_the_same_way(partition, tmp_path):
    kura_defaults = get_profile("kura-defaults")
    offline = get_profile("offline")
    with pytest.raises(ProbeError, match="backend 'reference'"):
        probe(offline, offline, "100", N, partition, echo=lambda _: None)
    other = kura_defaults.model_copy(update={"name": "other", "embedding_model": "openai:text-embedding-3-large"})
    with pytest.raises(ProbeError, match="--inputs-from 'other': embedding_model is 'openai:text-embedding-3-large'"):
        probe(kura_defaults, other, "100", N, partition, echo=lambda _: None)
    with pytest.raises(ProbeError, match="no complete 'summaries' output"):
        probe(kura_defaults, kura_defaults, "100", N, tmp_path / "empty", echo=lambda _: None)


def test_cli_writes_the_record_and_bad_settings_get_one_line(kp_home, capsys):
    _partition(kp_home / "storage" / "kura-defaults" / "100")
    assert main(["kura-probe", "--profile", "kura-defaults", "--scale", "100", "--sample", "3"]) == 0
    out = capsys.readouterr().out
    (written,) = (kp_home / "probes").glob("*.json")
    body = json.loads(written.read_text())
    assert body["schema"] == "kura-probe/1" and [p["phase"] for p in body["phases"]] == ["clustering", "contrastive"]
    assert str(written) in out and "clusters stage at this scale" in out
    assert main(["kura-probe", "--profile", "kura-defaults", "--scale", "100", "--inputs-from", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


def _body(tmp_path, partition, **changes):
    profile = get_profile("kura-defaults")
    record = probe(profile, profile, "100", N, partition, sample=3, echo=lambda _: None)
    record.contended, record.host_contention = False, 0.01
    body = {**json.loads(record.to_json()), **changes}
    path = tmp_path / "out" / record.file_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def test_publish_table_keeps_measured_apart_from_projected_and_refuses_a_probe_without_provenance(tmp_path, partition):
    results = tmp_path / "results"
    good = _body(tmp_path, partition, naming={"calls": 12, "seconds": 30.0, "binds": "latency", "source": "rule",
                                              "basis": "projected", "model": "kura-perf predict"})
    add_probes([good], results)
    lines = "\n".join(probes_lines(results, {("kura-defaults", N): 7.5}))
    assert "clustering (KmeansClusteringMethod.cluster)" in lines and "(measured)" in lines
    assert "*(projected: mean x 12)*" in lines
    assert "30.0 s *(projected: kura-perf predict, latency binds)*" in lines
    assert "the whole stage measured at this scale: 7.5 s" in lines
    # a contended probe is refused by add, and left out of the table if it got in anyway
    busy = _body(tmp_path, partition, contended=True, host_contention=0.4)
    with pytest.raises(ResultsError, match="contended .* nothing added"):
        add_probes([busy], results)
    os.replace(busy, results / "probes" / busy.name)
    assert len(read_probes(results)) == 2 and "\n".join(probes_lines(results)).count("**clusters stage**") == 1
    # no host: refused, naming the file and the field
    (results / "probes" / busy.name).write_text(json.dumps({**json.loads(good.read_text()), "host_fingerprint": ""}))
    with pytest.raises(ResultsError, match=f"{busy.name}: no host_fingerprint"):
        read_probes(results)


def test_write_probe_creates_its_folder_and_leaves_no_temp(tmp_path, partition):
    profile = get_profile("kura-defaults")
    record = probe(profile, profile, "100", N, partition, phases=("contrastive",), sample=2, echo=lambda _: None)
    # without a clustering phase the calls run on Kura's k rule, members dealt round-robin
    assert record.phases[0].detail["grouping"] == "round-robin into ceil(n/10)"
    path = write_probe(record, tmp_path / "new" / "probes")
    assert [p.name for p in path.parent.iterdir()] == [path.name]
