"""Hostile label values in every label position keep /metrics valid, for promtool and for Prometheus.

User names, model names and both limitador namespaces come from the config,
so an operator (or whoever feeds the config) can put anything in them:
quotes, backslashes, newlines, carriage returns, NUL, label-injection
attempts, right-to-left and combining Unicode, emoji, and 10 kB ids. Real
traffic through the gateway creates every Limitador counter (429s
included) with those values; then

* `promtool check metrics` must parse the page (exit code != 1) and report
  nothing but the missing `_total` suffix of Limitador's three counters;
* a real Prometheus scraping the gateway must store every value exactly
  (read back through its HTTP API), with no injected series;
* for arbitrary Unicode text (hypothesis), the exposition stays valid for promtool.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from maas_metrics.config import Config, hash_key, parse_config
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.telemetry import GatewayMetrics, render
from tests.gateway_harness import running_gateway, running_mock
from tests.servers import require_binary

LIMITADOR_COUNTERS = ("authorized_hits", "authorized_calls", "limited_calls")
ALLOWED_FINDINGS = {
    f'{name} counter metrics should have "_total" suffix' for name in LIMITADOR_COUNTERS
}

HOSTILE_USERS = (
    'say "hi"',
    "C:\\Users\\bob\\",
    "two\nlines\n",
    "carriage\rreturn and\ttab",
    "nul\x00byte",
    'x"} 1\nevil_injected{user="y',
    "# TYPE evil counter",
    "Zoë Ωμέγα 東京 用户 🚀👩‍👩‍👧",
    "مستخدم עִברִית",
    "e\u0301\u0327 zero\u200bwidth \ufeffbom",
    ("10k " + '"\\\n' * 3414)[:10_240],
)
HOSTILE_MODELS = ('gr"anite\\8b', "model\nwith newline", "模型-🚀")
HOSTILE_NAMESPACES = {"requests": 'req "ns"\\\n', "tokens": "tøkens/名前空間\r"}


def promtool_findings(text: str) -> tuple[int, set[str]]:
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
    )
    lines = (check.stdout + check.stderr).decode(errors="replace").strip().splitlines()
    return check.returncode, {line for line in lines if line.strip()}


def hostile_config(upstream: str) -> Config:
    keys = [
        {"user": user, "groups": ["free-users"], "sha256": hash_key(f"sk-hostile-{i}")}
        for i, user in enumerate(HOSTILE_USERS)
    ]
    return parse_config(
        {
            "tiers": [
                {
                    "name": "free",
                    "level": 0,
                    "groups": ["free-users"],
                    "price_per_hit": 0.005,
                    # One admitted request per model, then the request policy bites.
                    "request_limit": {"max": len(HOSTILE_MODELS), "window_seconds": 600},
                    "token_limit": {"max": 1_000_000, "window_seconds": 600},
                }
            ],
            "models": [{"name": m, "upstream": upstream} for m in HOSTILE_MODELS],
            "api_keys": keys,
            "namespaces": HOSTILE_NAMESPACES,
        }
    )


def test_hostile_labels_stay_valid_for_promtool_and_prometheus(tmp_path: Path) -> None:
    with running_mock() as mock, running_gateway(hostile_config(mock.url)) as gateway:
        statuses: dict[int, int] = {}
        for i, _user in enumerate(HOSTILE_USERS):
            headers = {"Authorization": f"Bearer sk-hostile-{i}"}
            for model in (*HOSTILE_MODELS, HOSTILE_MODELS[0]):  # the last one is limited
                response = httpx.post(
                    f"{gateway}/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                    headers=headers,
                    timeout=10,
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        users, models = len(HOSTILE_USERS), len(HOSTILE_MODELS)
        assert statuses == {200: users * models, 429: users}

        text = httpx.get(f"{gateway.operator}/metrics", timeout=10).text
        code, findings = promtool_findings(text)
        assert code != 1, findings
        assert findings <= ALLOWED_FINDINGS, findings - ALLOWED_FINDINGS

        port = int(gateway.operator.rsplit(":", 1)[1])  # Prometheus scrapes the operator listener
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            targets=[ScrapeTarget("gateway", f"127.0.0.1:{port}")],
            scrape_interval="1s",
        )
        with prometheus, PrometheusAPI(prometheus.url) as api:
            deadline = time.monotonic() + 20
            while not api.query('up{job="gateway"} == 1'):
                assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
                time.sleep(0.2)
            assert api.query('scrape_samples_scraped{job="gateway"}')[0].value > 0
            calls = api.query("authorized_calls")
            limited = api.query("limited_calls")
            hits = api.query("authorized_hits")
            injected = api.query('{__name__=~"evil.*"}')

    # Every (namespace, user, model) of the traffic, stored exactly as named.
    expected_calls = {
        (ns, user, model)
        for ns in HOSTILE_NAMESPACES.values()
        for user in HOSTILE_USERS
        for model in HOSTILE_MODELS
    }
    got_calls = {
        (s.labels["limitador_namespace"], s.labels["user"], s.labels["model"]) for s in calls
    }
    assert got_calls == expected_calls
    assert all(s.value == 1 for s in calls)
    assert {
        (s.labels["limitador_namespace"], s.labels["user"], s.labels["model"]) for s in limited
    } == {(HOSTILE_NAMESPACES["requests"], user, HOSTILE_MODELS[0]) for user in HOSTILE_USERS}
    assert {s.labels["user"] for s in hits} == set(HOSTILE_USERS)
    assert max(len(s.labels["user"]) for s in calls) == 10_240
    assert injected == []


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=12, unique=True),
)
def test_any_unicode_label_value_keeps_the_exposition_valid(values: list[str]) -> None:
    metrics = GatewayMetrics()
    for i, value in enumerate(values):
        other = values[(i + 1) % len(values)]
        metrics.authorized(value, (value, "free"), other, 1)
        metrics.reported(other, (value, "premium"), value, 1, 2, 3)
        metrics.limited(value, (other, "free"), value, "free-requests")
    code, findings = promtool_findings(render(metrics.families()).decode())
    assert code != 1, findings
    assert findings <= ALLOWED_FINDINGS, findings - ALLOWED_FINDINGS
