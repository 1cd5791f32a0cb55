"""The "Budget used" panel, run by a real Prometheus scraping the gateway, equals the client's truth."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai

from maas_metrics.dashboard import Selection, build_catalogue, expand
from maas_metrics.dashboard.budget_panel import KEY
from maas_metrics.dashboard.grafana import render_json
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from tests.gateway_harness import make_config, running_gateway, running_mock, secret
from tests.test_budget_enforcement import with_budgets
from tests.test_usage_endpoint import wait_for_scrapes

BUDGET = 1000  # tokens, soft: frank keeps being served


def test_budget_used_panel_shows_each_users_share(tmp_path: Path) -> None:
    with running_mock() as mock:
        config = with_budgets(
            make_config(mock.url),
            {"enterprise": {"amount": BUDGET, "unit": "tokens", "enforcement": "soft"}},
            {"alice": {"amount": 2.0, "unit": "usd"}},  # $2 at $0.005 per token
        )
        catalogue = build_catalogue(config)
        panel = catalogue.panel(KEY)
        grafana = json.loads(render_json(catalogue))
        assert json.dumps(panel.title)[1:-1] in json.dumps(grafana)  # Grafana shows it too
        assert build_catalogue(make_config(mock.url)).panels[-1].key != KEY  # no budget, no panel
        with running_gateway(config) as url:
            prometheus = PrometheusProcess(
                tmp_path / "prometheus",
                targets=[ScrapeTarget("gateway", url.operator.removeprefix("http://"))],
                scrape_interval="1s",
            )
            with prometheus, PrometheusAPI(prometheus.url) as api:
                spent = {"frank": 0, "alice": 0}
                for user, count in (("frank", 3), ("alice", 2)):
                    client = openai.OpenAI(
                        base_url=f"{url}/v1", api_key=secret(user), max_retries=0
                    )
                    for _ in range(count):
                        answer = client.chat.completions.create(
                            model="granite-8b",
                            messages=[{"role": "user", "content": "budget check"}],
                            max_tokens=7,
                        )
                        assert answer.usage is not None
                        spent[user] += answer.usage.total_tokens
                wait_for_scrapes(api, time.time(), 2)
                query = expand(
                    panel.target("A").expr, Selection(), 3600, 4.0, variables=catalogue.variables
                )
                shown = {s.labels["user"]: s.value for s in api.query(query)}
    assert set(shown) == {"frank", "alice"}
    assert shown["frank"] == spent["frank"] / BUDGET
    assert abs(shown["alice"] - spent["alice"] * 0.005 / 2.0) < 1e-12
