"""`kura-perf kura-probe`: Kura's CPU-bound steps of its clusters stage, measured on a stored partition
(kura_perf/experiments/kura_probe.py says what and why)."""

from __future__ import annotations

from pathlib import Path

from kura_perf.settings.run import RunSettings


def cmd_kura_probe(args) -> int:
    from kura_perf.cli.calibrate import profile_api_records
    from kura_perf.experiments.kura_probe import describe_phase, naming_prediction, probe, stage_total_s, write_probe
    from kura_perf.scales import scale_count

    n = scale_count(args.scale)
    settings = RunSettings.from_env(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None)
    profile = settings.profile(args.profile)
    inputs = settings.profile(args.inputs_from) if args.inputs_from else profile
    folder = settings.paths.partition_dir(inputs.name, args.scale)
    naming = naming_prediction(profile, n, profile_api_records(settings, profile.name))
    print(f"kura-probe: Kura's clusters-stage CPU work at {n:,} conversations, profile {profile.name}"
          + (f", on the stored summaries and embeddings of {inputs.name}" if inputs is not profile else ""))
    record = probe(profile, inputs, args.scale, n, Path(folder), phases=tuple(args.phases), sample=args.sample,
                   seed=args.seed, time_limit_s=args.time_limit, naming=naming)
    print(f"  Kura {record.kura_version}")
    if naming:
        print(f"  naming: {naming['calls']:,} requests, {naming['seconds']:,.0f} s of API waiting ({naming['binds']} "
              f"binds; projected by kura-perf predict, {naming['source']})")
    total, basis = stage_total_s(record)
    print("  clusters stage at this scale: " + (f"≈ {total:,.0f} s ({basis})" if total is not None
                                                  else f"no total: {basis}"))
    contention = "unknown" if record.host_contention is None else f"{record.host_contention:.1%}"
    print(f"  other processes took {contention} of the box" + (" (contended)" if record.contended else ""))
    path = write_probe(record, settings.paths.root / "probes")
    print(f"written: {path}\nto publish it: kura-perf results add --probe {path}")
    for r in record.phases:
        if r.status != "finished":
            print(f"  note: {r.phase}: {describe_phase(r)}")
    return 0


def add_commands(sub) -> None:
    parser = sub.add_parser("kura-probe", help="measure Kura's CPU-bound clusters steps (k-means and its grouping, "
                                               "contrastive sampling) on a stored partition; naming waiting projected")
    parser.add_argument("--profile", required=True, help="a kura-backend profile with k-means clustering")
    parser.add_argument("--scale", required=True, help="100, 1k, 5k, 10k, 20k, 50k or 100k")
    parser.add_argument("--inputs-from", help="read the stored summaries and embeddings of this profile's partition "
                                              "(same models, data and seed; e.g. a -scaled twin)")
    parser.add_argument("--phases", nargs="+", choices=("clustering", "contrastive"),
                        default=["clustering", "contrastive"])
    parser.add_argument("--sample", type=int, default=200, help="clusters whose contrastive examples are timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds per phase before it is stopped")
    parser.add_argument("--profiles", help="an extra profiles TOML file")
    parser.set_defaults(func=cmd_kura_probe, reaps=False)
