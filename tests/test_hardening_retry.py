"""429s the official `openai` SDK handles well, at its default settings.

The SDK sleeps through any `Retry-After` of up to two minutes and retries
twice, so a free user whose window resets in minutes would see a call hang
and then fail (or succeed much later). A 429 due later than
`gateway.retry_hint_max_seconds` carries `x-should-retry: false`: the SDK
raises `RateLimitError` at once. A short wait is still slept and retried.
The gateway's own `limited_calls` counter says how many attempts the SDK
made, so no test measures time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from maas_metrics.config import Config, hash_key, parse_config
from tests.gateway_harness import (
    REQUESTS_NS,
    GatewayURL,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    usage_key,
)

QUICK_KEY = "sk-test-quick"  # a user of the `burst` tier: 1 request per 2 s


def retry_config(mock_url: str) -> Config:
    data: dict[str, Any] = make_config(mock_url).model_dump(mode="json")
    free = data["tiers"][0]
    # 90 s: within the 2 minutes the SDK would otherwise sleep through, far above the hint's 10 s.
    free["request_limit"] = {"max": 2, "window_seconds": 90}
    free["token_limit"] = None
    data["tiers"].append(
        {
            "name": "burst",
            "level": 5,
            "groups": ["burst-users"],
            "price_per_hit": 0.001,
            "request_limit": {"max": 1, "window_seconds": 2},
        }
    )
    data["api_keys"].append(
        {"user": "quick", "groups": ["burst-users"], "sha256": hash_key(QUICK_KEY)}
    )
    return parse_config(data)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayURL]:
    with running_mock() as mock, running_gateway(retry_config(mock.url)) as url:
        yield url


def limited(gateway: GatewayURL, user: str) -> float:
    """Rejected attempts of `user`, whatever the limit's name."""
    metrics = scrape(gateway)
    return sum(v for k, v in metrics.items() if k[0] == "limited_calls" and ("user", user) in k[1])


def authorized(gateway: GatewayURL, user: str, tier: str) -> float:
    key = usage_key("authorized_calls", REQUESTS_NS, user, "granite-8b", tier=tier)
    return scrape(gateway).get(key, 0.0)


def ask(client: openai.OpenAI) -> str:
    answer = client.chat.completions.create(
        model="granite-8b", messages=[{"role": "user", "content": "hi"}]
    )
    return answer.choices[0].message.content or ""


def test_a_far_reset_raises_rate_limit_error_at_once(gateway: GatewayURL) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-test-alice")  # default settings
    assert client.max_retries == 2
    ask(client)
    ask(client)
    with pytest.raises(openai.RateLimitError) as raised:
        ask(client)
    headers = raised.value.response.headers
    assert 10 < int(headers["retry-after"]) <= 90  # the SDK alone would sleep and retry
    assert headers["x-should-retry"] == "false"
    assert "Retry in" in raised.value.message
    # One attempt only: the SDK did not retry (each attempt would be one more limited call).
    assert limited(gateway, "alice") == 1
    assert authorized(gateway, "alice", "free") == 2


def test_a_short_wait_is_still_retried_and_succeeds(gateway: GatewayURL) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=QUICK_KEY)
    ask(client)
    # At once again: 429 with Retry-After <= 2 s and no hint; the SDK sleeps, retries, succeeds.
    assert ask(client)
    assert limited(gateway, "quick") >= 1
    assert authorized(gateway, "quick", "burst") == 2


def test_short_waits_carry_no_hint(gateway: GatewayURL) -> None:
    auth = {"Authorization": f"Bearer {QUICK_KEY}"}
    body = {"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]}
    rejected = None
    for _ in range(3):  # 1 per 2 s: of three calls in a row, one is rejected
        response = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=auth, timeout=10)
        if response.status_code == 429:
            rejected = response
            break
    assert rejected is not None
    assert 1 <= int(rejected.headers["retry-after"]) <= 2
    assert "x-should-retry" not in rejected.headers
    assert rejected.json()["error"]["code"] == "rate_limit_exceeded"
