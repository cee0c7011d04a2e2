"""`kura-perf checkpoints | onboarding | error-clarity | examples`: Kura's usability, measured into the store."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd

from kura_perf.cli.printing import print_frame
from kura_perf.experiments.usability.checkpoints import FORMATS, run_checkpoint_benchmark
from kura_perf.experiments.usability.error_cases import case_ids
from kura_perf.experiments.usability.error_clarity import run_error_catalogue
from kura_perf.experiments.usability.examples import example_loc
from kura_perf.experiments.usability.onboarding import OnboardingSettings, run_onboarding
from kura_perf.settings.paths import Paths
from kura_perf.store import query, write_record, write_records

_CHECKPOINT_COLUMNS = ("format, scale, count(*) AS kinds, count(*) FILTER (WHERE status = 'success') AS ok, "
                       "round(sum(write_s), 3) AS write_s, round(sum(read_s), 3) AS read_s, "
                       "round(sum(bytes) / 1e6, 3) AS mb, round(max(dir_du_bytes) / 1e6, 3) AS du_mb, "
                       "round(max(greatest(write_peak_rss_mb, read_peak_rss_mb)), 0) AS peak_rss_mb, "
                       "round(max(process_max_rss_mb), 0) AS sampled_max_rss_mb, "
                       "string_agg(CASE WHEN status <> 'success' THEN kind || ': ' || status END, '; ') AS problems")


def _print(df) -> None:
    print_frame(df, width=220, max_columns=30, max_colwidth=90)


def _workdir(paths, name: str) -> Path:
    return paths.root / "usability" / name


def cmd_checkpoints(args) -> int:
    paths = Paths.from_env()
    run_id = uuid.uuid4().hex
    rows = run_checkpoint_benchmark(args.scales, args.formats, workdir=_workdir(paths, "checkpoints"),
                                    run_id=run_id, log=print)
    write_records(paths.metrics, "checkpoint_results", rows)
    _print(query(paths.metrics, f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoint_results WHERE run_id = ? "
                                "GROUP BY format, scale, scale_n ORDER BY scale_n, format", [run_id]))
    print(f"\n{len(rows)} rows in checkpoint_results (run {run_id}); details: "
          "kura-perf sql \"SELECT * FROM checkpoint_results\"")
    return 0


def cmd_onboarding(args) -> int:
    paths = Paths.from_env()
    settings = OnboardingSettings(workdir=_workdir(paths, "onboarding"), kura_spec=args.kura_spec or "",
                                  constraints=Path(args.constraints) if args.constraints else None,
                                  reuse_packages=args.reuse_packages, pip_cache=not args.no_pip_cache,
                                  conversations=args.conversations, keep_venv=args.keep_venv)
    row = run_onboarding(settings, log=print)
    write_record(paths.metrics, "onboarding_runs", row)
    steps = ", ".join(f"{s} {row[f'{s}_s']:.1f} s" for s in ("venv", "install", "import", "first_result")
                      if row.get(f"{s}_s") is not None)
    print(f"\nonboarding {row['status']}: {steps}; total {row['total_s'] or 0:.1f} s"
          + (f"\n{row['error_message']}" if row.get("error_message") else ""))
    return 0 if row["status"] == "success" else 1


def cmd_error_clarity(args) -> int:
    paths = Paths.from_env()
    rows = run_error_catalogue(_workdir(paths, "error_clarity"), cases=args.cases)
    write_records(paths.metrics, "error_clarity", rows)
    df = pd.DataFrame(rows)
    df["message"] = df["error_message"].fillna("").str.replace("\n", " / ").str.slice(0, 70)
    _print(df[["case_id", "outcome", "error_type", "names_subject", "says_expected", "suggests_fix",
               "raw_traceback", "score", "grade", "message"]])
    return 0


def cmd_examples(args) -> int:
    for e in example_loc():
        print(f"{e.name:9s} {e.code_lines:3d} lines of code ({e.total_lines} in the file)  {e.path}  {e.description}")
    return 0


def add_commands(sub) -> None:
    """checkpoints, onboarding, error-clarity, examples measure Kura itself into their own tables: they
    neither read nor write run records, so `main` does not clean up after dead runs first."""
    ck = sub.add_parser("checkpoints", help="Kura's JSONL / Parquet / HF datasets checkpoints: write, reload, "
                                            "bytes, peak memory")
    ck.add_argument("--scales", nargs="+", default=["100", "1k"], help="scales (100, 1k, 10k, ...)")
    ck.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ck.set_defaults(func=cmd_checkpoints, reaps=False)

    ob = sub.add_parser("onboarding", help="time a fresh venv + pip install kura + the basic example offline")
    ob.add_argument("--kura-spec", help="what pip installs (default kura==<the installed version>)")
    ob.add_argument("--constraints", default=str(Path(__file__).resolve().parents[2] / "constraints.txt"),
                    help="pip constraints file (keeps torch on the CPU wheel); '' for none")
    ob.add_argument("--reuse-packages", action="store_true",
                    help="cheap path: the venv sees this environment's packages, so install is a no-op "
                         "(not a real install)")
    ob.add_argument("--no-pip-cache", action="store_true", help="install without pip's cache")
    ob.add_argument("--conversations", type=int, default=60)
    ob.add_argument("--keep-venv", action="store_true")
    ob.set_defaults(func=cmd_onboarding, reaps=False)

    ec = sub.add_parser("error-clarity", help="feed Kura the catalogue of bad inputs and grade its errors")
    ec.add_argument("--cases", nargs="+", choices=case_ids(), help="only these cases")
    ec.set_defaults(func=cmd_error_clarity, reaps=False)

    ex = sub.add_parser("examples", help="lines of code of the example Kura scripts")
    ex.set_defaults(func=cmd_examples, reaps=False)

