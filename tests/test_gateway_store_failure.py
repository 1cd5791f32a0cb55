"""Redis stopped mid-run: the failure mode holds, the gauge shows it, nothing crashes, counting resumes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    RunningMock,
    Series,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
)
from tests.servers import RedisServer

PARTITIONED: Series = ("datastore_partitioned", frozenset())


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def chat(gateway: str, user: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        json={
            "model": "granite-8b",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
        headers={"Authorization": f"Bearer {secret(user)}"},
        timeout=10,
    )


def wait_for_gauge(gateway: str, value: float) -> None:
    """Poll /metrics (no traffic) until datastore_partitioned reads `value`."""
    deadline = time.monotonic() + 15
    while scrape(gateway)[PARTITIONED] != value:
        assert time.monotonic() < deadline, f"datastore_partitioned never became {value}"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_redis_outage_follows_failure_mode_and_recovers(
    mode: str, mock: RunningMock, redis: RedisServer
) -> None:
    with running_gateway(make_config(mock.url, storage=redis.url, on_failure=mode)) as gateway:
        assert chat(gateway, "dave").status_code == 200
        before = scrape(gateway)
        assert before[PARTITIONED] == 0

        redis.stop()
        replies = [chat(gateway, "dave") for _ in range(3)]
        during = scrape(gateway)
        assert during[PARTITIONED] == 1
        if mode == "deny":
            for reply in replies:
                assert reply.status_code == 503
                assert reply.json()["error"]["message"] == "rate limit store unavailable"
                assert reply.headers["Retry-After"] == "1"
            assert counters(during) == counters(before)
        else:
            assert [r.status_code for r in replies] == [200, 200, 200]
            used = sum(r.json()["usage"]["total_tokens"] for r in replies)
            grew = {
                key: during[key] - before[key]
                for key in (
                    usage_key("authorized_calls", REQUESTS_NS, "dave", "granite-8b"),
                    usage_key("authorized_hits", REQUESTS_NS, "dave", "granite-8b"),
                    usage_key("authorized_calls", TOKENS_NS, "dave", "granite-8b"),
                    usage_key("authorized_hits", TOKENS_NS, "dave", "granite-8b"),
                )
            }
            assert list(grew.values()) == [3, 3, 3, used]
        health = httpx.get(f"{gateway}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["store_reachable"] is False

        redis.start()  # empty: no persistence
        wait_for_gauge(gateway, 0)  # the background probe notices without any request
        assert httpx.get(f"{gateway}/healthz", timeout=10).json()["store_reachable"] is True

        # Counting resumes in the store: a fresh free user gets exactly its 5 requests again.
        api = openai.OpenAI(base_url=f"{gateway}/v1", api_key=secret("carol"), max_retries=0)
        for remaining in (4, 3, 2, 1, 0):
            raw = api.chat.completions.with_raw_response.create(
                model="llama-3-8b", messages=[{"role": "user", "content": "again"}], max_tokens=1
            )
            assert raw.headers["X-RateLimit-Remaining"] == str(remaining)
        with pytest.raises(openai.RateLimitError):
            api.chat.completions.create(
                model="llama-3-8b", messages=[{"role": "user", "content": "again"}], max_tokens=1
            )
        after = scrape(gateway)
        assert after[PARTITIONED] == 0
        assert after[usage_key("authorized_calls", REQUESTS_NS, "carol", "llama-3-8b")] == 5
        assert (
            after[
                usage_key(
                    "limited_calls", REQUESTS_NS, "carol", "llama-3-8b", limit_name="free-requests"
                )
            ]
            == 1
        )
