"""`kura-perf profiles`: list the profiles (no store, no Dagster: no clean-up after dead runs either)."""

from __future__ import annotations

from kura_perf.settings.run import RunSettings

HEADER = ("profile", "backend", "embedding", "clustering", "API or offline", "description")


def api_or_offline(profile) -> str:
    """offline, or which API the profile calls: the local simulator (started for the run) or a real endpoint."""
    if not profile.uses_api():
        return "offline"
    return "API (simulated)" if profile.api.simulate else "API (real endpoint)"


def profile_rows(profiles: dict) -> list[tuple[str, ...]]:
    return [(name, p.backend, f"{p.embedding_model} ({p.embedding_backend})", p.clustering, api_or_offline(p),
             p.description) for name, p in profiles.items()]


def render_profiles(profiles: dict) -> str:
    """A header row and columns as wide as their widest cell (the description, last, is left as it is)."""
    rows = [HEADER, *profile_rows(profiles)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
                     for row in rows)


def cmd_profiles(args) -> int:
    print(render_profiles(RunSettings.from_env(profiles_file=args.profiles).profiles()))
    return 0


def add_commands(sub) -> None:
    profiles = sub.add_parser("profiles", help="list the profiles")
    profiles.add_argument("--profiles", help="an extra profiles TOML file")
    profiles.set_defaults(func=cmd_profiles, reaps=False)
