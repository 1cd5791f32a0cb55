"""Through the gateway on Redis: a store error on one user's counter fails only that user's requests.

Concurrent requests of several users share the limiter's script calls
(coalescing); one user's request counter is made unreadable in Redis. That
user's requests get the store-failure answer (deny: 503, OpenAI-style
error) and change no counter; everyone else's are answered and counted
exactly. Counters are read from Redis with GET and from /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
import redis as syncredis

from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    RunningMock,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
)
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def request_key(user: str) -> str:
    # The key layout, written out here rather than taken from the code under test.
    return f"maas:{len(REQUESTS_NS)}:{REQUESTS_NS}:free-requests:{user}"


async def ask(base: str, user: str) -> int | str:
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=secret(user), max_retries=0)
    try:
        reply = await client.chat.completions.create(
            model="granite-8b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert reply.usage is not None
        return reply.usage.total_tokens
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        return f"{error.status_code} {body.get('message')}"
    finally:
        await client.close()


def test_a_broken_counter_fails_only_its_users_requests(
    mock: RunningMock, redis: RedisServer
) -> None:
    raw = syncredis.Redis.from_url(redis.url)
    raw.set(request_key("alice"), "not-a-number", px=120_000)
    users = ["alice", "bob", "carol"]
    with running_gateway(make_config(mock.url, storage=redis.url, on_failure="deny")) as gateway:
        before = scrape(gateway.operator)

        async def burst() -> list[int | str]:
            return await asyncio.gather(*(ask(gateway, u) for _ in range(4) for u in users))

        answers = asyncio.run(burst())
        after = scrape(gateway.operator)
    by_user = {u: answers[i :: len(users)] for i, u in enumerate(users)}
    assert by_user["alice"] == ["503 rate limit store unavailable"] * 4
    for user in ("bob", "carol"):
        assert all(isinstance(a, int) and a > 0 for a in by_user[user]), by_user[user]
        assert int(raw.get(request_key(user)) or 0) == 4
        calls = usage_key("authorized_calls", REQUESTS_NS, user, "granite-8b")
        tokens = usage_key("authorized_hits", TOKENS_NS, user, "granite-8b")
        assert after[calls] - before.get(calls, 0) == 4
        assert after[tokens] - before.get(tokens, 0) == sum(by_user[user])  # type: ignore[arg-type]
    for name in ("authorized_calls", "authorized_hits"):
        series = usage_key(name, REQUESTS_NS, "alice", "granite-8b")
        assert after.get(series, 0) == before.get(series, 0) == 0
    assert raw.get(request_key("alice")) == b"not-a-number"
    raw.close()
