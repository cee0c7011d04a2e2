"""`python -m kura_perf.simulator` / `kura-perf simulate-api`: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from kura_perf.atomic import atomic_write_text
from kura_perf.simulator.config import SimulatorConfig
from kura_perf.simulator.server import start_server

PORT_LINE_PREFIX = "SIMULATOR_PORT="

# flag dest -> SimulatorConfig.from_dict key
_FLAG_KEYS = {
    "rpm": "rpm", "tpm": "tpm", "latency_ms": "latency_ms", "p99_ms": "p99_ms",
    "chat_rpm": "chat_rpm", "chat_tpm": "chat_tpm", "chat_latency_ms": "chat_latency_ms",
    "chat_p99_ms": "chat_p99_ms", "ms_per_output_token": "chat_ms_per_output_token",
    "embeddings_rpm": "embeddings_rpm", "embeddings_tpm": "embeddings_tpm",
    "embeddings_latency_ms": "embeddings_latency_ms", "embeddings_p99_ms": "embeddings_p99_ms",
    "fault_rate": "error_rate", "rate_limit_rate": "rate_limit_rate", "timeout_rate": "timeout_rate",
    "drop_rate": "drop_rate", "slow_response_s": "slow_response_s",
    "forced_retry_after_s": "forced_retry_after_s", "burst_s": "burst_s", "seed": "seed",
}


def _outage(text: str) -> tuple[float, float]:
    try:
        start, duration = text.split(":")
        return float(start), float(duration)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START_S:DURATION_S, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kura-perf simulate-api",
                                description="OpenAI-compatible API simulator on 127.0.0.1 (limits, latency, faults).")
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
    p.add_argument("--seed", type=int)
    p.add_argument("--verbose", action="store_true", help="one stderr line per request")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    data: dict = {}
    if args.config:
        data.update(json.loads(args.config.read_text()))
    if args.config_json:
        data.update(json.loads(args.config_json))
    flat = {key: getattr(args, dest) for dest, key in _FLAG_KEYS.items() if getattr(args, dest) is not None}
    if args.outage:
        flat["outages"] = args.outage
    if args.verbose:
        flat["verbose"] = True
    flat["port"] = args.port
    config = SimulatorConfig.from_dict(data)
    return config.updated(flat)


def _write_port_file(path: Path, port: int) -> None:
    atomic_write_text(path, str(port))


async def _serve_until_signalled(config: SimulatorConfig, port_file: Path | None) -> None:
    server = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"{PORT_LINE_PREFIX}{server.port}", flush=True)
    print(f"kura-perf API simulator listening on {server.base_url}", file=sys.stderr, flush=True)
    if port_file is not None:
        _write_port_file(port_file, server.port)
    try:
        await stop.wait()
    finally:
        await server.stop()


def serve(config: SimulatorConfig, port_file: Path | None = None) -> None:
    """Run the simulator in this process until SIGTERM or SIGINT.

    BLAS is held to one thread: the vector maths per request is small, and multi-threaded OpenBLAS
    on a busy machine makes each request many times slower, which would distort the latency."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only a speed matter
        asyncio.run(_serve_until_signalled(config, port_file))
        return
    with threadpool_limits(limits=1):
        asyncio.run(_serve_until_signalled(config, port_file))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"simulate-api: {exc}", file=sys.stderr)
        return 2
    try:
        serve(config, args.port_file)
    except OSError as exc:  # e.g. port in use
        print(f"simulate-api: cannot serve on 127.0.0.1:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
