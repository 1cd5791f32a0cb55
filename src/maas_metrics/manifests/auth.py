"""The AuthPolicy that puts the user and the tier on Kuadrant's identity.

With another schema (`contract.Schema`) the tier is put under the billing
dimension's name (`auth.identity.subscription`), and each captured
attribution label too (`auth.identity.cost_center`: the Secret's
`maas-metrics/cost_center` annotation, else the config's per-group value,
else `schema.missing_value`, so no key ever lacks one).

The RateLimitPolicy, TokenRateLimitPolicy and TelemetryPolicy read
`auth.identity.userid` and `auth.identity.tier`; Kuadrant drops `auth.`-based
predicates when no AuthPolicy applies, so without this object every `tier ==`
predicate is ignored and the `tier` label stays empty.

API keys are Kubernetes Secrets that Authorino reads (label
`authorino.kuadrant.io/managed-by: authorino` plus `KEY_SECRET_LABEL`, key
`api_key`), annotated with the user (`maas-metrics/user`) and the user's
groups, comma-separated (`maas-metrics/groups`). The tier is computed from
the groups by a CEL expression generated from the config, with the same rule
as the gateway: the highest-level tier whose groups intersect the user's.

The reference folder has no AuthPolicy CRD; the fields follow Kuadrant's
documented kuadrant.io/v1 AuthPolicy (`spec.rules.authentication.<name>.apiKey`,
`spec.rules.response.success.filters.<name>.json.properties`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from maas_metrics.config import Config

USER_EXPRESSION = "auth.identity.userid"
TIER_EXPRESSION = "auth.identity.tier"


def identity_expression(label: str) -> str:
    """Where the AuthPolicy puts a label on the identity (`auth.identity.tier`, `...cost_center`)."""
    return f"auth.identity.{label}"


def attribute_annotation(label: str) -> str:
    """The key Secret's annotation with the key's own value of an attribution label."""
    return f"maas-metrics/{label}"


USER_ANNOTATION = "maas-metrics/user"
GROUPS_ANNOTATION = "maas-metrics/groups"
KEY_SECRET_LABEL = {"app.kubernetes.io/component": "maas-api-key"}

_GROUPS = f"auth.identity.metadata.annotations[{json.dumps(GROUPS_ANNOTATION)}]"


def _any_group_regex(groups: list[str]) -> str:
    """RE2 that matches a comma-separated group list containing one of `groups`."""
    return "(^|,)(" + "|".join(re.escape(g) for g in groups) + ")(,|$)"


def tier_expression(config: Config) -> str:
    """CEL: the tier of the key's groups annotation, the highest level first; "" when none."""
    expression = '""'
    for tier in config.tiers_by_level():  # lowest first, so the highest ends up outermost
        regex = json.dumps(_any_group_regex(tier.groups), ensure_ascii=False)
        expression = f"{_GROUPS}.matches({regex}) ? {json.dumps(tier.name)} : ({expression})"
    return expression


def group_expression(config: Config) -> str:
    """CEL: the group that chose the key's tier (the first of the tier's groups it is in)."""
    expression = '""'
    for tier in config.tiers_by_level():
        inner = expression
        for group in reversed(tier.groups):
            regex = json.dumps(_any_group_regex([group]), ensure_ascii=False)
            inner = f"{_GROUPS}.matches({regex}) ? {json.dumps(group)} : ({inner})"
        expression = inner
    return expression


def attribute_expression(config: Config, label: str) -> str:
    """CEL: an attribution label as the gateway computes it (`Config.attributes`).

    The key's annotation, else the first `schema.groups` entry it is in that
    sets the label, else (for `group`) the group that chose its tier, else
    `schema.missing_value`: always a value, so a key without one still counts.
    """
    schema = config.metrics_schema
    missing = json.dumps(schema.missing_value, ensure_ascii=False)
    fallback = missing
    if label == "group":
        matched = group_expression(config)
        fallback = f'({matched}) != "" ? ({matched}) : {missing}'
    expression = fallback
    for group, attributes in reversed(list(schema.groups.items())):
        if label in attributes:
            regex = json.dumps(_any_group_regex([group]), ensure_ascii=False)
            value = json.dumps(attributes[label], ensure_ascii=False)
            expression = f"{_GROUPS}.matches({regex}) ? {value} : ({expression})"
    annotations = "auth.identity.metadata.annotations"
    own = json.dumps(attribute_annotation(label))
    return f"{own} in {annotations} ? {annotations}[{own}] : ({expression})"


def identity_properties(config: Config) -> dict[str, Any]:
    """What the AuthPolicy puts on the identity: user id, the billing dimension, attribution."""
    schema = config.contract
    return {
        "userid": {"selector": "auth.identity.metadata.annotations." + USER_ANNOTATION},
        schema.dimension: {"expression": tier_expression(config)},
        **{
            label: {"expression": attribute_expression(config, label)}
            for label in schema.attribution
        },
    }


def auth_policy(config: Config, gateway_name: str, namespace: str) -> dict[str, Any]:
    """API-key authentication on the Gateway, with `userid` and `tier` on the identity."""
    return {
        "apiVersion": "kuadrant.io/v1",
        "kind": "AuthPolicy",
        "metadata": {
            "name": "maas-auth",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "maas-metrics"},
        },
        "spec": {
            "targetRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": gateway_name,
            },
            "rules": {
                "authentication": {
                    "api-keys": {
                        "apiKey": {
                            "selector": {"matchLabels": {**KEY_SECRET_LABEL}},
                            "allNamespaces": True,
                        },
                        "credentials": {"authorizationHeader": {"prefix": "Bearer"}},
                    }
                },
                "response": {
                    "success": {
                        "filters": {
                            "identity": {"json": {"properties": identity_properties(config)}}
                        }
                    }
                },
            },
        },
    }
