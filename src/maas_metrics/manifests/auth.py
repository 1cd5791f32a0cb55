"""The AuthPolicy that puts the user and the tier on Kuadrant's identity.

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
                            "identity": {
                                "json": {
                                    "properties": {
                                        "userid": {
                                            "selector": "auth.identity.metadata.annotations."
                                            + USER_ANNOTATION
                                        },
                                        "tier": {"expression": tier_expression(config)},
                                    }
                                }
                            }
                        }
                    }
                },
            },
        },
    }
