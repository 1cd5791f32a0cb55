"""The config's `schema:` section: today's shape loads, a bad field is one line, attribution rules.

* examples/maas-subscriptions.yaml passes `config check`;
* each mistake an operator makes in the schema section (or subscriptions
  with the wrong dimension) is refused by `config check` with one line
  naming the field and exit 2;
* attribution: a key's own value wins, then the first `schema.groups` entry
  the key is in, then (for `group`) the group that chose its plan, then the
  documented missing value, never nothing;
* a subscription config dumps and loads back unchanged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from maas_metrics import contract
from maas_metrics.config import load_config, parse_config
from tests.fixtures import CLI, EXAMPLE_CONFIG

TODAY = EXAMPLE_CONFIG.parent / "maas-subscriptions.yaml"


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "config", "check", str(path)], capture_output=True, text=True)


def test_todays_example_is_valid() -> None:
    result = run_check(TODAY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 subscriptions [community (level 0)")
    config = load_config(TODAY)
    schema = config.contract
    assert schema.dimension == "subscription" and not schema.user and not schema.calls_model
    assert schema.names_of("authorized_hits") == ("authorized_hits_total",)
    assert [t.name for t in config.tiers] == ["community", "team-a-gold", "team-b-silver"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "billing_dimension: subscription",
            "billing_dimension: team",
            "schema.billing_dimension: Input should be 'tier' or 'subscription'",
        ),
        (
            "attribution: [organization_id, cost_center]",
            "attribution: [organization_id, costCenter]",
            "schema.attribution[1]: Input should be 'organization_id', 'cost_center', 'group' or "
            "'tenant_name'",
        ),
        (
            "attribution: [organization_id, cost_center]",
            "attribution: [cost_center, cost_center]",
            "schema.attribution: duplicate label 'cost_center'",
        ),
        (
            "metric_names: otel",
            "metric_names: both",
            "schema.metric_names: Input should be 'limitador', 'otel' or 'auto'",
        ),
        (
            "capture_user: false",
            "capture_user: sometimes",
            "schema.capture_user: Input should be a valid boolean",
        ),
        (
            "team-a: {organization_id: acme, cost_center: cc-100}",
            "team-a: {organisation: acme}",
            "schema.groups.team-a.organisation: Input should be",
        ),
        (
            "attributes: {cost_center: cc-900}",
            "attributes: {cost_center: ''}",
            "api_keys[1].attributes.cost_center: Value should have at least 1",
        ),
        (
            "subscriptions:                        # each",
            "tiers:                        # each",
            "with schema.billing_dimension subscription, list the plans under subscriptions, "
            "not tiers",
        ),
        (
            "billing_dimension: subscription",
            "billing_dimension: tier",
            "with schema.billing_dimension tier, list the plans under tiers, not subscriptions",
        ),
        (
            "price_per_token: 0.000002",
            "price_per_token: -1",
            "subscriptions[0].price_per_hit: Input should be greater than or equal to 0",
        ),
        ("missing_value: unknown", "missing_value: ''", "schema.missing_value: Value should"),
    ],
)
def test_a_bad_schema_field_is_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = TODAY.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    result = run_check(bad)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]


def test_attribution_rules() -> None:
    config = parse_config(
        {
            "schema": {
                "billing_dimension": "subscription",
                "attribution": ["organization_id", "cost_center", "group", "tenant_name"],
                "missing_value": "n/a",
                "groups": {
                    "team-a": {"organization_id": "acme", "cost_center": "cc-1"},
                    "everyone": {"organization_id": "public", "tenant_name": "shared"},
                },
            },
            "subscriptions": [
                {"name": "basic", "level": 0, "groups": ["everyone"], "price_per_hit": 0},
                {"name": "gold", "level": 1, "groups": ["vip", "team-a"], "price_per_hit": 0},
            ],
            "models": [{"name": "m", "upstream": "http://127.0.0.1:1/v1"}],
            "api_keys": [
                {"user": "ann", "groups": ["everyone", "team-a"], "sha256": "1" * 64},
                {
                    "user": "bob",
                    "groups": ["team-a"],
                    "sha256": "2" * 64,
                    "attributes": {"cost_center": "cc-own"},
                },
                {"user": "cy", "groups": ["everyone"], "sha256": "3" * 64},
                {"user": "dee", "groups": ["vip"], "sha256": "4" * 64},
            ],
        }
    )

    def attributes(user: str) -> dict[str, str]:
        key = next(k for k in config.api_keys if k.user == user)
        plan = config.tier_for_groups(key.groups)
        assert plan is not None
        return config.attributes(key, config.matched_group(key.groups, plan))

    assert attributes("ann") == {
        "organization_id": "acme",  # team-a is listed before everyone
        "cost_center": "cc-1",
        "group": "team-a",  # the group that chose gold
        "tenant_name": "shared",
    }
    assert attributes("bob")["cost_center"] == "cc-own"
    assert attributes("cy") == {
        "organization_id": "public",
        "cost_center": "n/a",
        "group": "everyone",
        "tenant_name": "shared",
    }
    assert attributes("dee") == {
        "organization_id": "n/a",
        "cost_center": "n/a",
        "group": "vip",
        "tenant_name": "n/a",
    }


def test_a_subscription_config_dumps_and_loads_back() -> None:
    config = load_config(TODAY)
    data = config.model_dump(mode="json")
    assert "subscriptions" in data and "tiers" not in data and "schema" in data
    assert parse_config(data) == config


def test_the_seed_is_the_default() -> None:
    assert load_config(EXAMPLE_CONFIG).contract == contract.SEED
