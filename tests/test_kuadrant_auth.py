"""The AuthPolicy's tier: the CEL expression picks the same tier as the gateway for any groups.

Kuadrant's policies match `auth.identity.tier == "<tier>"`; the AuthPolicy
computes that value in CEL from the key Secret's groups annotation. cel-python
evaluates the generated expression; the expected tier is the config's rule
(the highest-level tier whose groups intersect the user's), which the
gateway applies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy.adapter import json_to_cel
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config, parse_config
from tests.test_manifests import KUADRANT_CONFIG

runner = CliRunner()

#: Group names with regex metacharacters, which the expression must match literally.
TRICKY: dict[str, Any] = {
    **KUADRANT_CONFIG,
    "tiers": [
        {"name": "free", "level": 0, "groups": ["system:authenticated"], "price_per_hit": 0.0},
        {"name": "plus", "level": 1, "groups": ["a.b", "x+y"], "price_per_hit": 0.0},
        {"name": "team", "level": 5, "groups": ["(g)", "team-[1]"], "price_per_hit": 0.0},
        {"name": "top", "level": 9, "groups": ["^top$"], "price_per_hit": 0.0},
    ],
}
CONFIG: Config = parse_config(TRICKY)
KNOWN = sorted({g for t in CONFIG.tiers for g in t.groups})
# Near misses: a regex would match these if the group names were not escaped or anchored.
DECOYS = ["aXb", "xxy", "g", "team-1", "top", "system:authenticated2", "a.bc", "2x+y"]


def auth_policy(config: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "maas.yaml"
        path.write_text(yaml.safe_dump(config))
        result = runner.invoke(app, ["manifests", "-c", str(path), "--part", "kuadrant"])
    assert result.exit_code == 0, result.output
    policy: dict[str, Any] = next(
        d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "AuthPolicy"
    )
    return policy


POLICY = auth_policy(TRICKY)
PROPERTIES = POLICY["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"][
    "properties"
]
ENVIRONMENT = celpy.Environment()
TIER = ENVIRONMENT.program(ENVIRONMENT.compile(PROPERTIES["tier"]["expression"]))


def tier_of(groups: list[str]) -> str:
    secret = {"metadata": {"annotations": {"maas-metrics/groups": ",".join(groups)}}}
    return str(TIER.evaluate({"auth": json_to_cel({"identity": secret})}))


@given(st.lists(st.sampled_from(KNOWN + DECOYS), max_size=6))
def test_the_tier_expression_agrees_with_the_gateway(groups: list[str]) -> None:
    expected = CONFIG.tier_for_groups(groups)
    assert tier_of(groups) == (expected.name if expected else "")


def test_examples_by_hand() -> None:
    assert tier_of(["system:authenticated"]) == "free"
    assert tier_of(["system:authenticated", "x+y"]) == "plus"
    assert tier_of(["x+y", "(g)", "system:authenticated"]) == "team"
    assert tier_of(["^top$", "a.b"]) == "top"
    assert tier_of(["xxy", "aXb", "team-1"]) == ""
    assert tier_of([]) == ""


def test_the_policy_puts_user_and_tier_on_the_identity_the_limits_read() -> None:
    assert POLICY["apiVersion"] == "kuadrant.io/v1"
    assert POLICY["spec"]["targetRef"]["kind"] == "Gateway"
    assert PROPERTIES["userid"] == {
        "selector": "auth.identity.metadata.annotations.maas-metrics/user"
    }
    keys = POLICY["spec"]["rules"]["authentication"]["api-keys"]
    assert keys["apiKey"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/component": "maas-api-key"}
    }
    assert keys["credentials"] == {"authorizationHeader": {"prefix": "Bearer"}}
