"""The Latency & health row, read through a real Prometheus scraping the gateway, equals the truth.

Two mock models with known delays (a fast one answering streams, a slow one
answering JSON), a model whose upstream is down (502) and one whose upstream
answers 503, all behind one gateway that a real Prometheus scrapes every
second on its operator listener. The official `openai` client sends the
traffic and times it itself; that client-side timing is the truth. Each panel
target is expanded as Grafana expands it (dashboard range 1 h, Grafana's
default 15 s scrape interval) and run as a range query; its last point must
lie within one histogram bucket of the truth (a quantile of a histogram is
only known to within its bucket), and the error ratio and health must be exact.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openai import APIStatusError, OpenAI

from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.latency_panels import LATENCY_KEYS
from maas_metrics.dashboard.model import Catalogue
from maas_metrics.dashboard.variables import Selection, expand
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.telemetry.latency import (
    REQUEST_DURATION_BOUNDS,
    TIME_PER_OUTPUT_TOKEN_BOUNDS,
    TIME_TO_FIRST_TOKEN_BOUNDS,
)
from tests.fake_upstream import fake_upstream, json_reply
from tests.gateway_harness import make_config, running_gateway, running_mock
from tests.servers import free_port

FAST, SLOW, DEAD, FLAKY = "granite-8b", "slow-model", "dead-model", "flaky-model"
FAST_MS, SLOW_MS = 50.0, 200.0
USERS = {f"latency-{i}": (["enterprise-users"], f"sk-latency-{i}") for i in range(6)}
STREAMS, ANSWERS, FAILURES = 30, 20, 6
RANGE, STEP, RATE_INTERVAL = 3600, 15, 60  # Grafana: last 1 h, 15 s scrape interval


@dataclass
class Truth:
    """What the clients measured, per model."""

    durations: dict[str, list[float]] = field(default_factory=dict)
    first_token: dict[str, list[float]] = field(default_factory=dict)
    per_token: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Env:
    api: PrometheusAPI
    catalogue: Catalogue
    truth: Truth
    end: float  # evaluation time: every request scraped, all inside the rate window


def _stream(client: OpenAI, model: str, prompt: str) -> tuple[float, float, float]:
    """(duration, time to first content, time per output token after the first)."""
    start = time.perf_counter()
    first = None
    completion = 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            completion = chunk.usage.completion_tokens
    end = time.perf_counter()
    assert first is not None and completion > 1
    return end - start, first - start, (end - first) / (completion - 1)


def _answer(client: OpenAI, model: str, prompt: str) -> float:
    start = time.perf_counter()
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return time.perf_counter() - start


def _fails(client: OpenAI, model: str) -> int:
    with pytest.raises(APIStatusError) as failure:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return failure.value.status_code


def _traffic(url: str, truth: Truth) -> None:
    clients = [
        OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        for _, key in USERS.values()
    ]

    def client(i: int) -> OpenAI:
        return clients[i % len(clients)]

    with ThreadPoolExecutor(8) as pool:
        streams = list(
            pool.map(lambda i: _stream(client(i), FAST, f"tell me {i} things"), range(STREAMS))
        )
        answers = list(
            pool.map(lambda i: _answer(client(i), SLOW, f"say {i} words"), range(ANSWERS))
        )
        dead = list(pool.map(lambda i: _fails(client(i), DEAD), range(FAILURES)))
        flaky = list(pool.map(lambda i: _fails(client(i), FLAKY), range(FAILURES)))
    assert set(dead) == {502} and set(flaky) == {503}
    truth.durations[FAST] = [d for d, _, _ in streams]
    truth.first_token[FAST] = [f for _, f, _ in streams]
    truth.per_token[FAST] = [p for _, _, p in streams]
    truth.durations[SLOW] = answers
    truth.first_token[SLOW] = answers  # a JSON answer's first token comes with the whole answer
    truth.failures = {DEAD: len(dead), FLAKY: len(flaky)}


async def _answer_503(body: object, writer: asyncio.StreamWriter) -> None:
    del body
    writer.write(json_reply(503, {"error": {"message": "overloaded", "type": "server_error"}}))


def _scrape_after(api: PrometheusAPI, moment: float) -> float:
    """The time of the first scrape of the gateway that began after `moment` (waits for it)."""
    deadline = time.monotonic() + 60
    while True:
        samples = api.query("timestamp(limitador_up)")
        if samples and samples[0].value > moment:
            return samples[0].value
        assert time.monotonic() < deadline, "Prometheus did not scrape the gateway"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with (
        running_mock(FAST_MS) as fast,
        running_mock(SLOW_MS) as slow,
        fake_upstream(_answer_503) as flaky,
    ):
        config = make_config(
            fast.url,
            extra_models={
                SLOW: slow.url,
                DEAD: f"http://127.0.0.1:{free_port()}/v1",
                FLAKY: flaky.url,
            },
            extra_users=USERS,
        )
        with running_gateway(config) as gateway:
            operator = gateway.operator.removeprefix("http://")
            prometheus = PrometheusProcess(
                Path(tmp_path_factory.mktemp("prometheus")),
                targets=[ScrapeTarget("gateway", operator)],
                scrape_interval="1s",
            )
            prometheus.start()
            try:
                with PrometheusAPI(prometheus.url) as api:
                    _scrape_after(api, 0)  # Prometheus is scraping before the traffic starts
                    truth = Truth()
                    _traffic(gateway, truth)
                    # New series are scraped at 0 first, then with their counts.
                    last = _scrape_after(api, _scrape_after(api, time.time()))
                    yield Env(api, build_catalogue(config), truth, float(int(last) + 1))
            finally:
                prometheus.stop()


def panel(env: Env, key: str, selection: Selection = Selection()) -> dict[str, dict[str, float]]:
    """ref_id -> legend-ish key (`model` or "") -> the panel's last point, queried as Grafana does."""
    out: dict[str, dict[str, float]] = {}
    for target in env.catalogue.panel(key).targets:
        expr = expand(
            target.expr,
            selection,
            RANGE,
            RATE_INTERVAL,
            variables=env.catalogue.variables,
            interval_seconds=STEP,
        )
        series = env.api.query_range(expr, env.end - 300, env.end, STEP)
        out[target.ref_id] = {
            s.labels.get("model", ""): s.points[-1][1]
            for s in series
            if s.points and s.points[-1][0] == env.end
        }
    return out


def bucket(value: float, bounds: Sequence[float]) -> int:
    return bisect_left(bounds, value)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of the measured values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def within_one_bucket(shown: float, truth: float, bounds: Sequence[float]) -> bool:
    return abs(bucket(shown, bounds) - bucket(truth, bounds)) <= 1


def test_the_row_is_in_the_catalogue(env: Env) -> None:
    keys = [p.key for p in env.catalogue.panels]
    assert keys[-len(LATENCY_KEYS) :] == list(LATENCY_KEYS)


def check_quantiles(
    shown: dict[str, dict[str, float]],
    measured: dict[str, list[float]],
    delays: dict[str, float],
    quantiles: Sequence[tuple[str, float]],
    bounds: Sequence[float],
) -> None:
    """The median is within one bucket of the clients' median. A tail quantile lies between the
    mock's delay and what the clients saw (plus a bucket): the clients' tail also holds their own
    overhead (new connections, threads parsing SSE), which no gateway can see."""
    for ref_id, q in quantiles:
        for model, values in measured.items():
            value, truth = shown[ref_id][model], quantile(values, q)
            where = (ref_id, model, value, truth)
            if q == 0.5:
                assert within_one_bucket(value, truth, bounds), where
            else:
                assert bucket(value, bounds) <= bucket(truth, bounds) + 1, where
            assert bucket(value, bounds) >= bucket(delays[model], bounds), where


def test_request_duration_quantiles_per_model(env: Env) -> None:
    shown = panel(env, "request_duration")
    durations = {m: env.truth.durations[m] for m in (FAST, SLOW)}
    # A fast stream lasts its delay before the first event plus about the same again.
    delays = {FAST: 2 * FAST_MS / 1000, SLOW: SLOW_MS / 1000}
    check_quantiles(
        shown, durations, delays, (("A", 0.5), ("B", 0.95), ("C", 0.99)), REQUEST_DURATION_BOUNDS
    )
    assert shown["A"][FAST] < shown["A"][SLOW]


def test_time_to_first_token_per_model(env: Env) -> None:
    shown = panel(env, "time_to_first_token")
    first = {m: env.truth.first_token[m] for m in (FAST, SLOW)}
    delays = {FAST: FAST_MS / 1000, SLOW: SLOW_MS / 1000}
    check_quantiles(shown, first, delays, (("A", 0.5), ("B", 0.95)), TIME_TO_FIRST_TOKEN_BOUNDS)
    # A stream's first token comes long before its end; failed requests have no first token.
    assert shown["A"][FAST] < statistics.median(env.truth.durations[FAST])
    assert set(shown["A"]) == {FAST, SLOW}


def test_time_per_output_token_of_streams(env: Env) -> None:
    shown = panel(env, "time_per_output_token")
    assert set(shown["A"]) == {FAST}  # only streams with usage measure it
    truth = quantile(env.truth.per_token[FAST], 0.5)
    assert within_one_bucket(shown["A"][FAST], truth, TIME_PER_OUTPUT_TOKEN_BOUNDS)


def test_upstream_error_rate_is_exact(env: Env) -> None:
    shown = panel(env, "upstream_error_rate")["A"]
    assert shown == pytest.approx({FAST: 0.0, SLOW: 0.0, DEAD: 1.0, FLAKY: 1.0}, rel=1e-9)


def test_limiter_up_and_not_partitioned(env: Env) -> None:
    shown = panel(env, "limiter_health")
    assert shown == {"A": {"": 1.0}, "B": {"": 0.0}}


def test_counter_store_latency_is_shown(env: Env) -> None:
    shown = panel(env, "datastore_latency")
    # The in-memory store answers within microseconds: far below the smallest Redis round trip.
    assert 0 < shown["A"][""] <= shown["B"][""] < 0.01


def test_model_and_tier_filters_apply(env: Env) -> None:
    only_fast = panel(env, "request_duration", Selection(model=[FAST]))
    assert {model for values in only_fast.values() for model in values} == {FAST}
    free_tier = panel(env, "time_to_first_token", Selection(tier=["free"]))
    assert free_tier == {"A": {}, "B": {}}  # every request came from enterprise keys
