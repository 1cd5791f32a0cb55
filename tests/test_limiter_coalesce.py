"""Coalesced Redis decisions: one script call per loop turn, each request exactly its own answer.

Against a real redis-server. The truth is an independent model of the
limits written out here (plain dicts, from the store interface's contract),
not the store under test; the number of script calls is read from Redis's
own `INFO commandstats`, and counters straight from Redis with GET.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as syncredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maas_metrics.limiter import Limit, RateLimiter
from maas_metrics.limiter.redis import RedisStore
from maas_metrics.limiter.store import (
    BudgetCheck,
    RequestCheck,
    StoreUnavailable,
    TokenCheck,
)
from tests.servers import RedisServer, redis_server

WINDOW_MS = 600_000  # far longer than any example runs: no window ends inside one


def script_calls(url: str) -> int:
    """EVALSHA calls Redis ran the script for, from its own statistics (a NOSCRIPT reply is a
    failed call: the script was not there yet)."""
    with syncredis.Redis.from_url(url) as raw:
        stats = raw.info("commandstats").get("cmdstat_evalsha", {})
        assert isinstance(stats, dict)
        return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


# --- an independent model of the counters ----------------------------------------------------


@dataclass
class Model:
    """Fixed-window counters with no expiry (the windows outlast the test)."""

    values: dict[str, int] = field(default_factory=dict)
    holds: dict[str, dict[str, int]] = field(default_factory=dict)

    def held(self, key: str) -> int:
        return sum(self.holds.get(key, {}).values())

    def admit(
        self, request: RequestCheck | None, tokens: TokenCheck | None, budget: BudgetCheck | None
    ) -> tuple[object, ...]:
        spent = None
        if budget is not None:
            used = self.values.get(budget.key, 0)
            spent = (used < budget.max_value, used)
            if budget.hard and not spent[0]:
                return (None, None, spent)
        req = None
        if request is not None:
            value = self.values.get(request.key, 0)
            if value + 1 > request.max_value:
                return ((False, value), None, spent)
            self.values[request.key] = value + 1
            req = (True, value + 1)
        if tokens is None:
            return (req, None, spent)
        value = self.values.get(tokens.key, 0)
        if tokens.reserve <= 0:
            return (req, (value < tokens.max_value, value, 0), spent)
        held = self.held(tokens.key)
        if value + held + tokens.reserve > tokens.max_value:
            return (req, (False, value, held), spent)
        self.values.setdefault(tokens.key, 0)
        self.holds.setdefault(tokens.key, {})[tokens.reservation_id] = tokens.reserve
        return (req, (True, value, held + tokens.reserve), spent)

    def settle(self, key: str, delta: int, reservation_id: str) -> tuple[object, ...]:
        self.holds.get(key, {}).pop(reservation_id, None)
        if delta > 0:
            self.values[key] = self.values.get(key, 0) + delta
        return (True, self.values.get(key, 0), self.held(key))

    def check_and_update(self, key: str, delta: int, max_value: int) -> tuple[object, ...]:
        value = self.values.get(key, 0)
        if value + delta > max_value:
            return (False, value)
        self.values[key] = value + delta
        return (True, value + delta)

    def check(self, key: str, max_value: int) -> tuple[object, ...]:
        value = self.values.get(key, 0)
        return (value < max_value, value)

    def update(self, key: str, delta: int) -> tuple[object, ...]:
        self.values[key] = self.values.get(key, 0) + delta
        return (True, self.values[key])


# --- operations, drawn by hypothesis ----------------------------------------------------------

USERS = ("ann", "bob", "cy")


@dataclass(frozen=True)
class Op:
    kind: str  # admit, settle, cau, check, update
    user: str
    amount: int = 0  # reserve (admit), delta (settle, cau, update)
    request_max: int = 0
    token_max: int = 0
    budget_max: int = -1  # admit: -1 no budget
    hard: bool = False
    settles: int = -1  # settle: index of the admit whose reservation it settles (-1 none)


ops = st.one_of(
    st.builds(
        Op,
        kind=st.just("admit"),
        user=st.sampled_from(USERS),
        amount=st.sampled_from([0, 0, 3, 10]),
        request_max=st.integers(1, 6),
        token_max=st.integers(0, 30),
        budget_max=st.sampled_from([-1, -1, 5, 20]),
        hard=st.booleans(),
    ),
    st.builds(
        Op,
        kind=st.just("settle"),
        user=st.sampled_from(USERS),
        amount=st.integers(0, 12),
        settles=st.integers(-1, 20),
    ),
    st.builds(
        Op,
        kind=st.sampled_from(["cau", "check", "update"]),
        user=st.sampled_from(USERS),
        amount=st.integers(1, 4),
        request_max=st.integers(0, 8),
    ),
)
turns = st.lists(st.lists(ops, min_size=1, max_size=24), min_size=1, max_size=5)


class Run:
    """Turns of concurrent operations against one store, mirrored in the model."""

    def __init__(self, store: RedisStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.rids: list[str] = []  # reservation id of every admit, in issue order

    def keys(self, user: str) -> tuple[str, str, str]:
        p = self.prefix
        return f"{p}:req:{user}", f"{p}:tok:{user}", f"{p}:budget:{user}"

    def checks(self, op: Op, rid: str) -> tuple[RequestCheck, TokenCheck, BudgetCheck | None]:
        req_key, tok_key, budget_key = self.keys(op.user)
        budget = None
        if op.budget_max >= 0:
            budget = BudgetCheck(budget_key, op.budget_max, WINDOW_MS, op.hard)
        return (
            RequestCheck(req_key, op.request_max, WINDOW_MS),
            TokenCheck(tok_key, op.token_max, WINDOW_MS, op.amount, rid, WINDOW_MS),
            budget,
        )

    def rid_for(self, op: Op) -> str:
        if op.settles < 0 or op.settles >= len(self.rids):
            return ""
        return self.rids[op.settles]

    async def one(self, op: Op, rid: str, settle_rid: str) -> tuple[object, ...]:
        """The store's answer, reduced to what the model states (ttl checked separately)."""
        store = self.store
        req_key, tok_key, budget_key = self.keys(op.user)
        if op.kind == "admit":
            request, tokens, budget = self.checks(op, rid)
            a = await store.admit(request, tokens, budget)
            for state in (a.request, a.tokens, a.budget):
                assert state is None or 0 < state.ttl_ms <= WINDOW_MS
            return (
                None if a.request is None else (a.request.applied, a.request.value),
                None
                if a.tokens is None
                else (a.tokens.applied, a.tokens.value, a.tokens.outstanding),
                None if a.budget is None else (a.budget.applied, a.budget.value),
            )
        if op.kind == "settle":
            s = await store.settle(tok_key, WINDOW_MS, op.amount, settle_rid)
            return (s.applied, s.value, s.outstanding)
        if op.kind == "cau":
            c = await store.check_and_update(req_key, op.amount, op.request_max, WINDOW_MS)
        elif op.kind == "check":
            c = await store.check(req_key, op.request_max, WINDOW_MS)
        else:
            c = await store.update(budget_key, op.amount, WINDOW_MS)
        assert 0 < c.ttl_ms <= WINDOW_MS
        return (c.applied, c.value)

    def model(self, model: Model, op: Op, rid: str, settle_rid: str) -> tuple[object, ...]:
        req_key, tok_key, budget_key = self.keys(op.user)
        if op.kind == "admit":
            return model.admit(*self.checks(op, rid))
        if op.kind == "settle":
            return model.settle(tok_key, op.amount, settle_rid)
        if op.kind == "cau":
            return model.check_and_update(req_key, op.amount, op.request_max)
        if op.kind == "check":
            return model.check(req_key, op.request_max)
        return model.update(budget_key, op.amount)

    async def turns(
        self, plan: list[list[Op]], model: Model, concurrent: bool
    ) -> list[list[tuple[object, ...]]]:
        answers = []
        for turn in plan:
            args = []
            for op in turn:
                rid = f"{self.prefix}:r{len(self.rids)}" if op.kind == "admit" else ""
                settle_rid = self.rid_for(op) if op.kind == "settle" else ""
                if op.kind == "admit":
                    self.rids.append(rid)
                args.append((op, rid, settle_rid))
            if concurrent:
                got = list(await asyncio.gather(*(self.one(*a) for a in args)))
            else:
                got = [await self.one(*a) for a in args]
            expected = [self.model(model, *a) for a in args]
            assert got == expected
            answers.append(got)
        return answers


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=turns)
def test_coalesced_decisions_equal_the_model_and_sequential_ones(
    shared_redis: RedisServer, plan: list[list[Op]]
) -> None:
    """Each loop turn's operations leave as ONE script call and get the model's answers."""

    async def body() -> None:
        prefix = uuid.uuid4().hex
        coalesced = Run(RedisStore(shared_redis.url, timeout_seconds=5.0), f"{prefix}:c")
        sequential = Run(
            RedisStore(shared_redis.url, timeout_seconds=5.0, batch=False), f"{prefix}:s"
        )
        try:
            await sequential.store.ping()
            await sequential.store.check("warm-up", 1, 1000)  # the script is loaded once
            before = script_calls(shared_redis.url)
            got = await coalesced.turns(plan, Model(), concurrent=True)
            assert script_calls(shared_redis.url) - before == len(plan)  # one call per turn
            assert await sequential.turns(plan, Model(), concurrent=False) == got
        finally:
            await coalesced.store.close()
            await sequential.store.close()

    asyncio.run(body())


REQUESTS = Limit("maas/requests", "gold-requests", max_value=3, seconds=60)
TOKENS = Limit("maas/tokens", "gold-tokens", max_value=1000, seconds=60)


def counter_key(limit: Limit, user: str) -> str:
    # The key layout, written out here rather than taken from the code under test.
    return f"maas:{len(limit.namespace)}:{limit.namespace}:{limit.name}:{user}"


async def test_a_failing_operation_fails_only_its_own_requests(redis: RedisServer) -> None:
    raw = syncredis.Redis.from_url(redis.url)
    # A request counter holding text (the script's arithmetic fails) and a token counter of
    # the wrong type (Redis refuses GET on a list): both are errors inside the one script call.
    raw.set(counter_key(REQUESTS, "garbled"), "not-a-number", px=60_000)
    raw.rpush(counter_key(TOKENS, "wrongtype"), "x")
    raw.pexpire(counter_key(TOKENS, "wrongtype"), 60_000)
    limiter = RateLimiter(RedisStore(redis.url, timeout_seconds=5.0), on_failure="deny")
    users = ["u0", "garbled", "u1", "wrongtype", "u2"]
    await limiter.store.ping()
    await limiter.check(TOKENS, "warm-up")
    before = script_calls(redis.url)
    results = await asyncio.gather(
        *(limiter.admit(REQUESTS, TOKENS, user) for _ in range(5) for user in users)
    )
    assert script_calls(redis.url) - before == 1  # all 25 admissions in one script call
    for i, result in enumerate(results):
        user, nth = users[i % len(users)], i // len(users)
        if user == "garbled":  # the request policy failed: deny, degraded, nothing else
            assert result.requests is not None and result.requests.degraded
            assert not result.requests.allowed and result.tokens is None
        elif user == "wrongtype" and nth < 3:  # the request counted, then its token check failed
            assert result.requests is not None and result.requests.degraded
            assert not result.requests.allowed and result.tokens is None  # deny: 503
        elif user == "wrongtype":  # over its request limit: rejected before the token check
            assert result.requests is not None and not result.requests.degraded
            assert not result.requests.allowed and result.tokens is None
        else:
            assert result.requests is not None and not result.requests.degraded
            assert result.requests.allowed is (nth < 3)
            assert result.requests.remaining == max(3 - nth - 1, 0)
            if nth < 3:
                assert result.tokens is not None and result.tokens.allowed
    for user in ("u0", "u1", "u2"):
        assert int(raw.get(counter_key(REQUESTS, user)) or 0) == 3
    # What the failing operation wrote before its error stays, as if it had run alone.
    assert int(raw.get(counter_key(REQUESTS, "wrongtype")) or 0) == 3
    assert raw.get(counter_key(REQUESTS, "garbled")) == b"not-a-number"
    # The store raises for exactly the failing operation, with Redis's message.
    store = limiter.store
    assert isinstance(store, RedisStore)
    outcomes = await asyncio.gather(
        store.check(counter_key(TOKENS, "wrongtype"), 10, 60_000),
        store.check(counter_key(TOKENS, "u0"), 10, 60_000),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], StoreUnavailable) and "WRONGTYPE" in str(outcomes[0])
    assert not isinstance(outcomes[1], BaseException) and outcomes[1].value == 0
    await limiter.close()
    raw.close()


async def test_a_batch_after_a_redis_restart_is_retried_once_on_a_fresh_connection(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as server:
        store = RedisStore(server.url, timeout_seconds=5.0, max_connections=4)
        limiter = RateLimiter(store)
        # Several pooled connections, each used before the restart.
        await asyncio.gather(*(limiter.check_and_update(REQUESTS, f"w{i}") for i in range(40)))
        server.stop()
        server.start()  # same port, empty, the script unknown
        users = ["ann", "bob", "cy"]
        results = await asyncio.gather(
            *(limiter.admit(REQUESTS, TOKENS, user) for _ in range(6) for user in users)
        )
        for i, result in enumerate(results):
            nth = i // len(users)
            assert result.requests is not None and not result.requests.degraded, result
            assert result.requests.allowed is (nth < 3)
        assert not limiter.partitioned
        raw = syncredis.Redis.from_url(server.url)
        for user in users:
            assert int(raw.get(counter_key(REQUESTS, user)) or 0) == 3
        assert script_calls(server.url) == 1  # the one batch, run once on the new server
        raw.close()
        await limiter.close()
