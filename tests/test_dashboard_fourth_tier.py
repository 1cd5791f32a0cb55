"""A tier added to the config shows up in every panel, with its colour and price, with no code change.

The config variant adds `platinum`; the history then has platinum users, and
every panel query (raw and recording-rule variants) must return the truth,
which includes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest

from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.variables import Selection
from tests.history import build_history
from tests.panels import HOUR, check, history_api, run, targets
from tests.test_dashboard_json import with_fourth_tier
from tests.test_dashboard_queries import (
    CONFIG,
    EXPECTED,
    Case,
    Env,
)

PRICE_DAY = date(2025, 6, 1)
VARIANT = with_fourth_tier(CONFIG)
RAW = build_catalogue(VARIANT, price_date=PRICE_DAY)
RULES = build_catalogue(VARIANT, recording_rules=True, price_date=PRICE_DAY)
SELECTIONS = {"all": Selection(), "platinum": Selection(tier=["platinum"])}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    start = (int(time.time()) // HOUR - 4) * HOUR
    history = build_history(
        VARIANT, start=start, hours=2.5, restart_after_seconds=5400, bursts_after_seconds=()
    )
    assert "platinum" in history.users.values()
    with history_api(tmp_path_factory.mktemp("prometheus"), history) as api:
        yield Env(history, api)


@pytest.mark.parametrize("variant", ["raw", "rules"])
@pytest.mark.parametrize("selection_name", sorted(SELECTIONS))
@pytest.mark.parametrize("target", targets(RAW), ids=lambda t: f"{t[0]}.{t[1]}")
def test_fourth_tier_in_every_panel(
    env: Env, target: tuple[str, str], selection_name: str, variant: str
) -> None:
    rules = variant == "rules"
    case = Case(env.history, SELECTIONS[selection_name], env.history.end, HOUR, rules)
    expected = EXPECTED[target](case)
    assert expected.values
    check(run(env.api, RULES if variant == "rules" else RAW, case, *target), expected)


def test_platinum_is_priced_and_coloured(env: Env) -> None:
    case = Case(env.history, Selection(), env.history.end, HOUR, rules=False)
    revenue = run(env.api, RAW, case, "revenue_by_tier", "A")
    hits = case.hits(("tier",))
    platinum = (("tier", "platinum"),)
    assert revenue[platinum] == pytest.approx(hits[platinum] * 0.02) and revenue[platinum] > 0
    assert RAW.tier_colours["platinum"] == "purple"
