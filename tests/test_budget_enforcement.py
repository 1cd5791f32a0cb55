"""Monthly budgets through the real gateway, the official `openai` client and the mock model.

The truth is computed here, independently of the gateway: tokens are summed
from the `usage` of every answer the client received, dollars are those
tokens times the test config's price, and the renewal instant is the first
day of the next month worked out with plain calendar arithmetic.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import pytest
import redis

from maas_metrics.config import Config, parse_config
from tests.gateway_harness import (
    RunningMock,
    gateway_process,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    write_config,
)
from tests.servers import RedisServer

ENTERPRISE_PRICE = 0.01  # the test config's enterprise price per token


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def with_budgets(config: Config, tiers: dict[str, dict[str, Any]], users: dict[str, Any]) -> Config:
    data = config.model_dump(mode="json")
    for tier in data["tiers"]:
        if tier["name"] in tiers:
            tier["budget"] = tiers[tier["name"]]
    for key in data["api_keys"]:
        if key["user"] in users:
            key["budget"] = users[key["user"]]
    return parse_config(data)


def next_month_start(now: datetime, zone: str) -> datetime:
    """The first instant of the month after `now`'s month in `zone`, as a UTC datetime."""
    local = now.astimezone(ZoneInfo(zone))
    year = local.year + (1 if local.month == 12 else 0)
    month = 1 if local.month == 12 else local.month + 1
    return datetime(year, month, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def ask(client: openai.OpenAI) -> tuple[int, Mapping[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model="granite-8b", messages=[{"role": "user", "content": "hello there"}], max_tokens=8
    )
    answer = raw.parse()
    assert answer.usage is not None
    return answer.usage.total_tokens, raw.headers


def client(url: str, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=secret(user), max_retries=0)


def spend_until_rejected(url: str, user: str, limit: float, per_token: float) -> tuple[float, Any]:
    """Serve requests until the hard budget rejects one; (spent per the answers, the 429 error)."""
    spent = 0.0
    c = client(url, user)
    for _ in range(200):
        try:
            tokens, _ = ask(c)
        except openai.RateLimitError as error:
            # Admission is check-then-report: rejected only once the month is at or over the limit.
            assert spent >= limit - 1e-9
            return spent, error
        # Served, so the month was below the limit when this request was admitted.
        assert spent < limit - 1e-9
        spent += tokens * per_token
    raise AssertionError("the hard budget never rejected")


def assert_budget_error(error: Any, zone: str) -> None:
    body = error.response.json()["error"]
    assert body["code"] == "budget_exceeded"
    renews = next_month_start(datetime.now(UTC), zone).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert renews in body["message"]
    assert error.response.headers["X-Budget-Reset"] == renews
    retry = int(error.response.headers["Retry-After"])
    left = (next_month_start(datetime.now(UTC), zone) - datetime.now(UTC)).total_seconds()
    assert left - 5 <= retry <= left + 5
    assert error.response.headers["x-should-retry"] == "false"  # a month is not worth waiting for


def test_hard_token_budget_rejects_with_renewal_time(mock: RunningMock) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its month renews at another UTC instant than UTC's
    config = with_budgets(
        make_config(mock.url),
        {"enterprise": {"amount": 60, "unit": "tokens", "timezone": zone}},
        {},
    )
    with running_gateway(config) as url:
        spent, error = spend_until_rejected(url, "frank", 60, 1.0)
        assert_budget_error(error, zone)
        before = scrape(url)
        with pytest.raises(openai.RateLimitError):
            ask(client(url, "frank"))
        after = scrape(url)
        # A budget rejection moves no Limitador counter, only the rejection counter (the store
        # was asked, so its round-trip histogram `datastore_latency` moves too: not a count).
        changed = {
            k
            for k in after
            if after[k] != before.get(k) and not k[0].startswith("datastore_latency")
        }
        assert changed == {
            ("maas_budget_rejected_calls", frozenset({("user", "frank"), ("tier", "enterprise")}))
        }
        used = after[
            (
                "maas_budget_used",
                frozenset({("user", "frank"), ("tier", "enterprise"), ("unit", "tokens")}),
            )
        ]
        assert used == spent
        _, headers = ask(client(url, "dave"))  # premium has no budget: served, no warning
        assert "X-Budget-Warning" not in headers


def test_hard_dollar_budget_survives_a_restart_on_redis(
    mock: RunningMock, redis: RedisServer, tmp_path: Path
) -> None:
    config = with_budgets(
        make_config(mock.url, storage=redis.url),
        {},
        {"frank": {"amount": 0.5, "unit": "usd"}},  # a user override: the tier has no budget
    )
    path = write_config(config, tmp_path / "config.yaml")
    with gateway_process(path) as url:
        spent, error = spend_until_rejected(url, "frank", 0.5, ENTERPRISE_PRICE)
        assert_budget_error(error, "UTC")
    counters = _redis(redis)
    month = datetime.now(UTC).strftime("%Y-%m")
    key = f"maas-budget:5:frank:{month}"
    assert int(counters.get(key) or 0) == round(spent * 1e9)
    left_ms = (
        next_month_start(datetime.now(UTC), "UTC") - datetime.now(UTC)
    ).total_seconds() * 1000
    assert abs(counters.pttl(key) - left_ms) < 10_000  # the counter expires when the month renews
    with gateway_process(path) as url:  # a new process: the month's spend is still there
        with pytest.raises(openai.RateLimitError) as again:
            ask(client(url, "frank"))
        assert_budget_error(again.value, "UTC")
        usage = httpx.get(
            f"{url}/v1/usage", headers={"Authorization": f"Bearer {secret('frank')}"}
        ).json()
        assert usage["budget"]["used"] == pytest.approx(spent, abs=1e-9)
        assert usage["budget"]["exhausted"] is True


def _redis(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_soft_budget_keeps_serving_with_a_warning(
    mock: RunningMock, storage: str, request: pytest.FixtureRequest
) -> None:
    store_url = "memory" if storage == "memory" else request.getfixturevalue("redis").url
    config = with_budgets(
        make_config(mock.url, storage=store_url),
        {"premium": {"amount": 30, "unit": "tokens", "enforcement": "soft"}},
        {},
    )
    with running_gateway(config) as url:
        c = client(url, "dave")
        spent = 0
        warned = 0
        for _ in range(12):
            tokens, headers = ask(c)
            if spent >= 30:
                warned += 1
                assert "monthly budget exceeded" in headers["X-Budget-Warning"]
                renews = next_month_start(datetime.now(UTC), "UTC")
                assert headers["X-Budget-Reset"] == renews.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                assert "X-Budget-Warning" not in headers
            spent += tokens
        assert warned > 0
        metrics = scrape(url)
        labels = frozenset({("user", "dave"), ("tier", "premium")})
        assert metrics[("maas_budget_overage_calls", labels)] == warned
        used_key = ("maas_budget_used", labels | {("unit", "tokens")})
        assert metrics[used_key] == spent
        assert metrics[("maas_budget_limit", labels | {("unit", "tokens")})] == 30


def test_two_replicas_on_redis_charge_one_exact_counter_streams_too(
    mock: RunningMock, redis: RedisServer, tmp_path: Path
) -> None:
    """Concurrent JSON and streamed answers over two gateway processes: one exact monthly counter."""
    config = with_budgets(
        make_config(mock.url, storage=redis.url),
        {"enterprise": {"amount": 10, "unit": "usd", "enforcement": "soft"}},
        {},
    )
    path = write_config(config, tmp_path / "config.yaml")

    def one(url: str, n: int) -> int:
        c = client(url, "frank")
        if n % 2:
            return ask(c)[0]
        stream = c.chat.completions.create(
            model="llama-3-8b",
            messages=[{"role": "user", "content": f"stream {n}"}],
            max_tokens=5 + n % 7,
            stream=True,
            stream_options={"include_usage": True},
        )
        total = 0
        for chunk in stream:
            if chunk.usage is not None:
                total = chunk.usage.total_tokens
        assert total > 0
        return total

    with gateway_process(path) as a, gateway_process(path) as b:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # Each replica gets JSON and streamed requests: (n // 2) % 2 picks it, n % 2 the kind.
            tokens = list(pool.map(lambda n: one((a, b)[(n // 2) % 2], n), range(40)))
        truth = sum(tokens) * ENTERPRISE_PRICE
        for url in (a, b):
            budget = httpx.get(
                f"{url}/v1/usage", headers={"Authorization": f"Bearer {secret('frank')}"}
            ).json()["budget"]
            assert budget["used"] == pytest.approx(truth, abs=1e-9)
    month = datetime.now(UTC).strftime("%Y-%m")
    assert int(_redis(redis).get(f"maas-budget:5:frank:{month}") or 0) == round(truth * 1e9)
