"""`kura-perf proxy --upstream URL --api-log FILE [--port N]`: record any client's requests to a real
endpoint (kura_perf/proxy/) for `kura-perf calibrate`."""

from __future__ import annotations


def cmd_proxy(args) -> int:
    from kura_perf.proxy.cli import config_from_args, serve

    config = config_from_args(args)  # ProxyError: one line, exit 2
    return serve(config, args.port_file)


def add_commands(sub) -> None:
    """proxy: serves until Ctrl-C or SIGTERM; reads and writes no records."""
    from kura_perf.proxy.cli import add_arguments

    proxy = sub.add_parser("proxy", help="a recording reverse proxy: point any OpenAI-compatible client at it "
                                         "to get a request log (--api-log) for `kura-perf calibrate`")
    add_arguments(proxy)
    proxy.set_defaults(func=cmd_proxy, reaps=False)
