"""Kuadrant policies generated from the config's tiers, for `source: kuadrant`.

Field names follow the Kuadrant CRDs: `TelemetryPolicy`
(extensions.kuadrant.io/v1alpha1, `spec.metrics.default.labels`: label -> CEL,
targets a Gateway), `RateLimitPolicy` (kuadrant.io/v1) and
`TokenRateLimitPolicy` (kuadrant.io/v1alpha1), whose `spec.limits.<name>`
hold `rates` (`limit`, `window`), `when` predicates and `counters`.

Kuadrant gives every policy of an HTTPRoute the `limitador_namespace`
`<route namespace>/<route name>`, and Limitador adds request hits and token
hits to the same `authorized_hits` series of that namespace. So each policy
targets its own routes (config `kuadrant.token_routes` /
`kuadrant.request_routes`, which the config keeps disjoint), never the
Gateway: tokens are never mixed with request counts.
"""

from __future__ import annotations

import json
from typing import Any

from maas_metrics.config import Config
from maas_metrics.durations import kuadrant_window
from maas_metrics.limiter import Limit
from maas_metrics.manifests.auth import USER_EXPRESSION, identity_expression
from maas_metrics.policies import tier_policies

Manifest = dict[str, Any]

#: `model` from the response body: Kuadrant evaluates body expressions in the response phase
#: only (`requestBodyJSON` is unsupported), so the label exists on the token policy's report,
#: i.e. on token `authorized_hits`, never on `authorized_calls`, `limited_calls` or request hits.
MODEL_EXPRESSION = 'responseBodyJSON("/model")'


def telemetry_labels(config: Config) -> dict[str, str]:
    """Label -> CEL of the TelemetryPolicy, from the config's schema (the seed's: user, tier, model).

    Attribution labels read the identity the AuthPolicy fills, with `has()`
    and the missing value besides: a missing value must never make Limitador
    drop the whole descriptor (and with it every count).
    """
    schema = config.contract
    labels = {"user": USER_EXPRESSION} if schema.user else {}
    labels[schema.dimension] = identity_expression(schema.dimension)
    for label in schema.attribution:
        path = identity_expression(label)
        labels[label] = f"has({path}) ? {path} : {cel_string(schema.missing_value)}"
    labels["model"] = MODEL_EXPRESSION
    return labels


GATEWAY_API_GROUP = "gateway.networking.k8s.io"


def cel_string(value: str) -> str:
    """A CEL string literal (CEL accepts JSON's escapes inside double quotes)."""
    return json.dumps(value, ensure_ascii=False)


def tier_predicate(tier: str, dimension: str = "tier") -> str:
    return f"{identity_expression(dimension)} == {cel_string(tier)}"


def gateway_target(gateway_name: str) -> dict[str, str]:
    return {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": gateway_name}


def split_route(route: str) -> tuple[str, str]:
    """`<namespace>/<name>` -> (namespace, name); the config has validated the shape."""
    namespace, name = route.split("/", 1)
    return namespace, name


def metadata(name: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "maas-metrics"},
    }


def _limit(tier: str, limit: Limit, dimension: str) -> dict[str, Any]:
    return {
        "rates": [{"limit": limit.max_value, "window": kuadrant_window(limit.seconds)}],
        "when": [{"predicate": tier_predicate(tier, dimension)}],
        "counters": [{"expression": USER_EXPRESSION}],
    }


def telemetry_policy(gateway_name: str, namespace: str, config: Config) -> Manifest:
    """Adds the schema's labels (`user`, `tier`, `model` in the seed's) to Limitador's counters."""
    return {
        "apiVersion": "extensions.kuadrant.io/v1alpha1",
        "kind": "TelemetryPolicy",
        "metadata": metadata("maas-telemetry", namespace),
        "spec": {
            "targetRef": gateway_target(gateway_name),
            "metrics": {"default": {"labels": telemetry_labels(config)}},
        },
    }


def _route_policy(
    api_version: str, kind: str, prefix: str, route: str, limits: dict[str, Any]
) -> Manifest:
    namespace, name = split_route(route)
    return {
        "apiVersion": api_version,
        "kind": kind,
        # A policy lives next to the route it targets (Gateway API policy attachment).
        "metadata": metadata(f"{prefix}-{name}"[:253], namespace),
        "spec": {
            "targetRef": {"group": GATEWAY_API_GROUP, "kind": "HTTPRoute", "name": name},
            "limits": limits,
        },
    }


def rate_limit_policies(config: Config) -> list[Manifest]:
    """Request limits, one RateLimitPolicy per request route: per tier, counted per user."""
    limits = {
        p.requests.name: _limit(tier, p.requests, config.contract.dimension)
        for tier, p in tier_policies(config).items()
        if p.requests is not None
    }
    if not limits:
        return []
    return [
        _route_policy("kuadrant.io/v1", "RateLimitPolicy", "maas-request-limits", route, limits)
        for route in config.kuadrant.request_routes
    ]


def token_rate_limit_policies(config: Config) -> list[Manifest]:
    """Token limits, one TokenRateLimitPolicy per token route: hits are `usage.total_tokens`."""
    limits = {
        p.tokens.name: _limit(tier, p.tokens, config.contract.dimension)
        for tier, p in tier_policies(config).items()
        if p.tokens is not None
    }
    if not limits:
        return []
    return [
        _route_policy(
            "kuadrant.io/v1alpha1", "TokenRateLimitPolicy", "maas-token-limits", route, limits
        )
        for route in config.kuadrant.token_routes
    ]


def unenforced_request_limits(config: Config) -> list[str]:
    """Tiers whose request limit no RateLimitPolicy carries (token policy only, no request route)."""
    if config.kuadrant.request_routes:
        return []
    return [t.name for t in config.tiers if t.request_limit is not None]


#: The release TokenRateLimitPolicy CRD (kuadrant.io/v1alpha1, in /work/shared/reference/crds and
#: tests/test_kuadrant_crds.py) has no reservation setting in `spec.limits` or anywhere else, so
#: reservation mode generates nothing: a field the CRD does not know would be refused.
TRLP_HAS_RESERVATION = False


def without_kuadrant_equivalent(config: Config) -> list[str]:
    """What the config asks for that Kuadrant's policies cannot express, one line each (stderr)."""
    notes: list[str] = []
    reserving = [
        t.name
        for t in config.tiers
        if t.token_limit is not None and t.token_limit.mode == "reservation"
    ]
    if reserving and not TRLP_HAS_RESERVATION:
        notes.append(
            f"token reservation mode of {', '.join(reserving)} is not in the TokenRateLimitPolicy: "
            "this Kuadrant release has no Reservation setting, so Limitador enforces those token "
            "limits optimistically (check, then count); only the maas-metrics gateway reserves"
        )
    budgets = [t.name for t in config.tiers if t.budget is not None]
    budgets += [f"user {k.user}" for k in config.api_keys if k.budget is not None]
    if budgets:
        notes.append(
            f"monthly budgets ({', '.join(dict.fromkeys(budgets))}) have no Kuadrant equivalent: "
            "only the maas-metrics gateway enforces them"
        )
    notes.append(
        "GET /v1/usage and the My usage page have no Kuadrant equivalent: they need the "
        "maas-metrics gateway"
    )
    return notes
