"""The latency histograms in the exposition: exact counts, the right labels, promtool clean.

Counts are checked against the requests each test makes (how many answered,
failed how, streamed or not) and bucket counts against a plain comparison of
the observed values with each bound; the exposition is read back with
Prometheus' own parser (prometheus_client) and linted with `promtool`.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import APIStatusError, OpenAI
from prometheus_client.parser import text_string_to_metric_families

from maas_metrics.telemetry import render
from maas_metrics.telemetry.histogram import Histogram
from maas_metrics.telemetry.latency import TIME_TO_FIRST_TOKEN_BOUNDS
from tests.fake_upstream import chunk_payload, fake_upstream
from tests.gateway_harness import (
    make_config,
    running_gateway,
    running_mock,
    scrape,
    scrape_text,
    secret,
)
from tests.servers import RedisServer, free_port, require_binary

DURATION = "gen_ai_server_request_duration_seconds"
FIRST = "gen_ai_server_time_to_first_token_seconds"
PER_TOKEN = "gen_ai_server_time_per_output_token_seconds"
TOKENS = "gen_ai_client_token_usage"
LIMITADOR_COUNTERS = ("authorized_hits", "authorized_calls", "limited_calls")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, parsed as Prometheus parses the text format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


def live(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every series with its counts (new series are scraped at 0 first)."""
    scrape_text(url)
    return samples(scrape_text(url))


# --- the histogram family alone ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", 'q"uote', "back\\slash", "new\nline"]),
            st.one_of(
                st.floats(min_value=0, max_value=20, allow_nan=False),
                st.sampled_from(
                    TIME_TO_FIRST_TOKEN_BOUNDS
                ),  # exactly on a bound: `le` is inclusive
            ),
        ),
        max_size=40,
    )
)
def test_histogram_counts_every_value_in_every_bucket_at_or_above_it(
    observations: list[tuple[str, float]],
) -> None:
    histogram = Histogram("h_seconds", "help", ("model",), TIME_TO_FIRST_TOKEN_BOUNDS)
    for model, value in observations:
        histogram.observe((model,), value)
    first = samples(render([histogram]).decode())
    assert all(v == 0 for v in first.values())  # born at zero
    shown = samples(render([histogram]).decode())
    for model in {m for m, _ in observations}:
        values = [v for m, v in observations if m == model]
        for bound in (*TIME_TO_FIRST_TOKEN_BOUNDS, math.inf):
            le = "+Inf" if bound == math.inf else repr(bound)
            got = [
                v
                for (n, ls), v in shown.items()
                if n == "h_seconds_bucket"
                and dict(ls)["model"] == model
                and float(dict(ls)["le"]) == float(le)
            ]
            assert got == [sum(1 for v in values if v <= bound)]
        key = frozenset({("model", model)})
        assert shown[("h_seconds_count", key)] == len(values)
        assert shown[("h_seconds_sum", key)] == pytest.approx(sum(values))


# --- the gateway ---------------------------------------------------------------------------


def chat(
    url: str, user: str, model: str, *, stream: bool = False, usage: bool = False
) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret(user)}"},
        timeout=30,
    )


def test_every_admitted_request_is_timed_once_and_rejections_never() -> None:
    with (
        running_mock(5) as mock,
        running_gateway(
            make_config(mock.url, extra_models={"dead": f"http://127.0.0.1:{free_port()}/v1"})
        ) as gateway,
    ):
        assert chat(gateway, "frank", "granite-8b").status_code == 200
        assert chat(gateway, "frank", "granite-8b", stream=True).status_code == 200
        assert chat(gateway, "frank", "granite-8b", stream=True, usage=True).status_code == 200
        assert chat(gateway, "frank", "dead").status_code == 502
        # Never admitted: no key (401), bad body (400), unknown model (404), over the limit (429).
        httpx.post(f"{gateway}/v1/chat/completions", json={}, timeout=10)
        assert chat(gateway, "frank", "").status_code == 400
        assert chat(gateway, "frank", "no-such-model").status_code == 404
        # free: 5 requests / 2 min and 100 tokens / min, then 429s
        statuses = [chat(gateway, "alice", "granite-8b").status_code for _ in range(6)]
        metrics = live(gateway)

    ok = {"model": "granite-8b", "tier": "enterprise", "gen_ai_operation_name": "chat"}
    assert count(metrics, f"{DURATION}_count", error_type="", **ok) == 3
    assert count(metrics, f"{DURATION}_count", error_type="bad_gateway", model="dead") == 1
    assert count(metrics, "maas_upstream_errors_total", model="dead", kind="bad_gateway") == 1
    assert count(metrics, f"{FIRST}_count", **ok) == 3  # JSON: the whole answer counts
    # Only the stream whose client asked for usage... and the one the gateway asked for itself.
    assert count(metrics, f"{PER_TOKEN}_count", **ok) == 2
    assert count(metrics, f"{TOKENS}_count", gen_ai_token_type="input", **ok) == 3
    assert count(metrics, f"{TOKENS}_count", gen_ai_token_type="output", **ok) == 3
    # alice's answers are timed, her 429s are not.
    assert 429 in statuses and set(statuses) <= {200, 429}
    assert count(metrics, f"{DURATION}_count", tier="free") == statuses.count(200)


def test_token_usage_histogram_holds_the_upstream_usage() -> None:
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        client = OpenAI(base_url=f"{gateway}/v1", api_key=secret("frank"), max_retries=0)
        answers = [
            client.chat.completions.create(
                model="granite-8b", messages=[{"role": "user", "content": f"question {i}"}]
            )
            for i in range(5)
        ]
        metrics = live(gateway)
    for kind, tokens in (
        ("input", [a.usage.prompt_tokens for a in answers if a.usage]),
        ("output", [a.usage.completion_tokens for a in answers if a.usage]),
    ):
        assert len(tokens) == 5
        assert count(metrics, f"{TOKENS}_sum", gen_ai_token_type=kind) == sum(tokens)
        sixteen = [
            v
            for (n, ls), v in metrics.items()
            if n == f"{TOKENS}_bucket"
            and dict(ls)["gen_ai_token_type"] == kind
            and float(dict(ls)["le"]) == 16
        ]
        assert sixteen == [sum(1 for t in tokens if t <= 16)]


async def _stall(body: object, writer: asyncio.StreamWriter) -> None:
    del body
    await asyncio.sleep(5)


async def _break_mid_stream(body: object, writer: asyncio.StreamWriter) -> None:
    del body
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
    event = b"data: " + orjson.dumps(chunk_payload("Hel", None, False)) + b"\n\n"
    writer.write(b"%x\r\n%s\r\n" % (len(event), event))  # then no last chunk
    await writer.drain()
    writer.transport.abort()  # the upstream dies mid-answer


def test_stalled_and_broken_upstreams_are_counted_by_kind() -> None:
    with fake_upstream(_stall) as stall, fake_upstream(_break_mid_stream) as broken:
        config = make_config(stall.url, extra_models={"broken": broken.url}, timeout_seconds=0.5)
        with running_gateway(config) as gateway:
            assert chat(gateway, "frank", "granite-8b").status_code == 504
            response = chat(gateway, "frank", "broken", stream=True)
            assert response.status_code == 200 and b"error" in response.content
            metrics = live(gateway)
    assert count(metrics, "maas_upstream_errors_total", model="granite-8b", kind="timeout") == 1
    assert count(metrics, "maas_upstream_errors_total", model="broken", kind="bad_gateway") == 1
    assert count(metrics, f"{DURATION}_count", model="granite-8b", error_type="timeout") == 1
    assert count(metrics, f"{DURATION}_count", model="broken", error_type="bad_gateway") == 1
    # A failed stream has no time to first token, although a token had arrived.
    assert count(metrics, f"{FIRST}_count") == 0
    # The timeout is what the gateway waited: at least the configured 0.5 s.
    assert count(metrics, f"{DURATION}_sum", model="granite-8b") >= 0.5


def test_a_stream_whose_client_walks_away_is_timed_to_its_upstream_end() -> None:
    with running_mock(300) as mock, running_gateway(make_config(mock.url)) as gateway:
        headers = {"Authorization": f"Bearer {secret('frank')}"}
        body = {
            "model": "granite-8b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            next(response.iter_bytes())  # the first event, then the client leaves
        deadline = time.monotonic() + 10
        while count(live(gateway), f"{DURATION}_count") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        metrics = live(gateway)
    assert count(metrics, f"{DURATION}_count", error_type="") == 1
    # The upstream took its 0.3 s before the first event and about as long again to finish.
    assert count(metrics, f"{DURATION}_sum") >= 0.5


def test_datastore_latency_counts_every_counter_store_call(redis: RedisServer) -> None:
    with running_mock() as mock:
        for storage in ("memory", redis.url):
            with running_gateway(make_config(mock.url, storage=storage)) as gateway:
                before = count(live(gateway), "datastore_latency_count")
                for _ in range(4):
                    assert chat(gateway, "frank", "granite-8b").status_code == 200
                metrics = live(gateway)
            calls = count(metrics, "datastore_latency_count") - before
            # Both policy checks in one call (the limiter's batched admit), the token report
            # in another: two each.
            # The store probe's pings (Redis, once a second) are not request calls: not counted.
            assert calls == 8
            assert count(metrics, "datastore_latency_bucket", le="+Inf") == count(
                metrics, "datastore_latency_count"
            )


def test_promtool_accepts_the_exposition_with_histograms() -> None:
    with (
        running_mock() as mock,
        running_gateway(
            make_config(mock.url, extra_models={"dead": f"http://127.0.0.1:{free_port()}/v1"})
        ) as gateway,
    ):
        chat(gateway, "frank", "granite-8b")
        chat(gateway, "dave", "granite-8b", stream=True, usage=True)
        with pytest.raises(APIStatusError):
            OpenAI(
                base_url=f"{gateway}/v1", api_key=secret("frank"), max_retries=0
            ).completions.create(model="dead", prompt="hi")
        scrape(gateway)
        text = scrape_text(gateway)
    assert "gen_ai_server_time_to_first_token_seconds_bucket{" in text
    assert 'gen_ai_operation_name="text_completion"' in text
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
    )
    assert check.returncode != 1, check.stderr.decode()  # 1 = unparsable; 3 = lint findings only
    findings = set((check.stdout + check.stderr).decode().strip().splitlines())
    assert findings <= {
        f'{name} counter metrics should have "_total" suffix' for name in LIMITADOR_COUNTERS
    }
