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


def test_a_probe_over_the_stage_bound_is_the_break_at_its_scale_and_beyond(tmp_path, partition):
    from kura_perf.report import breaking
    from kura_perf.results.probes import probed_stage_times
    from kura_perf_tests.test_breaking_points import analysis_of
    from kura_perf_tests.test_breaking_tail import KURA_CLUSTERS, _results

    _results(tmp_path / "results", {"clusters": KURA_CLUSTERS})  # offline: the 24 h practical bound
    pa = analysis_of(tmp_path / "results", tmp_path).profiles["offline"]
    assert breaking.verdict(pa, 100_000).first is None  # the fits alone: nothing breaks at 100K
    body = json.loads(_body(tmp_path, partition).read_text())
    body.update(profile="offline", scale="100k", scale_n=100_000)
    body["phases"][0].update(status="stopped at time limit", stage_s=None, wall_s=3_600.0)
    body["phases"][1].update(stage_s=90_000.0)  # 25 h of contrastive sampling, mean x k
    (tmp_path / "results" / "probes").mkdir()
    (tmp_path / "results" / "probes" / "p.json").write_text(json.dumps(body))
    probed = probed_stage_times(tmp_path / "results")
    assert probed[("offline", 100_000)].seconds == pytest.approx(93_600.0)
    assert probed[("offline", 100_000)].lower_bound
    for n in (100_000, 1_000_000):
        v = breaking.verdict(pa, n, probed=breaking._probed_at(probed, "offline", n))
        assert (v.first.stage, v.first.resource) == ("clusters", "time")
        assert v.first.detail.startswith("≥ 26.0 h at 100K (Kura's steps by kura-perf kura-probe: clustering stopped "
                                         "after 60.0 min, contrastive projected from a sample)")
    assert breaking._probed_at(probed, "offline", 10_000) is None  # never carried to a smaller scale
    # under the bound it breaks nothing, but the stage's time is the probe's where it says more than the fit
    body["phases"][1].update(stage_s=9_000.0)
    (tmp_path / "results" / "probes" / "p.json").write_text(json.dumps(body))
    probed = probed_stage_times(tmp_path / "results")
    table = "\n".join(probes_lines(tmp_path / "results"))  # the table's lower bound counts the stopped step's wall
    assert "**≥ 3.5 h: clustering did not finish**" in table  # 3,600 s stopped + 9,000 s
    v = breaking.verdict(pa, 100_000, probed=probed[("offline", 100_000)])
    assert v.first is None and "slowest clusters 3.5 h by kura-perf kura-probe's steps (a lower bound)" in v.time.text
