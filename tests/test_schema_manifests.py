"""Kuadrant manifests in today's schema: the TelemetryPolicy carries the configured labels.

With `billing_dimension: subscription`, attribution labels and no `user`,
the generated TelemetryPolicy labels Limitador's counters with
`subscription`, `organization_id`, `cost_center` and `model` (never `user`),
the AuthPolicy puts those values on the identity, and every object still
validates against the operators' CRDs. cel-python evaluates the generated
CEL: for any key (groups, own annotations) it gives the attribution the
gateway gives (`Config.attributes`), and the TelemetryPolicy falls back to
the missing value when the identity lacks one, so no descriptor fails.
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy.adapter import json_to_cel
from hypothesis import given
from hypothesis import strategies as st

from maas_metrics import contract
from maas_metrics.config import ApiKey, Config, parse_config
from maas_metrics.manifests import auth, kuadrant
from tests.test_kuadrant_crds import problems
from tests.test_manifests import KUADRANT_CONFIG

GROUPS = ["team.a", "team-b", "partners", "system:authenticated", "x+y"]


def todays(config: dict[str, Any], **schema: Any) -> Config:
    data = {k: v for k, v in config.items() if k != "tiers"}
    data["subscriptions"] = [
        {"name": "community", "level": 0, "groups": ["system:authenticated"], "price_per_hit": 0},
        {"name": "gold", "level": 2, "groups": ["team.a", "x+y"], "price_per_hit": 0.01},
        {"name": "silver", "level": 1, "groups": ["team-b", "partners"], "price_per_hit": 0.005},
    ]
    data["schema"] = {
        "billing_dimension": "subscription",
        "attribution": ["organization_id", "cost_center", "group"],
        "capture_user": False,
        "calls_carry_model": False,
        "groups": {
            "team.a": {"organization_id": "acme", "cost_center": "cc-100"},
            "team-b": {"organization_id": "acme", "cost_center": "cc-200"},
            "partners": {"organization_id": "globex"},
            "system:authenticated": {"organization_id": "community"},
        },
        **schema,
    }
    return parse_config(data)


CONFIG = todays(KUADRANT_CONFIG)
ENVIRONMENT = celpy.Environment()


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    program = ENVIRONMENT.program(ENVIRONMENT.compile(expression))
    return program.evaluate({"auth": json_to_cel(activation)})


def test_telemetry_policy_carries_the_schema_labels() -> None:
    policy = kuadrant.telemetry_policy("ai-gw", "gw-system", CONFIG)
    labels = policy["spec"]["metrics"]["default"]["labels"]
    assert set(labels) == {"subscription", "organization_id", "cost_center", "group", "model"}
    assert labels["subscription"] == "auth.identity.subscription"
    assert problems(policy) == []
    seed = parse_config(KUADRANT_CONFIG)
    seed_labels = kuadrant.telemetry_policy("ai-gw", "gw-system", seed)["spec"]["metrics"]
    assert set(seed_labels["default"]["labels"]) == {"user", "tier", "model"}


def test_policies_match_the_subscription_on_the_identity() -> None:
    for policy in [
        auth.auth_policy(CONFIG, "ai-gw", "gw-system"),
        *kuadrant.token_rate_limit_policies(CONFIG),
        *kuadrant.rate_limit_policies(CONFIG),
    ]:
        assert problems(policy) == [], policy["kind"]
    limits = kuadrant.token_rate_limit_policies(CONFIG)
    predicates = [
        w["predicate"]
        for p in limits
        for limit in p["spec"]["limits"].values()
        for w in limit["when"]
    ]
    assert all(p.startswith("auth.identity.subscription == ") for p in predicates)


def test_a_missing_identity_value_becomes_the_missing_value() -> None:
    labels = kuadrant.telemetry_labels(CONFIG)
    identity = {"identity": {"subscription": "gold"}}
    assert evaluate(labels["cost_center"], identity) == contract.MISSING_VALUE
    assert evaluate(labels["cost_center"], {"identity": {"cost_center": "cc-9"}}) == "cc-9"


PROPERTIES = auth.identity_properties(CONFIG)


@given(
    groups=st.lists(st.sampled_from([*GROUPS, "teamXa", "team"]), max_size=4, unique=True),
    own=st.dictionaries(
        st.sampled_from(["organization_id", "cost_center"]),
        st.sampled_from(["own-1", "own-2"]),
        max_size=2,
    ),
)
def test_authpolicy_attribution_agrees_with_the_gateway(
    groups: list[str], own: dict[str, str]
) -> None:
    annotations = {"maas-metrics/groups": ",".join(groups)}
    annotations |= {auth.attribute_annotation(k): v for k, v in own.items()}
    activation = {"identity": {"metadata": {"annotations": annotations}}}
    key = ApiKey.model_validate(
        {"user": "u", "groups": groups or ["none"], "sha256": "0" * 64, "attributes": own}
    )
    tier = CONFIG.tier_for_groups(groups)
    matched = CONFIG.matched_group(groups, tier) if tier is not None else None
    expected = CONFIG.attributes(key, matched)
    for label in ("organization_id", "cost_center", "group"):
        assert evaluate(PROPERTIES[label]["expression"], activation) == expected[label], label
