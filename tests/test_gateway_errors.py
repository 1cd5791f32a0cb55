"""Every error the gateway returns: its status, its OpenAI-style JSON body, and untouched counters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    RunningMock,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    scrape_text,
    secret,
    usage_key,
)
from tests.servers import free_port

MAX_BODY = 4096
TIMEOUT_SECONDS = 0.5


@pytest.fixture(scope="module")
def mocks() -> Iterator[tuple[RunningMock, RunningMock]]:
    with running_mock() as fast, running_mock(latency_ms=5000) as slow:
        yield fast, slow


@pytest.fixture
def gateway(mocks: tuple[RunningMock, RunningMock]) -> Iterator[str]:
    fast, slow = mocks
    config = make_config(
        fast.url,
        max_body_bytes=MAX_BODY,
        timeout_seconds=TIMEOUT_SECONDS,
        extra_models={
            "broken-model": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
            "slow-model": slow.url,
        },
    )
    with running_gateway(config) as url:
        yield url


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(user)}"}


def chat_body(model: str = "granite-8b", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        **extra,
    }


def assert_error(response: httpx.Response, status: int, code: str | int | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] == code
    return dict(error)


def big_chunks() -> Iterator[bytes]:
    yield b'{"model": "granite-8b", "messages": [{"role": "user", "content": "'
    for _ in range(10):
        yield b"x" * 1000
    yield b'"}]}'


# (name, method, path, headers, request kwargs, status, code)
PRE_POLICY_CASES: list[tuple[str, str, str, dict[str, str], dict[str, Any], int, str | None]] = [
    ("no key", "POST", "/v1/chat/completions", {}, {"json": chat_body()}, 401, "invalid_api_key"),
    (
        "bad key",
        "POST",
        "/v1/chat/completions",
        {"Authorization": "Bearer sk-nope"},
        {"json": chat_body()},
        401,
        "invalid_api_key",
    ),
    (
        "not bearer",
        "POST",
        "/v1/completions",
        {"Authorization": f"Basic {secret('alice')}"},
        {"json": chat_body()},
        401,
        "invalid_api_key",
    ),
    (
        "no key, huge body",
        "POST",
        "/v1/chat/completions",
        {},
        {"content": b"x" * (MAX_BODY * 2)},
        401,
        "invalid_api_key",
    ),
    ("no key for models", "GET", "/v1/models", {}, {}, 401, "invalid_api_key"),
    (
        "tierless user",
        "POST",
        "/v1/chat/completions",
        auth("nobody"),
        {"json": chat_body()},
        403,
        "no_tier",
    ),
    (
        "malformed json",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"content": b'{"model": '},
        400,
        "invalid_json",
    ),
    (
        "json array",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"json": [chat_body()]},
        400,
        "invalid_json",
    ),
    (
        "no model",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"json": {"messages": [{"role": "user", "content": "hi"}]}},
        400,
        "missing_model",
    ),
    (
        "model not a string",
        "POST",
        "/v1/completions",
        auth("alice"),
        {"json": {"model": 7, "prompt": "hi"}},
        400,
        "missing_model",
    ),
    (
        "stream not a boolean",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"json": chat_body(stream="yes")},
        400,
        "invalid_stream",
    ),
    (
        "unknown model",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"json": chat_body("gpt-404")},
        404,
        "model_not_found",
    ),
    (
        "unknown path",
        "POST",
        "/v1/embeddings",
        auth("alice"),
        {"json": chat_body()},
        404,
        "not_found",
    ),
    ("wrong method", "GET", "/v1/chat/completions", auth("alice"), {}, 405, "method_not_allowed"),
    (
        "too large by length",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"content": b" " * (MAX_BODY + 1)},
        413,
        "request_too_large",
    ),
    (
        "too large, chunked",
        "POST",
        "/v1/chat/completions",
        auth("alice"),
        {"content": big_chunks()},
        413,
        "request_too_large",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "kwargs", "status", "code"),
    [case[1:] for case in PRE_POLICY_CASES],
    ids=[case[0] for case in PRE_POLICY_CASES],
)
def test_errors_before_the_policies_change_no_metric(
    gateway: str,
    method: str,
    path: str,
    headers: dict[str, str],
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    assert (
        httpx.post(
            f"{gateway}/v1/completions",
            json={"model": "granite-8b", "prompt": "warm"},
            headers=auth("dave"),
            timeout=10,
        ).status_code
        == 200
    )
    scrape_text(gateway)  # new series are born at 0: read them once so the next shows counts
    before = scrape_text(gateway)
    response = httpx.request(method, f"{gateway}{path}", headers=headers, timeout=10, **kwargs)
    assert_error(response, status, code)
    assert scrape_text(gateway) == before  # byte-identical exposition


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("broken-model", 502, "bad_gateway"), ("slow-model", 504, "upstream_timeout")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failure_counts_no_tokens(
    gateway: str, model: str, status: int, code: str, stream: bool
) -> None:
    before = scrape(gateway)
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        json=chat_body(model, stream=stream),
        headers=auth("frank"),
        timeout=10,
    )
    assert_error(response, status, code)
    after = scrape(gateway)
    changed = {
        k: after[k] - before.get(k, 0) for k in counters(after) if after[k] != before.get(k, 0)
    }
    # As with Limitador, the checks that admitted the request stay counted; no token is.
    assert changed == {
        usage_key("authorized_calls", REQUESTS_NS, "frank", model): 1,
        usage_key("authorized_hits", REQUESTS_NS, "frank", model): 1,
        usage_key("authorized_calls", TOKENS_NS, "frank", model): 1,
    }


def test_upstream_error_status_is_passed_through(gateway: str) -> None:
    # The mock rejects a chat request without messages: its 400 reaches the client as JSON.
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": "granite-8b"},
        headers=auth("frank"),
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    metrics = scrape(gateway)
    assert usage_key("authorized_hits", TOKENS_NS, "frank", "granite-8b") not in {
        k for k, v in metrics.items() if v
    }


def test_429_carries_retry_after_and_rate_limit_headers(gateway: str) -> None:
    for remaining in (4, 3, 2, 1, 0):
        ok = httpx.post(
            f"{gateway}/v1/chat/completions", json=chat_body(), headers=auth("alice"), timeout=10
        )
        assert ok.status_code == 200
        assert ok.headers["X-RateLimit-Limit"] == "5"
        assert ok.headers["X-RateLimit-Remaining"] == str(remaining)
        assert 1 <= int(ok.headers["X-RateLimit-Reset"]) <= 120
    before = scrape(gateway)
    limited = httpx.post(
        f"{gateway}/v1/chat/completions", json=chat_body(), headers=auth("alice"), timeout=10
    )
    error = assert_error(limited, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 120
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Reset"] == str(retry_after)
    after = scrape(gateway)
    key = usage_key("limited_calls", REQUESTS_NS, "alice", "granite-8b", limit_name="free-requests")
    assert after[key] - before.get(key, 0) == 1

    # The token policy's 429: bob's first request overshoots 100 tokens, the next is refused.
    big = {"model": "mistral-7b", "prompt": "tokens " * 60, "max_tokens": 1}
    first = httpx.post(f"{gateway}/v1/completions", json=big, headers=auth("bob"), timeout=10)
    assert first.json()["usage"]["total_tokens"] >= 100
    refused = httpx.post(f"{gateway}/v1/completions", json=big, headers=auth("bob"), timeout=10)
    error = assert_error(refused, 429, "rate_limit_exceeded")
    assert error["type"] == "tokens"
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
