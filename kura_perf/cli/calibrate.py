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


def add_commands(sub) -> None:
    """calibrate. Reads a log and writes one file: no record is read, so no clean-up of dead runs."""
    calibrate = sub.add_parser("calibrate", help="fit the simulator's latency model to an api log (--api-log)")
    calibrate.add_argument("log", help="a JSON-lines request log written with `kura-perf run --api-log FILE`")
    calibrate.add_argument("--profile-name", default="calibrated", help="the profile's name (default: calibrated)")
    calibrate.add_argument("--out", help="the profile TOML to write (default: <profile-name>.toml)")
    calibrate.set_defaults(func=cmd_calibrate, reaps=False)
