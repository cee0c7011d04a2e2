"""Serve an aiohttp application on 127.0.0.1 from the current event loop: the simulator and the recording
proxy both do, and both hand back the same handle (its port, its /v1 URL, `await stop()`)."""

from __future__ import annotations

from aiohttp import web

from kura_perf.child_server import LOOPBACK


class RunningServer:
    """A started server on the current event loop; `await stop()` closes it."""

    def __init__(self, runner: web.AppRunner, port: int):
        self.runner = runner
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve_app(app: web.Application, port: int) -> RunningServer:
    """Bind loopback only (port 0: any free port); no signal handlers (the owner stops it), no access log."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return RunningServer(runner, runner.addresses[0][1])
