"""The rate limiter: Limitador's policy operations over any counter store."""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Literal

from maas_metrics.limiter.limits import Admitted, Decision, Limit, Reservation
from maas_metrics.limiter.store import (
    BudgetCheck,
    CounterState,
    CounterStore,
    RequestCheck,
    StoreUnavailable,
    TokenCheck,
    TokenState,
)

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
        # Reservation ids: random per process (replicas never collide), then a counter.
        self._id_prefix = uuid.uuid4().hex + ":"
        self._ids = itertools.count()

    def _decide(self, limit: Limit, state: CounterState) -> Decision:
        self.partitioned = False
        return Decision(
            allowed=state.applied,
            limit=limit,
            remaining=max(limit.max_value - state.value, 0),
            reset_seconds=max(state.ttl_ms, 0) / 1000,
        )

    @staticmethod
    def _token_decision(limit: Limit, state: TokenState) -> Decision:
        return Decision(
            allowed=state.applied,
            limit=limit,
            remaining=max(limit.max_value - state.value - state.outstanding, 0),
            reset_seconds=max(state.ttl_ms, 0) / 1000,
            outstanding=state.outstanding,
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

    async def admit(
        self,
        requests: Limit | None,
        tokens: Limit | None,
        user: str,
        reserve: int = 0,
        reservation_ttl_seconds: float = 60.0,
        budget: BudgetCheck | None = None,
    ) -> Admitted:
        """Both policy checks of one request in one store round trip.

        `reserve > 0` puts the token policy in reservation mode: hold `reserve`
        tokens iff used + outstanding + reserve <= max, for at most
        `reservation_ttl_seconds` (and never past the window end). `budget` is
        checked first in the same round trip (see `BudgetCheck`).
        """
        request_check = None
        if requests is not None:
            request_check = RequestCheck(
                requests.counter_key(user), requests.max_value, requests.seconds * 1000
            )
        token_check = None
        reservation_id = ""
        if reserve > 0 and tokens is not None:
            reservation_id = f"{self._id_prefix}{next(self._ids)}"
        if tokens is not None:
            token_check = TokenCheck(
                tokens.counter_key(user),
                tokens.max_value,
                tokens.seconds * 1000,
                max(reserve, 0),
                reservation_id,
                int(reservation_ttl_seconds * 1000),
            )
        try:
            if budget is None:
                state = await self.store.admit(request_check, token_check)
            else:
                state = await self.store.admit(request_check, token_check, budget)
        except StoreUnavailable as error:
            request_decision = None if requests is None else self._degraded(requests, error)
            if request_decision is not None and not request_decision.allowed:
                return Admitted(request_decision, None)
            return Admitted(
                request_decision, None if tokens is None else self._degraded(tokens, error)
            )
        self.partitioned = False
        request_decision = None
        if requests is not None and state.request is not None:
            request_decision = self._decide(requests, state.request)
        token_decision = None
        reservation = None
        if tokens is not None and state.tokens is not None:
            token_decision = self._token_decision(tokens, state.tokens)
            if reservation_id and token_decision.allowed:
                reservation = Reservation(reservation_id, tokens, user, reserve)
        spent = None if state.budget is None else (state.budget.applied, state.budget.value)
        return Admitted(request_decision, token_decision, reservation, spent)

    async def settle(
        self, limit: Limit, user: str, delta: int, reservation: Reservation | None = None
    ) -> Decision | None:
        """Token report (optimistic) or a reservation's commit (`delta` > 0) / release (`delta` 0).

        One round trip; returns the counter afterwards, or None if the store was unreachable.
        """
        try:
            state = await self.store.settle(
                limit.counter_key(user),
                limit.seconds * 1000,
                max(delta, 0),
                reservation.id if reservation is not None else "",
            )
        except StoreUnavailable as error:
            self._degraded(limit, error)
            return None
        self.partitioned = False
        return self._token_decision(limit, state)

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
