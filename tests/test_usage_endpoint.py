"""`GET /v1/usage`: two keys, two users, a real Prometheus scraping the gateway's operator listener.

Truth is what the official `openai` client saw: the `usage` of every answer
it received and the 429s it got. Each user's numbers must equal that truth,
equal the report's (`build_report`, as `maas-metrics report` runs it) over
the same range, and hold nothing of the other user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, func, select

from maas_metrics.config import Config, Ledger, parse_config
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.schema import records
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.report import ReportRequest, TimeRange, build_report
from tests.gateway_harness import (
    RunningMock,
    make_config,
    running_gateway,
    running_mock,
    secret,
)
from tests.servers import free_port

PRICE = {"alice": 0.005, "frank": 0.01}  # the test config's free and enterprise prices per token
WINDOW = {"requests": 120, "tokens": 60}


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def with_usage(config: Config, **usage: Any) -> Config:
    data = config.model_dump(mode="json")
    data["gateway"]["usage"] = usage
    return parse_config(data)


def get_usage(url: str, key: str | None, **params: str) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{url}/v1/usage", headers=headers, params=params, timeout=30)


class Truth:
    def __init__(self) -> None:
        self.tokens = 0
        self.served = 0
        self.limited = 0
        self.by_model: dict[str, int] = {}


def traffic(url: str, user: str, plan: list[str]) -> Truth:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret(user), max_retries=0)
    truth = Truth()
    for model in plan:
        try:
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"hi {user}"}], max_tokens=6
            )
        except openai.RateLimitError:
            truth.limited += 1
            continue
        assert answer.usage is not None
        truth.served += 1
        truth.tokens += answer.usage.total_tokens
        truth.by_model[model] = truth.by_model.get(model, 0) + answer.usage.total_tokens
    return truth


def last_scrape(api: PrometheusAPI) -> float:
    samples = api.query('timestamp(up{job="gateway"}) and up{job="gateway"} == 1')
    return samples[0].value if samples else 0.0


def wait_for_scrapes(api: PrometheusAPI, after: float, count: int) -> float:
    """Wait until `count` scrapes began after unix time `after`; the last one's time."""
    seen = after
    deadline = time.monotonic() + 30
    for _ in range(count):
        while (latest := last_scrape(api)) <= seen:
            assert time.monotonic() < deadline, "Prometheus stopped scraping the gateway"
            time.sleep(0.05)
        seen = latest
    return seen


def report_of(api: PrometheusAPI, config: Config, user: str, part: dict[str, Any]) -> Any:
    rng = TimeRange(datetime.fromisoformat(part["from"]), datetime.fromisoformat(part["to"]))
    return build_report(
        api,
        config,
        ReportRequest(range=rng, by=("user",), filters={"user": (user,)}, resolution=1.0),
    ).total


def test_each_key_sees_its_own_numbers_equal_to_the_report(
    mock: RunningMock, tmp_path: Path
) -> None:
    prometheus_port = free_port()
    config = with_usage(
        make_config(mock.url),
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        resolution_seconds=1,
    )
    with running_gateway(config) as url:
        operator = url.operator.removeprefix("http://")
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            port=prometheus_port,
            targets=[ScrapeTarget("gateway", operator)],
            scrape_interval="1s",
        )
        with prometheus, PrometheusAPI(prometheus.url) as api:
            wait_for_scrapes(api, 0, 1)
            started = datetime.now(UTC)
            time.sleep(1.1)
            # alice (free: 5 requests per 120 s) is limited twice; frank uses two models.
            truths = {
                "alice": traffic(url, "alice", ["granite-8b"] * 4 + ["llama-3-8b"] * 3),
                "frank": traffic(url, "frank", ["granite-8b", "mistral-7b", "mistral-7b"]),
            }
            assert truths["alice"].limited == 2 and truths["frank"].limited == 0
            # Born-at-zero series: a scrape reads them at 0, the next one their counts.
            last = wait_for_scrapes(api, time.time(), 3)
            while time.time() < last + 1.2:  # the range ends on the 1 s grid after that scrape
                time.sleep(0.05)

            answers = {user: get_usage(url, secret(user)) for user in truths}
            ranged = {
                user: get_usage(url, secret(user), **{"from": started.isoformat()})
                for user in truths
            }
            for user, truth in truths.items():
                for response in (answers[user], ranged[user]):
                    assert response.status_code == 200, response.text
                    assert response.headers["cache-control"] == "no-store"
                body = answers[user].json()
                other = next(u for u in truths if u != user)
                assert other not in answers[user].text and other not in ranged[user].text
                assert body["user"] == user and body["source"] == "prometheus"
                parts = {**body["history"], "range": ranged[user].json()["history"]["range"]}
                for name in ("today", "month", "range"):
                    part = parts[name]
                    assert part["tokens"] == truth.tokens, (user, name, part)
                    assert part["cost"] == pytest.approx(truth.tokens * PRICE[user])
                    assert part["allowed_calls"] == 2 * truth.served  # request + token policy
                    assert part["limited_calls"] == truth.limited
                    assert {m: v["tokens"] for m, v in part["by_model"].items()} == truth.by_model
                    report = report_of(api, config, user, part)
                    assert (report.tokens, report.allowed, report.limited) == (
                        part["tokens"],
                        part["allowed_calls"],
                        part["limited_calls"],
                    )
                    assert report.cost == pytest.approx(part["cost"])
                # Live quota, from the counters: what the traffic put there.
                quota = {q["policy"]: q for q in body["quota"]}
                admitted = truth.served  # alice's 2 rejections were the request policy's
                assert quota["requests"]["used"] == admitted
                assert quota["tokens"]["used"] == truth.tokens
                for policy, entry in quota.items():
                    assert entry["remaining"] == max(entry["limit"] - entry["used"], 0)
                    assert 0 < entry["reset_seconds"] <= WINDOW[policy]
                assert body["budget"] is None


def test_bad_or_missing_key_gets_401_json_and_no_user_parameter(mock: RunningMock) -> None:
    with running_gateway(make_config(mock.url)) as url:
        for key in (None, "sk-not-a-key", "sk-test-alice-but-longer"):
            response = get_usage(url, key)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert "alice" not in response.text
        for header in ("Basic c2stdGVzdC1hbGljZQ==", "Bearer", secret("alice")):
            other = httpx.get(f"{url}/v1/usage", headers={"Authorization": header})
            assert other.status_code == 401 and other.json()["error"]["code"] == "invalid_api_key"
        # There is no way to name another user: an extra parameter is refused, not ignored.
        response = get_usage(url, secret("alice"), user="frank")
        assert response.status_code == 400
        assert "frank" not in response.text
        too_long = {"from": "2026-01-01", "to": "2026-06-01"}  # over MAX_RANGE_DAYS
        for params in ({"from": "yesterday-ish"}, {"to": "2026-01-01"}, too_long):
            bad = get_usage(url, secret("alice"), **params)
            assert bad.status_code == 400, params
            assert bad.json()["error"]["message"].startswith("Parameter")


def test_without_prometheus_history_is_explained_and_quota_still_live(mock: RunningMock) -> None:
    with running_gateway(make_config(mock.url)) as url:
        traffic(url, "bob", ["granite-8b"])
        body = get_usage(url, secret("bob")).json()
        assert body["history"] is None and body["source"] is None
        assert "ledger or Prometheus" in body["note"]
        quota = {q["policy"]: q for q in body["quota"]}
        assert quota["requests"]["used"] == 1 and quota["requests"]["remaining"] == 4
        # carol never called: her windows have not started, so they have no reset time yet.
        fresh = get_usage(url, secret("carol")).json()
        assert all(q["used"] == 0 and q["resets_at"] is None for q in fresh["quota"])


def test_an_unreachable_prometheus_is_said_plainly_without_its_address(mock: RunningMock) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running_gateway(with_usage(make_config(mock.url), prometheus_url=dead)) as url:
        response = get_usage(url, secret("alice"))
        assert response.status_code == 200
        body = response.json()
        assert body["history"] is None and body["source"] == "prometheus"
        assert body["note"] == "Usage history is unavailable: Prometheus did not answer."
        assert "127.0.0.1" not in response.text and dead.rsplit(":", 1)[1] not in response.text
        assert {q["policy"] for q in body["quota"]} == {"requests", "tokens"}


def test_with_a_ledger_each_key_sees_its_exact_numbers_equal_to_the_ledger_report(
    mock: RunningMock, tmp_path: Path
) -> None:
    ledger = Ledger.model_validate(
        {
            "url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "flush_interval_ms": 50,
            "spool_path": str(tmp_path / "spool"),
        }
    )
    config = make_config(mock.url).model_copy(update={"ledger": ledger})
    with running_gateway(config) as url:
        started = datetime.now(UTC)
        truths = {
            "alice": traffic(url, "alice", ["granite-8b"] * 3 + ["mistral-7b"] * 4),
            "frank": traffic(url, "frank", ["llama-3-8b"] * 2),
        }
        sent = sum(t.served + t.limited for t in truths.values())
        engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        deadline = time.monotonic() + 30
        while True:  # the writer flushes in the background
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(records)).scalar_one() >= sent:
                    break
            assert time.monotonic() < deadline, "the ledger writer never flushed"
            time.sleep(0.05)
        time.sleep(0.01)  # the records' end times are now strictly in the past
        for user, truth in truths.items():
            response = get_usage(url, secret(user), **{"from": started.isoformat()})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["source"] == "ledger"
            other = next(u for u in truths if u != user)
            assert other not in response.text
            for name in ("today", "month", "range"):
                part = body["history"][name]
                assert part["tokens"] == truth.tokens, (user, name, part)
                assert part["cost"] == pytest.approx(truth.tokens * PRICE[user])
                assert part["limited_calls"] == truth.limited
                assert {m: v["tokens"] for m, v in part["by_model"].items()} == truth.by_model
                report = build_ledger_report(
                    engine,
                    config,
                    datetime.fromisoformat(part["from"]),
                    datetime.fromisoformat(part["to"]),
                    ("user",),
                    {"user": (user,)},
                ).total
                assert (report.tokens, report.allowed, report.limited) == (
                    part["tokens"],
                    part["allowed_calls"],
                    part["limited_calls"],
                )
                assert report.cost == pytest.approx(part["cost"])
        engine.dispose()
