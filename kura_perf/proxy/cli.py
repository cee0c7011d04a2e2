"""Serve the proxy in this process until SIGTERM or SIGINT (`kura-perf proxy`, `python -m kura_perf.proxy`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text
from kura_perf.proxy import DEFAULT_TIMEOUT_S


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--upstream", required=True,
                        help="the real endpoint's base URL, e.g. https://api.openai.com/v1 (the proxy's /v1 "
                             "stands for it)")
    parser.add_argument("--api-log", required=True, metavar="FILE",
                        help="the JSON-lines request log to append to (for `kura-perf calibrate FILE`)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per request to the answer's last byte (default {DEFAULT_TIMEOUT_S:g})")
    return parser


def config_from_args(args: argparse.Namespace):
    """ProxyError (exit 2, one line) for a bad URL or port."""
    from kura_perf.proxy.server import ProxyConfig

    return ProxyConfig(upstream=args.upstream, api_log=str(Path(args.api_log).resolve()), port=args.port,
                       timeout_s=args.timeout)


async def _serve(config, port_file: Path | None) -> None:
    from kura_perf.proxy.server import start_proxy

    proxy = await start_proxy(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"kura-perf proxy listening on {proxy.base_url} -> {config.upstream}; request log: {config.api_log}",
          file=sys.stderr, flush=True)
    if port_file is not None:
        atomic_write_text(port_file, str(proxy.port))
    try:
        await stop.wait()
    finally:
        await proxy.stop()


def serve(config, port_file: Path | None = None) -> int:
    try:
        asyncio.run(_serve(config, port_file))
    except OSError as exc:  # e.g. the port is in use
        print(f"proxy: cannot serve on 127.0.0.1:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from kura_perf.errors import KuraPerfError

    args = add_arguments(argparse.ArgumentParser(prog="python -m kura_perf.proxy")).parse_args(argv)
    try:
        config = config_from_args(args)
    except KuraPerfError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    return serve(config, args.port_file)
