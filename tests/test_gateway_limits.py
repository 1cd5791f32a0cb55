"""Exact admission under concurrency: one process in memory, one on Redis, two processes sharing Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    RunningMock,
    Series,
    gateway_process,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
    write_config,
)
from tests.servers import RedisServer

FREE_REQUEST_LIMIT = 5  # the test config's free tier: 5 requests per 120 s


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


async def burst(base_urls: list[str], user: str, count: int) -> Counter[int]:
    """`count` concurrent chat requests of `user`, spread over the gateways; status code counts."""
    clients = [
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret(user), max_retries=0, timeout=30)
        for url in base_urls
    ]

    async def one(index: int) -> int:
        api = clients[index % len(clients)]
        try:
            await api.chat.completions.create(
                model="granite-8b",
                messages=[{"role": "user", "content": f"q{index}"}],
                max_tokens=1,
            )
        except openai.RateLimitError as error:
            return error.status_code
        return 200

    try:
        return Counter(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        for api in clients:
            await api.close()


def assert_exactly_the_limit(statuses: Counter[int], metrics_of: list[dict[Series, float]]) -> None:
    assert statuses == {200: FREE_REQUEST_LIMIT, 429: 200 - FREE_REQUEST_LIMIT}
    admitted = sum(
        m.get(usage_key("authorized_calls", REQUESTS_NS, "alice", "granite-8b"), 0)
        for m in metrics_of
    )
    limited = sum(
        m.get(
            usage_key(
                "limited_calls", REQUESTS_NS, "alice", "granite-8b", limit_name="free-requests"
            ),
            0,
        )
        for m in metrics_of
    )
    answered = sum(
        m.get(usage_key("authorized_calls", TOKENS_NS, "alice", "granite-8b"), 0)
        for m in metrics_of
    )
    assert (admitted, limited, answered) == (
        FREE_REQUEST_LIMIT,
        200 - FREE_REQUEST_LIMIT,
        FREE_REQUEST_LIMIT,
    )


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_200_concurrent_requests_admit_exactly_the_limit(
    storage: str, mock: RunningMock, request: pytest.FixtureRequest
) -> None:
    url = "memory"
    if storage == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        url = redis.url
    with running_gateway(make_config(mock.url, storage=url)) as gateway:
        statuses = await burst([gateway], "alice", 200)
        assert_exactly_the_limit(statuses, [scrape(gateway)])


async def test_two_gateway_processes_sharing_redis_admit_exactly_the_limit(
    mock: RunningMock, redis: RedisServer, tmp_path: Path
) -> None:
    config = write_config(make_config(mock.url, storage=redis.url), tmp_path / "maas.yaml")
    with gateway_process(config) as first, gateway_process(config) as second:
        statuses = await burst([first, second], "alice", 200)
        per_process = [scrape(first), scrape(second)]
        assert_exactly_the_limit(statuses, per_process)
        # Both processes really served: each admitted or rejected part of the burst.
        for metrics in per_process:
            assert (
                sum(v for k, v in metrics.items() if k[0] in {"authorized_calls", "limited_calls"})
                > 0
            )
