"""Both policies in one round trip, and token reservations: in memory and on a real Redis.

Counters are read back independently of the store under test: straight from
Redis with plain GET/HGET, or (memory) through the store's own read-only check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from maas_metrics.limiter import InMemoryStore, Limit, RateLimiter
from maas_metrics.limiter.redis import RedisStore
from tests.servers import RedisServer

REQUESTS = Limit("maas/requests", "free-requests", max_value=5, seconds=30)
TOKENS = Limit("maas/tokens", "free-tokens", max_value=100, seconds=30)


class Harness:
    """A limiter plus an independent reader of its counters."""

    def __init__(self, limiter: RateLimiter, redis_url: str | None) -> None:
        self.limiter = limiter
        self.raw = aioredis.from_url(redis_url) if redis_url else None

    async def value(self, limit: Limit, user: str) -> int:
        # The key layout, written out here rather than taken from the code under test.
        key = f"maas:{len(limit.namespace)}:{limit.namespace}:{limit.name}:{user}"
        if self.raw is not None:
            raw = await self.raw.get(key)
            return 0 if raw is None else int(raw)
        store = self.limiter.store
        assert isinstance(store, InMemoryStore)
        return (await store.check(key, limit.max_value, limit.seconds * 1000)).value

    async def held(self, limit: Limit, user: str) -> int | None:
        """Tokens held by live reservations (Redis's running total), or None in memory."""
        if self.raw is None:
            return None
        key = f"maas:{len(limit.namespace)}:{limit.namespace}:{limit.name}:{user}"
        raw = await self.raw.hget(f"maas-res:{key}", "#")
        return 0 if raw is None else int(raw)


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    url = None
    if request.param == "memory":
        store: InMemoryStore | RedisStore = InMemoryStore()
    else:
        server: RedisServer = request.getfixturevalue("redis")
        url = server.url
        store = RedisStore(url)
    harness = Harness(RateLimiter(store), url)
    yield harness
    await harness.limiter.close()
    if harness.raw is not None:
        await harness.raw.aclose()


async def test_token_rejection_keeps_the_request_counted_as_kuadrant_does(h: Harness) -> None:
    # Kuadrant sends the RateLimitPolicy and the TokenRateLimitPolicy to Limitador as two
    # calls, request policy first: a token 429 leaves the request hit counted.
    await h.limiter.settle(TOKENS, "alice", 100)
    result = await h.limiter.admit(REQUESTS, TOKENS, "alice")
    assert result.requests is not None and result.requests.allowed
    assert result.tokens is not None and not result.tokens.allowed
    assert await h.value(REQUESTS, "alice") == 1


async def test_request_rejection_skips_the_token_policy(h: Harness) -> None:
    for _ in range(5):
        assert (await h.limiter.admit(REQUESTS, TOKENS, "bob")).requests.allowed  # type: ignore[union-attr]
    result = await h.limiter.admit(REQUESTS, TOKENS, "bob", reserve=10, reservation_ttl_seconds=30)
    assert result.requests is not None and not result.requests.allowed
    assert result.tokens is None and result.reservation is None
    assert await h.value(REQUESTS, "bob") == 5
    assert await h.held(TOKENS, "bob") in (0, None)


async def test_optimistic_admit_and_report_match_limitador(h: Harness) -> None:
    first = await h.limiter.admit(None, TOKENS, "carol")
    assert first.tokens is not None and first.tokens.allowed and first.tokens.remaining == 100
    after = await h.limiter.settle(TOKENS, "carol", 130)  # overshoots, as Limitador allows
    assert after is not None and after.remaining == 0
    assert await h.value(TOKENS, "carol") == 130
    assert not (await h.limiter.admit(None, TOKENS, "carol")).tokens.allowed  # type: ignore[union-attr]


async def test_concurrent_reservations_admit_only_what_fits(h: Harness) -> None:
    results = await asyncio.gather(
        *(
            h.limiter.admit(None, TOKENS, "dave", reserve=30, reservation_ttl_seconds=30)
            for _ in range(50)
        )
    )
    admitted = [r for r in results if r.reservation is not None]
    assert len(admitted) == 3  # 3 x 30 <= 100 < 4 x 30
    assert await h.held(TOKENS, "dave") in (90, None)
    assert await h.value(TOKENS, "dave") == 0  # a hold is not usage
    # Commit less than reserved, release one: the difference goes back.
    await h.limiter.settle(TOKENS, "dave", 12, admitted[0].reservation)
    await h.limiter.settle(TOKENS, "dave", 0, admitted[1].reservation)
    assert await h.value(TOKENS, "dave") == 12
    assert await h.held(TOKENS, "dave") in (30, None)
    # Settling the same reservation twice holds nothing back twice.
    await h.limiter.settle(TOKENS, "dave", 0, admitted[1].reservation)
    assert await h.held(TOKENS, "dave") in (30, None)
    # 12 used + 30 held + 58 = 100 fits exactly; 59 does not.
    assert (await h.limiter.admit(None, TOKENS, "dave", reserve=59)).reservation is None
    fits = await h.limiter.admit(None, TOKENS, "dave", reserve=58, reservation_ttl_seconds=30)
    assert fits.tokens is not None and fits.tokens.remaining == 0 and fits.reservation is not None


async def test_expired_reservation_charges_nothing(h: Harness) -> None:
    held = await h.limiter.admit(None, TOKENS, "erin", reserve=90, reservation_ttl_seconds=0.3)
    assert held.reservation is not None
    assert (await h.limiter.admit(None, TOKENS, "erin", reserve=90)).reservation is None
    await asyncio.sleep(0.5)  # the hold's TTL passes; the request never completes
    again = await h.limiter.admit(None, TOKENS, "erin", reserve=90, reservation_ttl_seconds=30)
    assert again.reservation is not None
    assert await h.value(TOKENS, "erin") == 0
    # A late commit of the expired hold still counts the real usage (as Limitador's commit).
    await h.limiter.settle(TOKENS, "erin", 7, held.reservation)
    assert await h.value(TOKENS, "erin") == 7
    assert await h.held(TOKENS, "erin") in (90, None)


async def test_reservation_ttl_is_clamped_to_the_window_end(h: Harness) -> None:
    short = Limit("maas/tokens", "short-tokens", max_value=100, seconds=1)
    held = await h.limiter.admit(None, short, "finn", reserve=100, reservation_ttl_seconds=60)
    assert held.reservation is not None
    await asyncio.sleep(1.1)  # the window ends long before the 60 s TTL
    fresh = await h.limiter.admit(None, short, "finn", reserve=100, reservation_ttl_seconds=60)
    assert fresh.reservation is not None and fresh.tokens is not None
    assert fresh.tokens.outstanding == 100
    assert await h.value(short, "finn") == 0


async def test_two_replicas_on_one_redis_share_reservations(redis: RedisServer) -> None:
    replicas = [RateLimiter(RedisStore(redis.url)), RateLimiter(RedisStore(redis.url))]
    try:
        results = await asyncio.gather(
            *(
                replicas[i % 2].admit(None, TOKENS, "gus", reserve=21, reservation_ttl_seconds=30)
                for i in range(50)
            )
        )
        assert sum(r.reservation is not None for r in results) == 4  # 4 x 21 <= 100 < 5 x 21
    finally:
        for limiter in replicas:
            await limiter.close()


async def test_store_down_degrades_both_policies(redis: RedisServer) -> None:
    limiter = RateLimiter(RedisStore(redis.url), on_failure="allow")
    redis.stop()
    try:
        result = await limiter.admit(REQUESTS, TOKENS, "hal", reserve=10)
        assert result.requests is not None and result.requests.degraded
        assert result.tokens is not None and result.tokens.degraded and result.tokens.allowed
        assert result.reservation is None
        assert await limiter.settle(TOKENS, "hal", 5) is None and limiter.partitioned
    finally:
        redis.start()
        await limiter.close()


async def test_memory_holds_expire_one_by_one_after_others_were_settled() -> None:
    now = [0.0]
    limiter = RateLimiter(InMemoryStore(clock=lambda: now[0]))
    limit = Limit("maas/tokens", "t", max_value=100, seconds=60)
    a = await limiter.admit(None, limit, "u", reserve=30, reservation_ttl_seconds=10)
    b = await limiter.admit(None, limit, "u", reserve=30, reservation_ttl_seconds=20)
    c = await limiter.admit(None, limit, "u", reserve=30, reservation_ttl_seconds=30)
    assert None not in (a.reservation, b.reservation, c.reservation)
    await limiter.settle(limit, "u", 0, a.reservation)  # released early: 60 held
    now[0] = 15.0  # b's hold is still live, c's too
    assert (await limiter.admit(None, limit, "u", reserve=41)).reservation is None
    now[0] = 25.0  # b expired: 30 held
    assert (await limiter.admit(None, limit, "u", reserve=71)).reservation is None
    d = await limiter.admit(None, limit, "u", reserve=70, reservation_ttl_seconds=1)
    assert d.tokens is not None and d.tokens.outstanding == 100
    now[0] = 31.0  # c and d expired: nothing held, nothing charged
    e = await limiter.admit(None, limit, "u", reserve=100, reservation_ttl_seconds=1)
    assert e.reservation is not None and e.tokens is not None and e.tokens.remaining == 0
    assert e.tokens.outstanding == 100
