"""The limits of each tier, derived from the config: the bridge between config and limiter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from maas_metrics.config import Config, Tier
from maas_metrics.limiter import Limit

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text; also the mock model's tokenizer


@dataclass(frozen=True, slots=True)
class ReservationRule:
    """How much a tier's token policy reserves per request (reservation mode only)."""

    cap: int  # max_reservation_fraction of the limit, at least 1
    ttl_seconds: float

    def amount(self, payload: dict[str, Any]) -> int:
        """`max_completion_tokens` (or `max_tokens`) + the prompt estimate, at most `cap`.

        Without a completion bound the request may use anything, so the whole cap is held.
        """
        bound = _positive_int(payload.get("max_completion_tokens"))
        if bound is None:
            bound = _positive_int(payload.get("max_tokens"))
        if bound is None:
            return self.cap
        return max(1, min(self.cap, bound + estimate_prompt_tokens(payload)))


@dataclass(frozen=True, slots=True)
class TierPolicies:
    """A tier's request limit (RateLimitPolicy) and token limit (TokenRateLimitPolicy)."""

    tier: Tier
    requests: Limit | None
    tokens: Limit | None
    reservation: ReservationRule | None = None  # None: optimistic token policy


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _text_chars(value: Any) -> int:
    """Characters of text in a prompt, a content, or a list of content parts."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(part) for part in value)
    if isinstance(value, dict):
        return _text_chars(value.get("text")) + _text_chars(value.get("content"))
    return 0


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    """ceil(characters of prompt text / 4): chat `messages` contents or completions `prompt`."""
    chars = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")  # nearly always a plain string
                chars += len(content) if isinstance(content, str) else _text_chars(content)
    prompt = payload.get("prompt")
    if prompt is not None:
        chars += _text_chars(prompt)
    return -(-chars // CHARS_PER_TOKEN)


def request_limit_name(tier: str) -> str:
    return f"{tier}-requests"


def token_limit_name(tier: str) -> str:
    return f"{tier}-tokens"


def tier_policies(config: Config) -> dict[str, TierPolicies]:
    """Per tier name, the limits the gateway enforces and telemetry publishes as quota."""
    out: dict[str, TierPolicies] = {}
    for tier in config.tiers:
        requests = tokens = None
        reservation = None
        if tier.request_limit is not None:
            requests = Limit(
                namespace=config.namespaces.requests,
                name=request_limit_name(tier.name),
                max_value=tier.request_limit.max,
                seconds=tier.request_limit.window_seconds,
            )
        spec = tier.token_limit
        if spec is not None:
            tokens = Limit(
                namespace=config.namespaces.tokens,
                name=token_limit_name(tier.name),
                max_value=spec.max,
                seconds=spec.window_seconds,
            )
            if spec.mode == "reservation":
                reservation = ReservationRule(
                    cap=max(1, math.floor(spec.max * spec.max_reservation_fraction)),
                    ttl_seconds=spec.reservation_ttl_seconds,
                )
        out[tier.name] = TierPolicies(
            tier=tier, requests=requests, tokens=tokens, reservation=reservation
        )
    return out


def request_namespaces(config: Config) -> tuple[str, ...]:
    """The `limitador_namespace` values that hold request-policy hits, for the config's source.

    Gateway: the configured request namespace. Kuadrant: one per request
    route (`<namespace>/<name>`), none when only the token policy is used.
    """
    if config.source == "kuadrant":
        return tuple(config.kuadrant.request_routes)
    return (config.namespaces.requests,)


def token_namespaces(config: Config) -> tuple[str, ...]:
    """The `limitador_namespace` values that hold token-policy hits, for the config's source."""
    if config.source == "kuadrant":
        return tuple(config.kuadrant.token_routes)
    return (config.namespaces.tokens,)
