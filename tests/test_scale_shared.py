"""Worker counts pushed to a real redis-server survive Redis outages and Redis losing its data.

A `CounterPusher` (a worker's side) and `SharedCounters` (the operator's
side) run in this process against a real redis-server that is stopped and
started again without persistence. The truth is the increments the test
made; the scraped value must reach it exactly, born at zero and never going back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from maas_metrics.telemetry import GatewayMetrics
from maas_metrics.telemetry.exposition import Exposition
from maas_metrics.telemetry.shared import CounterPusher, SharedCounters
from tests.gateway_harness import parse_metrics
from tests.servers import RedisServer

NS = "maas/requests"


def calls(exposition: Exposition) -> dict[str, float]:
    return {
        dict(labels)["user"]: value
        for (name, labels), value in parse_metrics(exposition.scrape().decode()).items()
        if name == "authorized_calls"
    }


def test_pending_counts_survive_an_outage_and_a_redis_that_lost_its_data(
    tmp_path: Path, redis: RedisServer
) -> None:
    async def scenario() -> list[dict[str, float]]:
        worker = GatewayMetrics()
        pusher = CounterPusher(worker, redis.url, "t", interval=60)
        operator = GatewayMetrics()
        shared = SharedCounters(operator, redis.url, "t")
        exposition = Exposition(operator.families())
        seen: list[dict[str, float]] = []

        async def scrape() -> None:
            await shared.refresh()
            seen.append(calls(exposition))

        await scrape()  # nothing yet: later series are born at zero
        for _ in range(5):
            worker.authorized(NS, ("ann", "free"), "m", 1)
        await pusher.push()
        await pusher.push()  # the series ripened in the worker: nothing new to add
        await scrape()
        await scrape()
        redis.stop()
        for _ in range(3):
            worker.authorized(NS, ("ann", "free"), "m", 1)
        worker.authorized(NS, ("ben", "free"), "m", 1)
        await pusher.push()  # fails: the counts stay pending
        assert not await shared.refresh()
        redis.start()  # same port, empty: the earlier totals are gone from Redis
        await pusher.push()
        await scrape()
        await scrape()
        await pusher.stop()
        await shared.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == {}
    assert seen[1] == {"ann": 0}
    assert seen[2] == {"ann": 5}
    assert seen[3] == {"ann": 8, "ben": 0}
    assert seen[4] == {"ann": 8, "ben": 1}
