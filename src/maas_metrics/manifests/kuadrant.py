"""Kuadrant policies generated from the config's tiers.

Field names follow the Kuadrant CRDs: `TelemetryPolicy`
(extensions.kuadrant.io/v1alpha1, `spec.metrics.default.labels`: label -> CEL),
`RateLimitPolicy` (kuadrant.io/v1) and `TokenRateLimitPolicy`
(kuadrant.io/v1alpha1), whose `spec.limits.<name>` hold `rates` (`limit`,
`window`), `when` predicates and `counters` expressions.
"""

from __future__ import annotations

import json
from typing import Any

from maas_metrics.config import Config
from maas_metrics.limiter import Limit
from maas_metrics.policies import tier_policies

Manifest = dict[str, Any]

#: Where the identity fields come from: Kuadrant's AuthPolicy puts the user id and the
#: resolved tier on `auth.identity`; the model is the `model` field of the OpenAI request body.
USER_EXPRESSION = "auth.identity.userid"
TIER_EXPRESSION = "auth.identity.tier"
MODEL_EXPRESSION = 'requestBodyJSON("/model")'

TELEMETRY_LABELS = {"user": USER_EXPRESSION, "tier": TIER_EXPRESSION, "model": MODEL_EXPRESSION}


def window(seconds: int) -> str:
    """A Kuadrant rate window (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`), e.g. 120 -> `2m`, 90 -> `1m30s`."""
    if seconds <= 0:
        raise ValueError(f"window must be positive, got {seconds}s")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours > 99999:
        raise ValueError(f"window of {seconds}s is longer than Kuadrant accepts")
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts)


def cel_string(value: str) -> str:
    """A CEL string literal (CEL accepts JSON's escapes inside double quotes)."""
    return json.dumps(value, ensure_ascii=False)


def tier_predicate(tier: str) -> str:
    return f"{TIER_EXPRESSION} == {cel_string(tier)}"


def _target(gateway_name: str) -> dict[str, str]:
    return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name}


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "maas-metrics"},
    }


def _limit(tier: str, limit: Limit) -> dict[str, Any]:
    return {
        "rates": [{"limit": limit.max_value, "window": window(limit.seconds)}],
        "when": [{"predicate": tier_predicate(tier)}],
        "counters": [{"expression": USER_EXPRESSION}],
    }


def telemetry_policy(gateway_name: str, namespace: str) -> Manifest:
    """Adds `user`, `tier` and `model` labels to Limitador's counters, as the dashboard expects."""
    return {
        "apiVersion": "extensions.kuadrant.io/v1alpha1",
        "kind": "TelemetryPolicy",
        "metadata": _metadata("maas-telemetry", namespace),
        "spec": {
            "targetRef": _target(gateway_name),
            "metrics": {"default": {"labels": dict(TELEMETRY_LABELS)}},
        },
    }


def rate_limit_policy(config: Config, gateway_name: str, namespace: str) -> Manifest:
    """Request limits: one limit per tier, counted per user, applied when the user is in the tier."""
    limits = {
        p.requests.name: _limit(tier, p.requests)
        for tier, p in tier_policies(config).items()
        if p.requests is not None
    }
    return {
        "apiVersion": "kuadrant.io/v1",
        "kind": "RateLimitPolicy",
        "metadata": _metadata("maas-request-limits", namespace),
        "spec": {"targetRef": _target(gateway_name), "limits": limits},
    }


def token_rate_limit_policy(config: Config, gateway_name: str, namespace: str) -> Manifest:
    """Token limits: hits are the response's `usage.total_tokens`, per user, per tier."""
    limits = {
        p.tokens.name: _limit(tier, p.tokens)
        for tier, p in tier_policies(config).items()
        if p.tokens is not None
    }
    return {
        "apiVersion": "kuadrant.io/v1alpha1",
        "kind": "TokenRateLimitPolicy",
        "metadata": _metadata("maas-token-limits", namespace),
        "spec": {"targetRef": _target(gateway_name), "limits": limits},
    }
