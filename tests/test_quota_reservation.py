"""Reservation mode through the gateway: concurrency, replicas, and requests that die mid-stream.

The truth is computed outside the code under test: the usage the clients
received, and the counters read straight from Redis (or the store's read-only check).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from maas_metrics.config import Config, parse_config
from tests.gateway_harness import (
    RunningMock,
    gateway_process,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    write_config,
)
from tests.servers import RedisServer

TOKEN_KEY = "maas:11:maas/tokens:free-tokens:{user}"
FREE_TOKENS = 100
MAX_TOKENS = 20  # the mock answers at most 20 tokens; prompt "q.." is 1 token: 21 reserved


def reservation_config(upstream: str, storage: str) -> Config:
    """The test config with the free tier's token policy in reservation mode (requests unbound)."""
    data: dict[str, Any] = make_config(upstream, storage=storage).model_dump(mode="json")
    free = data["tiers"][0]
    free["request_limit"] = {"max": 1000, "window_seconds": 120}
    free["token_limit"] = {"max": FREE_TOKENS, "window_seconds": 60, "mode": "reservation"}
    return parse_config(data)


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock(latency_ms=50) as server:
        yield server


async def burst(urls: list[str], user: str, count: int) -> list[int]:
    """`count` concurrent chat requests; the total_tokens of each admitted one."""
    clients = [
        openai.AsyncOpenAI(base_url=f"{u}/v1", api_key=secret(user), max_retries=0, timeout=30)
        for u in urls
    ]

    async def one(index: int) -> int | None:
        try:
            answer = await clients[index % len(clients)].chat.completions.create(
                model="granite-8b",
                messages=[{"role": "user", "content": f"q{index}"}],
                max_tokens=MAX_TOKENS,
            )
        except openai.RateLimitError:
            return None
        assert answer.usage is not None
        return answer.usage.total_tokens

    try:
        results = await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        for client in clients:
            await client.close()
    return [r for r in results if r is not None]


def assert_admitted_what_fits(used: list[int], counter: int) -> None:
    # The mock never answers more than was reserved, so there is no overshoot to allow for.
    assert sum(used) <= FREE_TOKENS
    # Rejection needs used + held >= 80 and each admitted request adds at most 21: >= 4 fit.
    assert len(used) >= 4
    assert counter == sum(used)


def read_counter(url: str, user: str) -> tuple[int, int]:
    """(used, held by live reservations) straight from Redis."""
    client = redis.Redis.from_url(url)
    try:
        key = TOKEN_KEY.format(user=user)
        used = int(client.get(key) or 0)
        held = int(client.hget(f"maas-res:{key}", "#") or 0)
    finally:
        client.close()
    return used, held


async def test_50_concurrent_requests_in_memory_admit_what_fits(mock: RunningMock) -> None:
    with running_gateway(reservation_config(mock.url, "memory")) as gateway:
        used = await burst([gateway], "alice", 50)
        # The store's counter, read through the gateway's own read-only check (memory has no
        # outside reader): the next reservation of 100 - sum(used) fits, one more does not.
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
            left = FREE_TOKENS - sum(used)
            body = {"model": "granite-8b", "prompt": "", "max_tokens": left + 1}
            refused = await client.post(
                "/v1/completions", json=body, headers={"Authorization": f"Bearer {secret('alice')}"}
            )
            assert refused.status_code == 429
            assert refused.headers["X-RateLimit-Remaining"] == str(left)
        assert_admitted_what_fits(used, sum(used))


async def test_50_concurrent_requests_on_redis_admit_what_fits(
    mock: RunningMock, redis: RedisServer
) -> None:
    with running_gateway(reservation_config(mock.url, redis.url)) as gateway:
        used = await burst([gateway], "alice", 50)
    counter, held = read_counter(redis.url, "alice")
    assert held == 0
    assert_admitted_what_fits(used, counter)


async def test_two_replicas_sharing_redis_admit_what_fits(
    mock: RunningMock, redis: RedisServer, tmp_path: Path
) -> None:
    config = write_config(reservation_config(mock.url, redis.url), tmp_path / "maas.yaml")
    with gateway_process(config) as first, gateway_process(config) as second:
        used = await burst([first, second], "bob", 50)
    counter, held = read_counter(redis.url, "bob")
    assert held == 0
    assert_admitted_what_fits(used, counter)


def held_in_metrics(gateway: str) -> tuple[int, int]:
    """The free tier's outstanding reservations and tokens, as /metrics shows them."""
    metrics = scrape(gateway)
    tier = frozenset({("tier", "free")})
    return (
        int(metrics[("maas_token_reservations_outstanding", tier)]),
        int(metrics[("maas_token_reservations_outstanding_tokens", tier)]),
    )


def wait_until_released(url: str, user: str) -> tuple[int, int]:
    """Poll Redis (bounded) until no reservation is held; the final (used, held)."""
    deadline = time.monotonic() + 15
    state = read_counter(url, user)
    while state[1] and time.monotonic() < deadline:
        time.sleep(0.05)
        state = read_counter(url, user)
    return state


def test_stream_abandoned_by_the_client_commits_what_the_upstream_delivered(
    redis: RedisServer,
) -> None:
    with (
        running_mock(latency_ms=3000) as slow,
        running_gateway(reservation_config(slow.url, redis.url)) as gateway,
    ):
        body = {
            "model": "granite-8b",
            "messages": [{"role": "user", "content": "walk away"}],
            "max_tokens": MAX_TOKENS,
            "stream": True,
        }
        headers = {"Authorization": f"Bearer {secret('carol')}"}
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            # Headers go out before the body: the hold is visible to the client and in Redis.
            assert response.headers["X-RateLimit-Remaining-Tokens"] == str(FREE_TOKENS - 23)
            assert read_counter(redis.url, "carol") == (0, 23)  # 20 + ceil(9 / 4) held
            assert held_in_metrics(gateway) == (1, 23)
        # The client hung up before the answer ended. The gateway still reads the upstream to
        # its end (every delivered token is counted once), commits the real usage and drops
        # the hold. The truth: the mock's own count for the same request, asked directly.
        direct = httpx.post(
            f"{slow.url}/chat/completions", json={**body, "stream": False}, timeout=30
        )
        truth = direct.json()["usage"]["total_tokens"]
        assert wait_until_released(redis.url, "carol") == (truth, 0)
        assert held_in_metrics(gateway) == (0, 0)


def test_stream_cut_by_the_upstream_releases_and_a_full_one_commits_exactly(
    redis: RedisServer,
) -> None:
    with running_mock(latency_ms=2000) as dying:
        config = reservation_config(dying.url, redis.url)
        with running_gateway(config) as gateway:
            body = {
                "model": "granite-8b",
                "messages": [{"role": "user", "content": "cut me off"}],
                "max_tokens": MAX_TOKENS,
                "stream": True,
            }
            headers = {"Authorization": f"Bearer {secret('bob')}"}
            with httpx.stream(
                "POST", f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30
            ) as response:
                assert read_counter(redis.url, "bob")[1] > 0
                dying.stop()  # the upstream dies before its first byte
                text = response.read().decode()
            assert "error" in text
            assert wait_until_released(redis.url, "bob") == (0, 0)
    with (
        running_mock() as healthy,
        running_gateway(reservation_config(healthy.url, redis.url)) as gw,
    ):
        api = openai.OpenAI(base_url=f"{gw}/v1", api_key=secret("bob"), max_retries=0)
        chunks = list(
            api.chat.completions.create(
                model="granite-8b",
                messages=[{"role": "user", "content": "all the way"}],
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        assert wait_until_released(redis.url, "bob") == (usage.total_tokens, 0)
