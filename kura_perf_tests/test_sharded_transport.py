"""The API client's connections in small pools (models/openai_api/http.py ShardedTransport).

httpcore's pool rescans all its connections on every request start and end; one pool of ~900 made the
reference's summaries client-CPU-bound at 10K (~26 ms of CPU per call). The connections are split into
pools of at most POOL_CONNECTIONS, each request going to the least busy one."""

from __future__ import annotations

import asyncio

import httpx

from kura_perf.models.openai_api.http import POOL_CONNECTIONS, ShardedTransport


class _SlowPool(httpx.AsyncBaseTransport):
    """A pool that answers after its request has waited for `release`, counting what it holds at once."""

    def __init__(self, limits: httpx.Limits, release: asyncio.Event):
        self.limits, self.release, self.holding, self.most, self.closed = limits, release, 0, 0, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.holding += 1
        self.most = max(self.most, self.holding)
        await self.release.wait()
        self.holding -= 1
        return httpx.Response(200, request=request, content=b"{}")

    async def aclose(self) -> None:
        self.closed = True


def test_connections_are_split_into_small_pools_of_the_same_total():
    made: list[httpx.Limits] = []

    def factory(limits):
        made.append(limits)
        return httpx.AsyncHTTPTransport(limits=limits)

    transport = ShardedTransport(1004, factory=factory)
    assert len(transport.pools) == -(-1004 // POOL_CONNECTIONS)
    assert all(limits.max_connections <= POOL_CONNECTIONS for limits in made)
    assert sum(limits.max_connections for limits in made) >= 1004
    assert len(ShardedTransport(54).pools) == 1  # a fixed 50 in flight keeps one pool, as before


def test_requests_go_to_the_least_busy_pool_and_every_pool_is_closed():
    async def scenario():
        release = asyncio.Event()
        pools: list[_SlowPool] = []
        transport = ShardedTransport(4 * 8, pool_size=8, factory=lambda lim: pools.append(_SlowPool(lim, release))
                                     or pools[-1])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
            tasks = [asyncio.create_task(client.get("/x")) for _ in range(32)]
            while sum(p.holding for p in pools) < 32:
                await asyncio.sleep(0)
            spread = [p.holding for p in pools]
            release.set()
            answers = await asyncio.gather(*tasks)
        return pools, spread, answers

    pools, spread, answers = asyncio.run(scenario())
    assert len(pools) == 4 and spread == [8, 8, 8, 8]  # balanced, never over a pool's own limit
    assert all(a.status_code == 200 for a in answers)
    assert all(p.closed for p in pools)
