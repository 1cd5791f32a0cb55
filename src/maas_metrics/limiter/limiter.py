"""The rate limiter: Limitador's two policy operations over any counter store."""

from __future__ import annotations

import logging
from typing import Literal

from maas_metrics.limiter.limits import Decision, Limit
from maas_metrics.limiter.store import CounterState, CounterStore, StoreUnavailable

log = logging.getLogger(__name__)

FailureMode = Literal["deny", "allow"]


class RateLimiter:
    """Applies limits to counters and decides what happens when the store is unreachable.

    `partitioned` mirrors Limitador's `datastore_partitioned` gauge: True from
    the first failed store call until the next successful one.
    """

    def __init__(self, store: CounterStore, on_failure: FailureMode = "deny") -> None:
        self.store = store
        self.on_failure = on_failure
        self.partitioned = False

    def _decide(self, limit: Limit, state: CounterState) -> Decision:
        self.partitioned = False
        return Decision(
            allowed=state.applied,
            limit=limit,
            remaining=max(limit.max_value - state.value, 0),
            reset_seconds=max(state.ttl_ms, 0) / 1000,
        )

    def _degraded(self, limit: Limit, error: StoreUnavailable) -> Decision:
        if not self.partitioned:
            log.warning("counter store unreachable (%s); failure mode: %s", error, self.on_failure)
        self.partitioned = True
        return Decision(
            allowed=self.on_failure == "allow",
            limit=limit,
            remaining=0,
            reset_seconds=1.0,
            degraded=True,
        )

    async def check_and_update(self, limit: Limit, user: str, delta: int = 1) -> Decision:
        """Request policy: admit and count `delta` hits unless that would pass the max."""
        try:
            state = await self.store.check_and_update(
                limit.counter_key(user), delta, limit.max_value, limit.seconds * 1000
            )
        except StoreUnavailable as error:
            return self._degraded(limit, error)
        return self._decide(limit, state)

    async def check(self, limit: Limit, user: str) -> Decision:
        """Token policy, before the request: reject when the counter is already at or over the max."""
        try:
            state = await self.store.check(
                limit.counter_key(user), limit.max_value, limit.seconds * 1000
            )
        except StoreUnavailable as error:
            return self._degraded(limit, error)
        return self._decide(limit, state)

    async def report(self, limit: Limit, user: str, delta: int) -> bool:
        """Token policy, after the response: add the tokens used. False if the store was unreachable."""
        if delta <= 0:
            return True
        try:
            await self.store.update(limit.counter_key(user), delta, limit.seconds * 1000)
        except StoreUnavailable as error:
            self._degraded(limit, error)
            return False
        self.partitioned = False
        return True

    async def probe(self) -> bool:
        """Ping the store so `partitioned` recovers even when no traffic flows."""
        try:
            await self.store.ping()
        except StoreUnavailable:
            self.partitioned = True
            return False
        self.partitioned = False
        return True

    async def close(self) -> None:
        await self.store.close()
