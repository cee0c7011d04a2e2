"""An OpenAI-compatible API simulator on 127.0.0.1 for load-testing the API path offline.

    with SimulatorProcess({"chat_rpm": 500, "latency_ms": 20}) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="anything")
        ...
        sim.log()  # what the server answered, to check the client's counts against

Importing this package does not import aiohttp; only serving does.
"""

from kura_perf.simulator.config import EndpointConfig, FaultConfig, SimulatorConfig
from kura_perf.simulator.process import SimulatorProcess, SimulatorThread, run_in_thread
from kura_perf.simulator.tokens import count_tokens


def main(argv: list[str] | None = None) -> int:
    """`kura-perf simulate-api` entry point (argparse; see `python -m kura_perf.simulator --help`)."""
    from kura_perf.simulator.cli import main as cli_main  # aiohttp only when serving

    return cli_main(argv)


def serve(config: SimulatorConfig, port_file=None) -> None:
    """Serve in this process until SIGTERM/SIGINT."""
    from kura_perf.simulator.cli import serve as cli_serve  # aiohttp only when serving

    cli_serve(config, port_file)


__all__ = [
    "EndpointConfig", "FaultConfig", "SimulatorConfig", "SimulatorProcess", "SimulatorThread",
    "count_tokens", "main", "run_in_thread", "serve",
]
