"""`python -m kura_perf.simulator` / `kura-perf simulate-api`: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text
from kura_perf.simulator.args import FLAG_KEYS, build_parser
from kura_perf.simulator.config import SimulatorConfig
from kura_perf.simulator.server import start_server

PORT_LINE_PREFIX = "SIMULATOR_PORT="

def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    data: dict = {}
    if args.config:
        data.update(json.loads(args.config.read_text()))
    if args.config_json:
        data.update(json.loads(args.config_json))
    flat = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items() if getattr(args, dest) is not None}
    if args.outage:
        flat["outages"] = args.outage
    if args.verbose:
        flat["verbose"] = True
    flat["port"] = args.port
    config = SimulatorConfig.from_dict(data).updated(flat)
    return config.serving(args.model) if args.model else config


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
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with parsed arguments (from this module's parser or `kura-perf simulate-api`'s: the same one)."""
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
