"""One phase of `kura-perf kura-probe`, run as its own process (python -m kura_perf.experiments.kura_probe_phase).

A phase is one of Kura's CPU-bound steps inside its clusters stage, called exactly as Kura calls it, on a
partition's stored summaries and embeddings (the kura backend's outputs):

  clustering    the profile's Kura clustering method, `.cluster(items)`, on the items Kura's
                embed_summaries hands it ({"item": ConversationSummary, "embedding": list of floats}).
                Timed whole: scikit-learn's fit and Kura's own grouping of the labels (a comprehension
                over clusters x items). The grouping it returns is written to --labels for the next phase.
  contrastive   Kura's get_contrastive_examples(cluster_id, cluster_id_to_summaries,
                max_contrastive_examples=10), which ClusterDescriptionModel.generate_clusters calls once
                per cluster, eagerly, before its first naming request. Timed for --sample clusters
                drawn at random (seed --seed); every call costs the same (it lists the summaries of all
                the other clusters), so the whole stage's cost is the mean times the cluster count.

Why a process of its own: the parent reads the phase's CPU seconds and peak RSS from the kernel (wait4's
rusage), independent of anything this code reports, and can stop a phase at its time limit by killing the
process group. What this process reports (the last line of stdout, JSON) is the timing of the call alone,
without loading the partition.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

CONTRASTIVE_EXAMPLES = 10  # generate_base_clusters_from_conversation_summaries' default max_contrastive_examples


def _summaries_and_vectors(folder: Path):
    from kura_perf.backends.kura_types import summaries_from_table
    from kura_perf.files.outputs import read_stage

    table = read_stage(folder, "summaries").tables["main"]
    embeddings = read_stage(folder, "embeddings")
    if embeddings.tables["ids"]["chat_id"].tolist() != table["chat_id"].tolist():
        raise SystemExit(f"{folder}: the embeddings' rows are not the summaries' (re-run the embeddings stage)")
    return summaries_from_table(table), embeddings.arrays["main"]


def clustering(folder: Path, profile_name: str, labels_out: Path) -> dict:
    from kura_perf.backends.kura_models import KuraModels
    from kura_perf.profiles import get_profile

    summaries, vectors = _summaries_and_vectors(folder)
    method = KuraModels(get_profile(profile_name)).clustering_method()
    items = [{"item": s, "embedding": v} for s, v in zip(summaries, vectors.tolist())]  # what embed_summaries returns
    del vectors
    wall0, cpu0 = time.perf_counter(), time.process_time()
    groups = method.cluster(items)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    position = {s.chat_id: i for i, s in enumerate(summaries)}
    labels = np.full(len(summaries), -1, dtype=np.int64)
    for cluster_id, members in groups.items():
        labels[[position[m.chat_id] for m in members]] = cluster_id
    np.save(labels_out, labels)
    return {"call": f"{type(method).__name__}.cluster", "items": len(summaries), "clusters": len(groups),
            "work_wall_s": wall, "work_cpu_s": cpu, "sampled": None}


def contrastive(folder: Path, labels_in: Path | None, sample: int, seed: int, clusters_per_group: int) -> dict:
    import kura.cluster

    summaries, _ = _summaries_and_vectors(folder)
    if labels_in is not None and labels_in.exists():
        labels, grouping = np.load(labels_in), "the clustering phase's grouping"
    else:  # Kura's k rule, members dealt round-robin: the calls' cost depends on n and k only
        k = math.ceil(len(summaries) / clusters_per_group)
        labels, grouping = np.arange(len(summaries)) % k, f"round-robin into ceil(n/{clusters_per_group})"
    groups: dict[int, list] = {}
    for summary, label in zip(summaries, labels.tolist()):
        groups.setdefault(int(label), []).append(summary)
    ids = sorted(groups)
    chosen = np.random.default_rng(seed).choice(ids, size=min(sample, len(ids)), replace=False).tolist()
    np.random.seed(seed)  # Kura samples with np.random.choice
    per_call = []
    cpu0 = time.process_time()
    for cluster_id in chosen:
        t = time.perf_counter()
        kura.cluster.get_contrastive_examples(int(cluster_id), cluster_id_to_summaries=groups,
                                              max_contrastive_examples=CONTRASTIVE_EXAMPLES)
        per_call.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    return {"call": "kura.cluster.get_contrastive_examples", "items": len(summaries), "clusters": len(ids),
            "work_wall_s": float(sum(per_call)), "work_cpu_s": cpu, "sampled": len(chosen), "grouping": grouping,
            "per_call_s": {"mean": float(np.mean(per_call)), "p50": float(np.median(per_call)),
                           "max": float(np.max(per_call))}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("clustering", "contrastive"))
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters-per-group", type=int, default=10)
    args = parser.parse_args(argv)
    from kura_perf.errors import KuraPerfError

    try:
        if args.phase == "clustering":
            out = clustering(args.folder, args.profile, args.labels)
        else:
            out = contrastive(args.folder, args.labels, args.sample, args.seed, args.clusters_per_group)
    except KuraPerfError as exc:  # one line for the parent to show, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
