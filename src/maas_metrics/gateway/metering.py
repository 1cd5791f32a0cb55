"""The two policy checks before proxying and the token report after it, with their metrics.

This mirrors what Limitador does for Kuadrant's RateLimitPolicy and
TokenRateLimitPolicy. A check that admitted a request is counted at once
(`authorized_calls`, and `authorized_hits += 1` for the request policy), so
a request that later fails upstream (502/504/upstream error) stays counted
by those checks, exactly as with Limitador; only the token report, which
needs a successful response with `usage`, is skipped then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity
from maas_metrics.limiter import Decision, Limit, RateLimiter
from maas_metrics.telemetry import GatewayMetrics


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response, as the OpenAI `usage` object states it."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


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
    return Usage(prompt, completion, total)


def reset_seconds(decision: Decision) -> int:
    """Whole seconds until the counter's window ends (at least 1, so clients never spin)."""
    return max(1, math.ceil(decision.reset_seconds))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(decision.limit.max_value),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(reset_seconds(decision)),
    }


def _rate_limited(decision: Decision, unit: str) -> errors.GatewayError:
    limit = decision.limit
    retry = reset_seconds(decision)
    headers = rate_limit_headers(decision)
    headers["Retry-After"] = str(retry)
    return errors.GatewayError(
        429,
        f"Rate limit {limit.name!r} reached: {limit.max_value} {unit} per {limit.seconds} s. "
        f"Retry in {retry} s.",
        type_=unit,
        code="rate_limit_exceeded",
        headers=headers,
    )


class Meter:
    """Applies a caller's limits through the `RateLimiter` and records every decision in metrics."""

    def __init__(self, limiter: RateLimiter, metrics: GatewayMetrics) -> None:
        self.limiter = limiter
        self.metrics = metrics

    async def admit(self, identity: Identity, model: str) -> dict[str, str] | None:
        """Run the request policy then the token policy; raise 429/503 or return rate-limit headers.

        The returned headers describe the request policy (None when it was not
        checked or the store was unreachable). When the store is unreachable
        and the failure mode is `allow`, the request counts as authorized in
        the metrics so nothing is lost for billing, although no counter moved.
        """
        headers: dict[str, str] | None = None
        limit = identity.requests
        if limit is not None:
            decision = await self.limiter.check_and_update(limit, identity.user)
            if decision.allowed:
                self.metrics.authorized(limit.namespace, identity.labels, model, 1)
                if not decision.degraded:
                    headers = rate_limit_headers(decision)
            else:
                raise self._reject(decision, identity, model, "requests")
        limit = identity.tokens
        if limit is not None:
            decision = await self.limiter.check(limit, identity.user)
            if decision.allowed:
                self.metrics.authorized(limit.namespace, identity.labels, model, 0)
            else:
                raise self._reject(decision, identity, model, "tokens")
        return headers

    def _reject(
        self, decision: Decision, identity: Identity, model: str, unit: str
    ) -> errors.GatewayError:
        if decision.degraded:
            # Failure mode `deny`: the store decided nothing, so no metric changes.
            return errors.store_unavailable()
        limit: Limit = decision.limit
        self.metrics.limited(limit.namespace, identity.labels, model, limit.name)
        return _rate_limited(decision, unit)

    async def report(self, identity: Identity, model: str, usage: Usage) -> None:
        """Token policy after a successful response: add `total_tokens` to the counter and metrics.

        Metrics count the tokens even when the store is unreachable, and for a
        tier without a token limit too (as an unlimited token policy would), so
        usage is never lost for billing; the limiter marks itself partitioned.
        """
        limit = identity.tokens
        if limit is not None:
            await self.limiter.report(limit, identity.user, usage.total_tokens)
        self.metrics.reported(
            identity.token_namespace,
            identity.labels,
            model,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
        )
