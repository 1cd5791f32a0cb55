"""No panel is refused by Prometheus's default sample limit at 10,000 users x 5 models x 24 h.

Building 10,000 users' history takes an hour on this machine, so this test
builds the same shape at 20 users (every user with every model in both
namespaces, one limited user in ten, scraped every 30 s for 24 h with a
counter reset half-way, as `benchmarks/bench_scale.py`) and scales the limit
with it: `--query.max-samples` = 50,000,000 (Prometheus's default) x 20 /
10,000. A query's samples in memory are a sum over its series of each
series's points, and every series here has the same shape, so a query that
fits here fits at 10,000 users under the default limit. Every raw panel
target is run as Grafana runs it (its step from the range and the panel's
max data points), for the last 1 h, 24 h and 7 days.

The test can fail: the same rate panels at Grafana's default 1,000 data
points are refused at this limit (checked first), which is what the issue
measured at 10,000 users.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date

import httpx
import pytest

from maas_metrics.config import load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.latency_panels import LATENCY_KEYS
from maas_metrics.dashboard.model import Catalogue, Panel, Target
from maas_metrics.dashboard.variables import (
    Selection,
    expand,
    grafana_interval,
    rate_interval,
)
from maas_metrics.prometheus import PrometheusAPI
from tests.conftest import EXAMPLE_CONFIG
from tests.panels import top_options
from tests.servers import prometheus_holding

USERS = 20
FULL_SCALE_USERS = 10_000
DEFAULT_MAX_SAMPLES = 50_000_000
MAX_SAMPLES = DEFAULT_MAX_SAMPLES * USERS // FULL_SCALE_USERS
MODELS = ("granite-8b", "llama-3-8b", "mistral-7b", "qwen-2-7b", "phi-3-mini")
SCRAPE = 30
HOURS = 24
VIEWS = {"1h": 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
CONFIG = load_config(EXAMPLE_CONFIG)
RAW = build_catalogue(CONFIG, price_date=date(2025, 6, 1))
REQUESTS, TOKENS = CONFIG.namespaces.requests, CONFIG.namespaces.tokens


def tier_of(user: int) -> str:
    return "free" if user % 10 < 6 else "premium" if user % 10 < 9 else "enterprise"


def openmetrics(start: int) -> str:
    """Every series of the scale benchmark's shape, sampled every SCRAPE s, reset half-way."""
    times = range(start, start + HOURS * 3600 + 1, SCRAPE)
    reset = start + HOURS * 1800
    lines: list[str] = []
    for user in range(USERS):
        tier = tier_of(user)
        for m, model in enumerate(MODELS):
            labels = f'model="{model}",tier="{tier}",user="user-{user:03d}"'
            series = {
                f'authorized_calls{{limitador_namespace="{REQUESTS}",{labels}}}': 1,
                f'authorized_hits{{limitador_namespace="{REQUESTS}",{labels}}}': 1,
                f'authorized_calls{{limitador_namespace="{TOKENS}",{labels}}}': 1,
                f'authorized_hits{{limitador_namespace="{TOKENS}",{labels}}}': 100 + 7 * m,
            }
            if user % 10 == 3:
                for ns, policy in ((REQUESTS, "requests"), (TOKENS, "tokens")):
                    name = f'limited_calls{{limit_name="{tier}-{policy}",limitador_namespace="{ns}",{labels}}}'
                    series[name] = 1
            for name, step in series.items():
                value = 0
                for t in times:
                    value = 0 if t == reset else value + step * (1 + (t // SCRAPE + user) % 3)
                    lines.append(f"{name} {value} {t}\n")
    lines.append("# EOF\n")
    return "".join(lines)


@dataclass(frozen=True)
class Env:
    api: PrometheusAPI
    url: str
    end: int


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    start = (int(time.time()) // 3600 - HOURS - 2) * 3600
    with (
        prometheus_holding(
            tmp_path_factory.mktemp("prometheus"),
            openmetrics(start),
            extra_args=(f"--query.max-samples={MAX_SAMPLES}",),
        ) as prometheus,
        PrometheusAPI(prometheus.url, timeout=300) as api,
    ):
        yield Env(api, prometheus.url, start + HOURS * 3600 - 17)


def step_of(panel: Panel, target: Target, range_seconds: int) -> float:
    """The step Grafana gives a range target (the web dashboard computes the same)."""
    minimum = 3600.0 if target.min_step == "1h" else float(SCRAPE)
    return grafana_interval(
        range_seconds, max_data_points=panel.max_data_points or 1000, min_interval_seconds=minimum
    )


def run(env: Env, catalogue: Catalogue, panel: Panel, target: Target, range_seconds: int) -> str:
    """Run `target` as Grafana would; "" when Prometheus answers, else its error."""
    step = step_of(panel, target, range_seconds)
    options = top_options(env.api, catalogue, Selection(), range_seconds, 4 * SCRAPE, env.end)
    expr = expand(
        target.expr,
        Selection(),
        range_seconds,
        rate_interval(step, SCRAPE),
        interval_seconds=step,
        options=options,
        variables=catalogue.variables,
        range_end=env.end,
    )
    params: dict[str, str | float] = {"query": expr}
    if target.instant:
        path, params["time"] = "/api/v1/query", env.end
    else:
        path = "/api/v1/query_range"
        params |= {"start": (env.end - range_seconds) // step * step, "end": env.end // step * step}
        params["step"] = step
    answer = httpx.post(env.url + path, data=params, timeout=300).json()
    return "" if answer["status"] == "success" else str(answer.get("error"))


RANGE_TARGETS = [
    (p.key, t.ref_id)
    for p in RAW.panels
    if p.key not in LATENCY_KEYS
    for t in p.targets
    if not t.instant
]
INSTANT_TARGETS = [
    (p.key, t.ref_id)
    for p in RAW.panels
    if p.key not in LATENCY_KEYS
    for t in p.targets
    if t.instant
]


def test_the_limit_bites_at_grafanas_default_data_points(env: Env) -> None:
    """Without the panel's max data points, the per-tier rate panels are refused (the issue's case)."""
    panel = RAW.panel("success_rate_by_tier")
    default = replace(panel, max_data_points=1000)
    error = run(env, RAW, default, default.targets[0], VIEWS["24h"])
    assert "too many samples" in error


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("target", RANGE_TARGETS, ids=lambda t: ".".join(t))
def test_no_range_panel_is_refused(env: Env, target: tuple[str, str], view: str) -> None:
    panel = RAW.panel(target[0])
    assert run(env, RAW, panel, panel.target(target[1]), VIEWS[view]) == ""


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("target", INSTANT_TARGETS, ids=lambda t: ".".join(t))
def test_no_instant_panel_is_refused(env: Env, target: tuple[str, str], view: str) -> None:
    panel = RAW.panel(target[0])
    assert run(env, RAW, panel, panel.target(target[1]), VIEWS[view]) == ""
