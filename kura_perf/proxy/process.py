"""Run the proxy beside a run (the kura backend against a real endpoint) or a test, and always stop it.

Started, waited for and stopped as the simulator is (kura_perf/child_server.py: its own process group,
/_proxy/health polled, SIGTERM then SIGKILL, a finalizer if dropped without `stop()`).
A separate process rather than a thread of the run: the proxy's own work never shares the GIL (nor
the meter's CPU figures) with the stage being measured.
"""

from __future__ import annotations

import sys

from kura_perf.child_server import LOOPBACK, ChildServer


class ProxyProcess(ChildServer):
    """`with ProxyProcess(upstream, api_log) as proxy: client = AsyncOpenAI(base_url=proxy.base_url)`."""

    label = "the recording proxy"
    module = "kura_perf.proxy"
    health_path = "/_proxy/health"

    def __init__(self, upstream: str, api_log: str, *, startup_timeout_s: float = 30.0,
                 stop_timeout_s: float = 5.0, python: str = sys.executable):
        from kura_perf.proxy.server import ProxyConfig

        ProxyConfig(upstream=upstream, api_log=api_log)  # a bad URL is refused here, not in the child
        super().__init__(startup_timeout_s=startup_timeout_s, stop_timeout_s=stop_timeout_s, python=python)
        self.upstream, self.api_log = upstream, str(api_log)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def arguments(self) -> list[str]:
        return ["--upstream", self.upstream, "--api-log", self.api_log]
