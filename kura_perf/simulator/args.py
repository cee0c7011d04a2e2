"""The simulator's command-line options, in one place: `python -m kura_perf.simulator` and
`kura-perf simulate-api` both build their parser here. Only argparse is imported, so the kura-perf
CLI can build its parser without importing the server."""

from __future__ import annotations

import argparse
from pathlib import Path

# flag dest -> SimulatorConfig.from_dict key
FLAG_KEYS = {
    "rpm": "rpm", "tpm": "tpm", "latency_ms": "latency_ms", "p99_ms": "p99_ms",
    "chat_rpm": "chat_rpm", "chat_tpm": "chat_tpm", "chat_latency_ms": "chat_latency_ms",
    "chat_p99_ms": "chat_p99_ms", "ms_per_output_token": "chat_ms_per_output_token",
    "ms_per_input_token": "embeddings_ms_per_input_token",
    "embeddings_rpm": "embeddings_rpm", "embeddings_tpm": "embeddings_tpm",
    "embeddings_latency_ms": "embeddings_latency_ms", "embeddings_p99_ms": "embeddings_p99_ms",
    "fault_rate": "error_rate", "rate_limit_rate": "rate_limit_rate", "timeout_rate": "timeout_rate",
    "drop_rate": "drop_rate", "slow_response_s": "slow_response_s",
    "forced_retry_after_s": "forced_retry_after_s", "burst_s": "burst_s", "seed": "seed",
    "max_body_bytes": "max_body_bytes",
    "speed_factor": "speed_factor",
}


def _outage(text: str) -> tuple[float, float]:
    try:
        start, duration = text.split(":")
        return float(start), float(duration)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START_S:DURATION_S, got {text!r}") from None


DESCRIPTION = "OpenAI-compatible API simulator on 127.0.0.1 (limits, latency, faults)."


def build_parser(prog: str = "kura-perf simulate-api") -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog=prog, description=DESCRIPTION))


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option of the simulator's command line, on `p`: `python -m kura_perf.simulator` and
    `kura-perf simulate-api` share this one definition, so neither can drift from the other."""
    p.add_argument("--port", type=int, default=8787, help="port to bind on 127.0.0.1 (0 = any free port)")
    p.add_argument("--port-file", type=Path, help="write the bound port to this file once listening")
    p.add_argument("--config", type=Path, help="JSON file with SimulatorConfig fields")
    p.add_argument("--config-json", help="SimulatorConfig fields as a JSON object")
    limits = p.add_argument_group("limits and latency (both endpoint kinds unless prefixed)")
    for flag, kind in (("--rpm", int), ("--tpm", int), ("--latency-ms", float), ("--p99-ms", float)):
        limits.add_argument(flag, type=kind)
        limits.add_argument("--chat" + flag[1:], type=kind)
        limits.add_argument("--embeddings" + flag[1:], type=kind)
    limits.add_argument("--ms-per-output-token", type=float, help="chat latency added per output token")
    limits.add_argument("--ms-per-input-token", type=float, help="embeddings latency added per input token")
    limits.add_argument("--speed-factor", type=float,
                        help="divide every latency by this (10 = ten times faster than the model: times are "
                             "scaled, not a prediction); default 1, each model's published speed")
    limits.add_argument("--burst-s", type=float, help="bucket capacity in seconds of limit (60 = a full minute)")
    faults = p.add_argument_group("faults (probability per request)")
    faults.add_argument("--fault-rate", type=float, help="500/503 responses")
    faults.add_argument("--rate-limit-rate", type=float, help="forced 429s, independent of the buckets")
    faults.add_argument("--timeout-rate", type=float, help="answers sent only after --slow-response-s")
    faults.add_argument("--drop-rate", type=float, help="connections closed without a response")
    faults.add_argument("--slow-response-s", type=float)
    faults.add_argument("--forced-retry-after-s", type=float)
    faults.add_argument("--outage", type=_outage, action="append", metavar="START_S:DURATION_S",
                        help="all requests get 503 in this window after boot (repeatable)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="also serve this model name besides the built-in ones (repeatable; '*' serves any name)")
    p.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413 (default 25 MiB, as OpenAI)")
    p.add_argument("--seed", type=int)
    p.add_argument("--verbose", action="store_true", help="one stderr line per request")
    return p
