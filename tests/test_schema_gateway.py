"""The gateway in today's schema, scraped by a real Prometheus.

Configured with `billing_dimension: subscription`, attribution labels
`organization_id` and `cost_center`, `capture_user: false` and
`calls_carry_model: false`, the gateway serves real traffic (the official
`openai` client against the mock model, with 429s from both policies), and a
real Prometheus scrapes it. The truth is what the client saw: the usage of
each answer and the count of 429s, per key. The tests prove that

* the counters carry `subscription`, both attribution labels and (hits
  only) `model`; the calls counters carry no `model`;
* no series Prometheus stored carries `user`;
* a key without a cost centre is counted under the documented
  `unknown`, never dropped: its tokens and calls are all there;
* the seed's schema is unchanged (`tier`, `user`, `model` everywhere).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from maas_metrics import contract
from maas_metrics.config import Config, hash_key, parse_config
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from tests.gateway_harness import running_gateway, running_mock

MODELS = ("granite-8b", "llama-3-8b")


@dataclass(frozen=True)
class Key:
    user: str
    groups: tuple[str, ...]
    subscription: str
    organization: str
    cost_center: str  # as expected on the series


KEYS = (
    Key("ann", ("team-a",), "gold", "acme", "cc-100"),
    Key("ben", ("team-a",), "gold", "acme", "cc-7"),  # own attribute wins over the group's
    Key("cat", ("partners",), "silver", "globex", contract.MISSING_VALUE),  # no cost centre
    Key("dan", ("lonely",), "community", contract.MISSING_VALUE, contract.MISSING_VALUE),
)


def today_config(upstream: str, *, capture_user: bool = False) -> Config:
    return parse_config(
        {
            "schema": {
                "billing_dimension": "subscription",
                "attribution": ["cost_center", "organization_id"],
                "capture_user": capture_user,
                "calls_carry_model": False,
                "metric_names": "limitador",
                "groups": {
                    "team-a": {"organization_id": "acme", "cost_center": "cc-100"},
                    "partners": {"organization_id": "globex"},
                },
            },
            "subscriptions": [
                {
                    "name": "community",
                    "level": 0,
                    "groups": ["lonely"],
                    "price_per_token": 0.001,
                    "request_limit": {"max": 3, "window": "2m"},
                },
                {
                    "name": "silver",
                    "level": 1,
                    "groups": ["partners"],
                    "price_per_token": 0.002,
                    "token_limit": {"max": 60, "window": "1m"},
                },
                {"name": "gold", "level": 2, "groups": ["team-a"], "price_per_token": 0.003},
            ],
            "models": [{"name": m, "upstream": upstream} for m in MODELS],
            "api_keys": [
                {
                    "user": k.user,
                    "groups": list(k.groups),
                    "sha256": hash_key(f"sk-{k.user}"),
                    **({"attributes": {"cost_center": "cc-7"}} if k.user == "ben" else {}),
                }
                for k in KEYS
            ],
        }
    )


@dataclass
class Truth:
    tokens: Counter[tuple[str, str]]  # (user, model) -> total tokens of the answers
    prompt: Counter[tuple[str, str]]
    ok: Counter[str]  # user -> 200s
    limited: Counter[str]  # user -> 429s


def drive(gateway: str) -> Truth:
    """Six requests per key and model, sequentially; what the client saw is the truth."""
    truth = Truth(Counter(), Counter(), Counter(), Counter())
    for key in KEYS:
        client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=f"sk-{key.user}", max_retries=0)
        for i in range(6):
            for model in MODELS:
                text = f"{key.user} asks {model} question {i} " + "x" * (7 * i)
                try:
                    answer = client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": text}]
                    )
                except openai.RateLimitError:
                    truth.limited[key.user] += 1
                    continue
                assert answer.usage is not None
                truth.tokens[(key.user, model)] += answer.usage.total_tokens
                truth.prompt[(key.user, model)] += answer.usage.prompt_tokens
                truth.ok[key.user] += 1
    return truth


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusAPI, Truth]]:
    tmp = tmp_path_factory.mktemp("schema-gateway")
    with running_mock() as mock, running_gateway(today_config(mock.url)) as gateway:
        truth = drive(gateway)
        port = int(gateway.rsplit(":", 1)[1])
        prometheus = PrometheusProcess(
            Path(tmp) / "prometheus",
            targets=[ScrapeTarget("gateway", f"127.0.0.1:{port}")],
            scrape_interval="1s",
        )
        with prometheus, PrometheusAPI(prometheus.url) as api:
            wanted = sum(truth.tokens.values())
            deadline = time.monotonic() + 30
            while True:
                got = api.query('sum(authorized_hits{limitador_namespace="maas/tokens"})')
                if got and got[0].value == wanted:
                    break
                assert time.monotonic() < deadline, f"Prometheus never saw {wanted} tokens: {got}"
                time.sleep(0.3)
            yield api, truth


def test_traffic_had_both_kinds_of_429(scraped: tuple[PrometheusAPI, Truth]) -> None:
    _, truth = scraped
    assert truth.limited["dan"] > 0  # request policy (3 per 2 min)
    assert truth.limited["cat"] > 0  # token policy (60 per minute)
    assert truth.ok["ann"] == 12 and truth.limited["ann"] == 0


def test_no_series_carries_user(scraped: tuple[PrometheusAPI, Truth]) -> None:
    api, _ = scraped
    assert api.query('{job="gateway", user!=""}') == []
    assert api.query('{job="gateway", tier!=""}') == []
    assert len(api.query('{job="gateway", subscription!=""}')) > 0


def test_counters_carry_the_schema_labels(scraped: tuple[PrometheusAPI, Truth]) -> None:
    api, _ = scraped
    schema = today_config("http://unused").contract
    ignored = {"__name__", "instance", "job"}
    for counter in (*contract.LIMITADOR_COUNTERS, *contract.TOKEN_KIND_COUNTERS):
        series = api.query(counter)
        assert series, counter
        for sample in series:
            assert set(sample.labels) - ignored == set(schema.labels_of(counter)), sample.labels
    assert all("model" not in s.labels for s in api.query("authorized_calls or limited_calls"))
    assert {s.labels["model"] for s in api.query("authorized_hits")} == set(MODELS)


def test_every_key_is_counted_under_its_attribution(scraped: tuple[PrometheusAPI, Truth]) -> None:
    """Tokens, prompt tokens and calls per (subscription, organization, cost centre, model)."""
    api, truth = scraped
    by = "subscription, organization_id, cost_center"
    tokens = {
        (s.labels["subscription"], s.labels["organization_id"], s.labels["cost_center"]): s.value
        for s in api.query(f'sum by ({by}) (authorized_hits{{limitador_namespace="maas/tokens"}})')
    }
    prompt = {
        (s.labels["subscription"], s.labels["organization_id"], s.labels["cost_center"]): s.value
        for s in api.query(f"sum by ({by}) (maas_prompt_tokens_total)")
    }
    limited = {
        (s.labels["subscription"], s.labels["organization_id"], s.labels["cost_center"]): s.value
        for s in api.query(f"sum by ({by}) (limited_calls)")
    }
    want_tokens: Counter[tuple[str, str, str]] = Counter()
    want_prompt: Counter[tuple[str, str, str]] = Counter()
    want_limited: Counter[tuple[str, str, str]] = Counter()
    for key in KEYS:
        row = (key.subscription, key.organization, key.cost_center)
        want_tokens[row] += sum(v for (u, _), v in truth.tokens.items() if u == key.user)
        want_prompt[row] += sum(v for (u, _), v in truth.prompt.items() if u == key.user)
        want_limited[row] += truth.limited[key.user]
    assert tokens == {k: float(v) for k, v in want_tokens.items()}
    assert prompt == {k: float(v) for k, v in want_prompt.items()}
    assert limited == {k: float(v) for k, v in want_limited.items() if v}
    # The key with no cost centre: every token is there, under `unknown`.
    assert tokens[("silver", "globex", contract.MISSING_VALUE)] == sum(
        v for (u, _), v in truth.tokens.items() if u == "cat"
    )
    quota = api.query("maas_limit_max")
    assert {s.labels["subscription"] for s in quota} == {"community", "silver"}


def test_seed_schema_keeps_tier_user_model() -> None:
    schema = contract.SEED
    assert schema.usage_labels == ("limitador_namespace", "user", "tier", "model")
    assert schema.limited_labels == ("limitador_namespace", "user", "tier", "model", "limit_name")
