"""`kura-perf calibrate LOG` (fit the simulator's latency model to a request log) and `kura-perf predict`
(API stage times from a profile's model, without running)."""

from __future__ import annotations

from pathlib import Path

from kura_perf.errors import KuraPerfError


def cmd_calibrate(args) -> int:
    from kura_perf.experiments.calibrate import calibrate_file, describe, write_profile

    fits = calibrate_file(args.log)
    for fit in fits:
        print("\n".join(describe(fit)))
    out = Path(args.out) if args.out else Path(f"{args.profile_name}.toml")
    if out.exists() and out.is_dir():
        raise KuraPerfError(f"--out {out}: is a folder; give a file name")
    write_profile(fits, args.profile_name, str(args.log), out)
    print(f"profile '{args.profile_name}' written to {out}: run it with "
          f"`kura-perf run --profiles {out} --profile {args.profile_name} --scale ...`")
    return 0


def profile_api_records(settings, profile: str) -> list[dict]:
    """The profile's successful API stage records, or none when the store has none (or no store yet)."""
    from kura_perf.store import query

    try:
        frame = query(settings.paths.metrics,
                      "SELECT stage, scale_n, api_calls, tokens_in, tokens_out FROM stage_runs "
                      "WHERE profile = ? AND status = 'success' AND api_calls > 0 ORDER BY finished_at", [profile])
    except Exception:  # noqa: BLE001 - no store or no stage_runs view yet: the rules' counts are used
        return []
    return frame.to_dict("records")


def cmd_predict(args) -> int:
    from kura_perf.experiments.predict import describe, predict
    from kura_perf.scales import scale_count
    from kura_perf.settings.run import RunSettings

    n = scale_count(args.scale)
    settings = RunSettings.from_env(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None)
    profile = settings.profile(args.profile)
    records = [] if args.rules_only else profile_api_records(settings, profile.name)
    print("\n".join(describe(predict(profile, n, records), profile, n)))
    return 0


def add_commands(sub) -> None:
    """calibrate, predict. calibrate reads a log and writes one file; predict only reads the store's
    records: neither cleans up after dead runs."""
    calibrate = sub.add_parser("calibrate", help="fit the simulator's latency model to an api log (--api-log)")
    calibrate.add_argument("log", help="a JSON-lines request log written with `kura-perf run --api-log FILE`")
    calibrate.add_argument("--profile-name", default="calibrated", help="the profile's name (default: calibrated)")
    calibrate.add_argument("--out", help="the profile TOML to write (default: <profile-name>.toml)")
    calibrate.set_defaults(func=cmd_calibrate, reaps=False)

    predict = sub.add_parser("predict", help="each API stage's time at a scale from the latency model, "
                                             "concurrency and RPM/TPM limits, without running")
    predict.add_argument("--profile", required=True)
    predict.add_argument("--scale", default="100k", help="100, 1k, 5k, 10k, 20k, 50k or 100k")
    predict.add_argument("--profiles", help="an extra profiles TOML file (e.g. one `kura-perf calibrate` wrote)")
    predict.add_argument("--rules-only", action="store_true",
                         help="count calls and tokens from the pipeline's rules even when records exist")
    predict.set_defaults(func=cmd_predict, reaps=False)
