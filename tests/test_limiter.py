"""One behaviour suite for every counter store: in memory and on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from maas_metrics.limiter import InMemoryStore, Limit, RateLimiter
from maas_metrics.limiter.redis import RedisStore
from tests.servers import RedisServer

LIMIT = Limit(namespace="maas/requests", name="free-requests", max_value=5, seconds=2)
TOKENS = Limit(namespace="maas/tokens", name="free-tokens", max_value=100, seconds=2)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        store: InMemoryStore | RedisStore = InMemoryStore()
    else:
        server: RedisServer = request.getfixturevalue("redis")
        store = RedisStore(server.url)
    limiter = RateLimiter(store)
    yield limiter
    await limiter.close()


async def test_request_policy_admits_exactly_max_per_window(limiter: RateLimiter) -> None:
    decisions = [await limiter.check_and_update(LIMIT, "alice") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert 0 < decisions[-1].reset_seconds <= 2


async def test_counters_are_per_user(limiter: RateLimiter) -> None:
    for _ in range(5):
        assert (await limiter.check_and_update(LIMIT, "alice")).allowed
    assert not (await limiter.check_and_update(LIMIT, "alice")).allowed
    assert (await limiter.check_and_update(LIMIT, "bob")).allowed


async def test_window_starts_at_first_hit_and_expires(limiter: RateLimiter) -> None:
    short = Limit("maas/requests", "short", max_value=2, seconds=1)
    assert (await limiter.check_and_update(short, "u")).allowed
    await asyncio.sleep(0.5)
    assert (await limiter.check_and_update(short, "u")).allowed
    assert not (await limiter.check_and_update(short, "u")).allowed
    # The window is fixed from the first hit: ~0.5 s later it is over, not 1 s after the last hit.
    await asyncio.sleep(0.6)
    assert (await limiter.check_and_update(short, "u")).allowed


async def test_rejected_update_does_not_count(limiter: RateLimiter) -> None:
    big = Limit("maas/requests", "big", max_value=10, seconds=5)
    assert (await limiter.check_and_update(big, "u", delta=8)).allowed
    assert not (await limiter.check_and_update(big, "u", delta=3)).allowed
    decision = await limiter.check_and_update(big, "u", delta=2)
    assert decision.allowed and decision.remaining == 0


async def test_token_policy_rejects_only_once_at_or_over_max(limiter: RateLimiter) -> None:
    assert (await limiter.check(TOKENS, "alice")).allowed
    await limiter.report(TOKENS, "alice", 60)
    assert (await limiter.check(TOKENS, "alice")).allowed  # 60 < 100
    await limiter.report(TOKENS, "alice", 70)  # overshoots to 130, as Limitador allows
    decision = await limiter.check(TOKENS, "alice")
    assert not decision.allowed and decision.remaining == 0
    await limiter.report(TOKENS, "bob", 100)
    assert not (await limiter.check(TOKENS, "bob")).allowed  # exactly at the max


async def test_token_window_expires(limiter: RateLimiter) -> None:
    short = Limit("maas/tokens", "short-tokens", max_value=10, seconds=1)
    await limiter.report(short, "u", 50)
    assert not (await limiter.check(short, "u")).allowed
    await asyncio.sleep(1.1)
    assert (await limiter.check(short, "u")).allowed


async def test_concurrent_checks_admit_exactly_the_limit(limiter: RateLimiter) -> None:
    limit = Limit("maas/requests", "burst", max_value=37, seconds=30)
    decisions = await asyncio.gather(*(limiter.check_and_update(limit, "u") for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 37


async def test_hostile_user_names_get_their_own_counters(limiter: RateLimiter) -> None:
    users = ['a"b', "a:b", "a\nb", "ünïcødé", "x" * 10_000, ""]
    for user in users:
        for _ in range(5):
            assert (await limiter.check_and_update(LIMIT, user)).allowed
        assert not (await limiter.check_and_update(LIMIT, user)).allowed


async def test_redis_down_follows_failure_mode_and_recovers(redis: RedisServer) -> None:
    for mode, expected in (("deny", False), ("allow", True)):
        limiter = RateLimiter(RedisStore(redis.url), on_failure=mode)  # type: ignore[arg-type]
        assert (await limiter.check_and_update(LIMIT, f"{mode}-user")).allowed
        redis.stop()
        decision = await limiter.check_and_update(LIMIT, f"{mode}-user")
        assert decision.degraded and decision.allowed is expected
        assert limiter.partitioned
        assert await limiter.report(TOKENS, "u", 5) is False
        assert not await limiter.probe()
        redis.start()
        assert await limiter.probe()
        assert not limiter.partitioned
        # Counting resumes on the restarted (empty) server.
        assert (await limiter.check_and_update(LIMIT, f"{mode}-user")).remaining == 4
        await limiter.close()


async def test_memory_store_drops_expired_counters() -> None:
    now = [0.0]
    store = InMemoryStore(clock=lambda: now[0])
    limiter = RateLimiter(store)
    short = Limit("maas/requests", "short", max_value=1, seconds=1)
    for i in range(5000):
        await limiter.check_and_update(short, f"old-{i}")
    now[0] = 10.0  # every counter above has expired
    for i in range(20_000):  # only new keys, as with many users: the old ones must still go
        await limiter.check_and_update(short, f"new-{i}")
    assert len(store) == 20_000  # the 5,000 expired counters were swept, not kept forever
    assert (await limiter.check_and_update(short, "old-1")).allowed  # expired: a new window
