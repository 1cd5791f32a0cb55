"""The two policy checks before proxying and the token report after it, with their metrics.

This mirrors what Limitador does for Kuadrant's RateLimitPolicy and
TokenRateLimitPolicy. A check that admitted a request is counted at once
(`authorized_calls`, and `authorized_hits += 1` for the request policy), so
a request that later fails upstream (502/504/upstream error) stays counted
by those checks, exactly as with Limitador; only the token report, which
needs a successful response with `usage`, is skipped then (and a token
reservation is released). Both checks are one store round trip, the report
(or reservation commit) another.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity
from maas_metrics.limiter import BudgetCheck, Decision, Limit, RateLimiter, Reservation
from maas_metrics.policies import ReservationRule, TierPolicies
from maas_metrics.telemetry import GatewayMetrics


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response, as the OpenAI `usage` object states it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0  # prompt_tokens_details.cached_tokens, when the upstream gives it


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_usage(usage: Any) -> Usage | None:
    """`Usage` from an OpenAI `usage` object, or None when it holds no usable counts.

    `total_tokens` is what the token policy counts; when absent it is prompt + completion.
    """
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens", 0))
    completion = _count(usage.get("completion_tokens", 0))
    if prompt is None or completion is None:
        return None
    total = _count(usage["total_tokens"]) if "total_tokens" in usage else prompt + completion
    if total is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens", 0)) if isinstance(details, dict) else 0
    return Usage(prompt, completion, total, cached or 0)


def reset_seconds(decision: Decision) -> int:
    """Whole seconds until the counter's window ends (at least 1, so clients never spin)."""
    return max(1, math.ceil(decision.reset_seconds))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(decision.limit.max_value),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(reset_seconds(decision)),
    }


@functools.lru_cache(maxsize=1024)
def _policy(limit: Limit, unit: str) -> str:
    # Limit names match the config's NAME_PATTERN, so they need no escaping in an SF String.
    return f'"{limit.name}";q={limit.max_value};w={limit.seconds};qu="{unit}"'


def _policy_item(decision: Decision, unit: str) -> str:
    return _policy(decision.limit, unit)


def _state_item(decision: Decision) -> str:
    return f'"{decision.limit.name}";r={decision.remaining};t={reset_seconds(decision)}'


def quota_headers(requests: Decision | None, tokens: Decision | None) -> dict[str, str]:
    """Where the caller stands on each binding limit, as headers on an answer.

    `X-RateLimit-*` for the request policy, `X-RateLimit-*-Tokens` for the
    token policy (OpenAI's spelling), and both in the IETF `RateLimit-Policy`
    / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers, structured
    field lists). A policy the store could not answer for is left out.
    """
    headers: dict[str, str] = {}
    policies: list[str] = []
    states: list[str] = []
    if requests is not None and not requests.degraded:
        headers.update(rate_limit_headers(requests))
        policies.append(_policy_item(requests, "requests"))
        states.append(_state_item(requests))
    if tokens is not None and not tokens.degraded:
        headers["X-RateLimit-Limit-Tokens"] = str(tokens.limit.max_value)
        headers["X-RateLimit-Remaining-Tokens"] = str(tokens.remaining)
        headers["X-RateLimit-Reset-Tokens"] = str(reset_seconds(tokens))
        policies.append(_policy_item(tokens, "tokens"))
        states.append(_state_item(tokens))
    if policies:
        headers["RateLimit-Policy"] = ", ".join(policies)
        headers["RateLimit"] = ", ".join(states)
    return headers


def _rate_limited(decision: Decision, unit: str) -> errors.GatewayError:
    limit = decision.limit
    retry = reset_seconds(decision)
    headers = rate_limit_headers(decision)
    headers["Retry-After"] = str(retry)
    headers["RateLimit-Policy"] = _policy_item(decision, unit)
    headers["RateLimit"] = _state_item(decision)
    return errors.GatewayError(
        429,
        f"Rate limit {limit.name!r} reached: {limit.max_value} {unit} per {limit.seconds} s. "
        f"Retry in {retry} s.",
        type_=unit,
        code="rate_limit_exceeded",
        headers=headers,
    )


@dataclass(slots=True)
class Admission:
    """One admitted request: its policies' decisions and the token reservation it holds.

    Returned by `Meter.admit`, handed back to `Meter.report` (commit) or
    `Meter.release` (the request failed); both are idempotent per admission.
    After `report`, `tokens` is the token counter as the report left it.
    """

    identity: Identity
    model: str
    requests: Decision | None
    tokens: Decision | None
    reservation: Reservation | None = None
    settled: bool = False
    budget_headers: dict[str, str] = field(default_factory=dict)  # a soft budget's warning
    budget: tuple[bool, int] | None = None  # the budget check: (below its max, the month's use)

    @property
    def holding(self) -> bool:
        """True while a token reservation awaits its commit or release."""
        return self.reservation is not None and not self.settled

    def headers(self) -> dict[str, str]:
        headers = quota_headers(self.requests, self.tokens)
        if self.budget_headers:
            headers.update(self.budget_headers)
        return headers


class Meter:
    """Applies a caller's limits through the `RateLimiter` and records every decision in metrics."""

    def __init__(
        self,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        policies: dict[str, TierPolicies] | None = None,
    ) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self._rules: dict[str, ReservationRule] = {
            tier: p.reservation for tier, p in (policies or {}).items() if p.reservation
        }
        # tier -> [reservations, tokens held]; every reservation tier is published from the start
        self._outstanding: dict[str, list[int]] = {tier: [0, 0] for tier in self._rules}

    async def admit(
        self,
        identity: Identity,
        model: str,
        payload: dict[str, Any] | None = None,
        budget: BudgetCheck | None = None,
    ) -> Admission:
        """Both policy checks in one store round trip; raise 429/503 or return the `Admission`.

        In reservation mode (the tier's rule) the token policy holds
        `ReservationRule.amount(payload)` tokens. When the store is unreachable
        and the failure mode is `allow`, the request counts as authorized in
        the metrics so nothing is lost for billing, although no counter moved.
        """
        rule = self._rules.get(identity.tier)
        reserve = 0
        if rule is not None and identity.tokens is not None:
            reserve = rule.amount(payload or {})
        result = await self.limiter.admit(
            identity.requests,
            identity.tokens,
            identity.user,
            reserve,
            rule.ttl_seconds if rule is not None else 0.0,
            budget,
        )
        stopped = budget is not None and budget.hard and result.budget is not None
        if stopped and result.budget is not None and not result.budget[0]:
            # A hard budget at or over its max stopped it before the policies: nothing counted.
            return Admission(identity, model, None, None, budget=result.budget)
        decision = result.requests
        if decision is not None:
            if not decision.allowed:
                raise self._reject(decision, identity, model, "requests")
            self.metrics.authorized(decision.limit.namespace, identity.labels, model, 1)
        decision = result.tokens
        if decision is not None:
            if not decision.allowed:
                raise self._reject(decision, identity, model, "tokens")
            self.metrics.authorized(decision.limit.namespace, identity.labels, model, 0)
        reservation = result.reservation
        if reservation is not None:
            held = self._outstanding.setdefault(identity.tier, [0, 0])
            held[0] += 1
            held[1] += reservation.amount
        return Admission(
            identity, model, result.requests, result.tokens, reservation, budget=result.budget
        )

    def _reject(
        self, decision: Decision, identity: Identity, model: str, unit: str
    ) -> errors.GatewayError:
        if decision.degraded:
            # Failure mode `deny`: the store decided nothing, so no metric changes.
            return errors.store_unavailable()
        limit: Limit = decision.limit
        self.metrics.limited(limit.namespace, identity.labels, model, limit.name)
        return _rate_limited(decision, unit)

    def _take(self, admission: Admission | None) -> Reservation | None:
        """The admission's reservation, once: marks it settled and drops it from the gauge."""
        if admission is None or admission.settled:
            return None
        admission.settled = True
        reservation = admission.reservation
        if reservation is not None:
            held = self._outstanding[admission.identity.tier]
            held[0] -= 1
            held[1] -= reservation.amount
        return reservation

    async def report(
        self, identity: Identity, model: str, usage: Usage, admission: Admission | None = None
    ) -> None:
        """Token policy after a successful response: add `total_tokens` to the counter and metrics.

        With the request's `admission`, its reservation is committed in the
        same round trip (the real usage replaces the hold). Metrics count the
        tokens even when the store is unreachable, and for a tier without a
        token limit too (as an unlimited token policy would), so usage is
        never lost for billing; the limiter marks itself partitioned.
        """
        limit = identity.tokens
        reservation = self._take(admission)
        if limit is not None and (usage.total_tokens > 0 or reservation is not None):
            after = await self.limiter.settle(limit, identity.user, usage.total_tokens, reservation)
            if admission is not None and after is not None:
                admission.tokens = after
        self.metrics.reported(
            identity.token_namespace,
            identity.labels,
            model,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
        )

    async def release(self, admission: Admission) -> None:
        """The request ends without a usable answer: give its reservation back (charges nothing)."""
        reservation = self._take(admission)
        if reservation is not None:
            await self.limiter.settle(reservation.limit, reservation.user, 0, reservation)

    def reservations_outstanding(self) -> dict[str, tuple[int, int]]:
        """Per tier: (reservations, tokens) this process holds for requests still in flight."""
        return {tier: (held[0], held[1]) for tier, held in self._outstanding.items()}
