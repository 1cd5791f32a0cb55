"""Errors never reveal internals or echo client headers; /metrics is not on the API listener.

One gateway faces every failure it can answer: bad keys, bad bodies, unknown
paths (trailing slashes included), wrong methods, rate limits, and upstreams
that are down, close mid-answer, answer garbage, stall or present a TLS
certificate nobody trusts. Every request carries marker values in the
headers a client controls (`Host`, `Origin`, `X-Forwarded-Host`, ...). Every
error answer is collected, then checked at once: OpenAI-style JSON, no
redirect, no marker anywhere in a header or body, no internal address, port,
path or stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway_harness import (
    GatewayURL,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
)
from tests.hardening_upstreams import broken_upstream, make_private_ca
from tests.servers import free_port

MARKER = "zz-marker-7f3a"
CLIENT_HEADERS = {
    "Host": f"{MARKER}.example:4444",
    "Origin": f"https://{MARKER}.example",
    "Referer": f"https://{MARKER}.example/page",
    "X-Forwarded-Host": f"{MARKER}.example",
    "X-Forwarded-For": "203.0.113.77",
    "X-Request-Id": MARKER,
    "User-Agent": f"{MARKER}-agent",
}
FAILING = ("down", "close", "garbage", "cut", "stall", "untrusted-tls")


class Collected:
    """Every error response the gateway gave in this module, with what was asked."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, httpx.Response]] = []
        self.internal: set[str] = set()  # strings that would give an internal address away


@pytest.fixture(scope="module")
def collected() -> Collected:
    return Collected()


@pytest.fixture(scope="module")
def gateway(collected: Collected, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayURL]:
    ca = make_private_ca(tmp_path_factory.mktemp("ca"))
    with ExitStack() as stack:
        mock = stack.enter_context(running_mock())
        ports = {
            mode: stack.enter_context(broken_upstream(mode))
            for mode in ("close", "garbage", "cut", "stall")
        }
        ports["untrusted-tls"] = stack.enter_context(
            broken_upstream("close", tls=ca.server_context())
        )
        ports["down"] = free_port()
        upstreams = {
            f"{mode}-model": f"{'https' if mode == 'untrusted-tls' else 'http'}://127.0.0.1:{port}/v1"
            for mode, port in ports.items()
        }
        config = make_config(mock.url, extra_models=upstreams, timeout_seconds=1.0)
        gateway = stack.enter_context(running_gateway(config))
        mock_port = mock.url.split(":")[2].split("/")[0]
        api_port, operator_port = gateway.rsplit(":", 1)[1], gateway.operator.rsplit(":", 1)[1]
        collected.internal = {
            "127.0.0.1",
            "localhost",
            *(f":{p}" for p in (*ports.values(), mock_port, api_port, operator_port)),
            str(ca.ca_file.parent),
        }
        yield gateway


def ask(
    collected: Collected,
    gateway: str,
    method: str,
    path: str,
    *,
    user: str | None = "frank",
    body: Any = None,
    content: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(CLIENT_HEADERS)
    if user is not None:
        headers["Authorization"] = f"Bearer {secret(user)}"
    headers.update(extra or {})
    response = httpx.request(
        method,
        f"{gateway}{path}",
        headers=headers,
        content=content
        if content is not None
        else (orjson.dumps(body) if body is not None else None),
        timeout=15,
        follow_redirects=False,
    )
    collected.responses.append((f"{method} {path}", response))
    return response


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


# --- the failures, each asserting its own status -------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", FAILING)
def test_failing_upstreams_answer_502_or_504_without_their_address(
    gateway: GatewayURL, collected: Collected, mode: str, stream: bool
) -> None:
    before = counters(scrape(gateway))
    response = ask(
        collected,
        gateway,
        "POST",
        "/v1/chat/completions",
        body=chat(f"{mode}-model", stream=stream),
    )
    assert response.status_code == (504 if mode == "stall" else 502), response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    if mode == "untrusted-tls":
        assert "TLS" in error["message"]
    # The policy checks that admitted it stay counted; no tokens are (as with Limitador).
    after = counters(scrape(gateway))
    assert {
        k: v for k, v in after.items() if k[0] in ("maas_prompt_tokens", "maas_completion_tokens")
    } == {
        k: v for k, v in before.items() if k[0] in ("maas_prompt_tokens", "maas_completion_tokens")
    }


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions/",
        "/v1/models/",
        "/v1/completions/",
        "/healthz/",
        "/v1/",
        "//v1/models",
    ],
)
def test_a_trailing_slash_is_a_json_404_not_a_redirect(
    gateway: GatewayURL, collected: Collected, path: str
) -> None:
    method = "POST" if "completions" in path else "GET"
    response = ask(
        collected, gateway, method, path, body=chat("granite-8b") if method == "POST" else None
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] in ("not_found", "model_not_found")


def test_metrics_only_on_the_operator_listener(gateway: GatewayURL, collected: Collected) -> None:
    response = ask(collected, gateway, "GET", "/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    operator = httpx.get(f"{gateway.operator}/metrics", timeout=10)
    assert operator.status_code == 200
    assert "authorized_calls" in operator.text
    # /healthz answers on both (the kubelet may probe either port).
    assert httpx.get(f"{gateway}/healthz", timeout=10).json()["status"] == "ok"
    assert httpx.get(f"{gateway.operator}/healthz", timeout=10).json()["status"] == "ok"
    # The operator listener serves nothing of the API.
    assert httpx.get(f"{gateway.operator}/v1/models", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "user", "content", "status"),
    [
        ("POST", "/v1/chat/completions", None, b"{}", 401),
        ("POST", "/v1/chat/completions", "nobody", b"{}", 403),
        ("POST", "/v1/chat/completions", "frank", b"{not json", 400),
        (
            "POST",
            "/v1/chat/completions",
            "frank",
            b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}',
            404,
        ),
        ("POST", "/v1/chat/completions", "frank", b"x" * 2_000_000, 413),
        ("GET", "/v1/chat/completions", "frank", None, 405),
        ("GET", "/v1/models/no-such-model", "frank", None, 404),
        ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", "frank", None, 404),
        ("GET", "/../../etc/passwd", "frank", None, 404),
        ("GET", "/v1/files", "frank", None, 404),
        ("DELETE", "/healthz", "frank", None, 405),
    ],
)
def test_client_errors_are_openai_json(
    gateway: GatewayURL,
    collected: Collected,
    method: str,
    path: str,
    user: str | None,
    content: bytes | None,
    status: int,
) -> None:
    response = ask(collected, gateway, method, path, user=user, content=content)
    assert response.status_code == status, response.text


def test_rate_limited_answers_show_no_internals(gateway: GatewayURL, collected: Collected) -> None:
    statuses = [
        ask(
            collected,
            gateway,
            "POST",
            "/v1/chat/completions",
            user="carol",
            body=chat("granite-8b"),
        ).status_code
        for _ in range(6)
    ]
    # 5 requests / 2 min, 100 tokens / min: the token policy answers 429 first, then both do.
    assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) == {200, 429}


def test_no_error_reveals_internals_or_echoes_client_headers(
    gateway: GatewayURL, collected: Collected
) -> None:
    """Runs last in this module: checks every answer collected above."""
    errors = [(what, r) for what, r in collected.responses if r.status_code >= 400]
    assert len(errors) >= 30, "the tests above must have run first"
    forbidden = [
        MARKER,
        *collected.internal,
        "Traceback",
        'File "',
        "site-packages",
        ".py",
        "/src/",
    ]
    for what, response in errors:
        body = response.content.decode("utf-8", errors="replace")
        payload = orjson.loads(response.content)
        assert set(payload) == {"error"}, (what, body)
        assert {"message", "type", "param", "code"} <= set(payload["error"]), (what, body)
        assert response.headers["content-type"].startswith("application/json"), what
        assert "location" not in response.headers, what
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        for text in forbidden:
            assert text not in body, (what, text, body)
            assert text not in headers, (what, text, headers)
        assert not re.search(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", body + headers), (what, body, headers)
