"""The limits of each tier, derived from the config: the bridge between config and limiter."""

from __future__ import annotations

from dataclasses import dataclass

from maas_metrics.config import Config, Tier
from maas_metrics.limiter import Limit


@dataclass(frozen=True, slots=True)
class TierPolicies:
    """A tier's request limit (RateLimitPolicy) and token limit (TokenRateLimitPolicy)."""

    tier: Tier
    requests: Limit | None
    tokens: Limit | None


def request_limit_name(tier: str) -> str:
    return f"{tier}-requests"


def token_limit_name(tier: str) -> str:
    return f"{tier}-tokens"


def tier_policies(config: Config) -> dict[str, TierPolicies]:
    """Per tier name, the limits the gateway enforces and telemetry publishes as quota."""
    out: dict[str, TierPolicies] = {}
    for tier in config.tiers:
        requests = tokens = None
        if tier.request_limit is not None:
            requests = Limit(
                namespace=config.namespaces.requests,
                name=request_limit_name(tier.name),
                max_value=tier.request_limit.max,
                seconds=tier.request_limit.window_seconds,
            )
        if tier.token_limit is not None:
            tokens = Limit(
                namespace=config.namespaces.tokens,
                name=token_limit_name(tier.name),
                max_value=tier.token_limit.max,
                seconds=tier.token_limit.window_seconds,
            )
        out[tier.name] = TierPolicies(tier=tier, requests=requests, tokens=tokens)
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
