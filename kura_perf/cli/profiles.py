"""`kura-perf profiles`: list the profiles (no store, no Dagster: no clean-up after dead runs either)."""

from __future__ import annotations

from kura_perf.settings.run import RunSettings


def cmd_profiles(args) -> int:
    for name, profile in RunSettings.from_env(profiles_file=args.profiles).profiles().items():
        print(f"{name:20s} {profile.backend:9s} {profile.clustering:13s} {profile.embedding_model:28s} "
              f"{profile.description}")
    return 0


def add_commands(sub) -> None:
    profiles = sub.add_parser("profiles", help="list the profiles")
    profiles.add_argument("--profiles", help="an extra profiles TOML file")
    profiles.set_defaults(func=cmd_profiles, reaps=False)
