"""The inference fast path answers every error as the Starlette path does.

`FastPathStarlette` is served by a real uvicorn (the gateway's own guarded
config) with hot routes that fail in each way a handler can: a
`GatewayError` (429 with the SDK hint), an unexpected exception, a response
that fails before it starts and one that fails after. The same handlers
mounted as ordinary Starlette routes are the reference: status, headers
that matter and body must agree.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from maas_metrics.config import ClientBounds
from maas_metrics.gateway import errors
from maas_metrics.gateway.app import _exception_handlers
from maas_metrics.gateway.fastpath import FastPathStarlette
from maas_metrics.gateway.guard import GuardedConfig
from tests.gateway_harness import LoopThread, make_config, running_gateway, running_mock, secret
from tests.servers import free_port


class _Settings:
    retry_hint_max_seconds = 10.0


class _Config:
    gateway = _Settings()


class _Gateway:
    config = _Config()


async def limited(request: Request) -> Response:
    await request.body()
    raise errors.GatewayError(
        429, "Rate limit exceeded.", code="rate_limited", headers={"Retry-After": "60"}
    )


async def broken(request: Request) -> Response:
    raise RuntimeError("boom at 10.0.0.7")


async def fails_before_start(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        raise RuntimeError("no first chunk")
        yield b""  # pragma: no cover

    class Early(StreamingResponse):
        async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
            raise RuntimeError("before start")

    return Early(body())


async def fine(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


HANDLERS = {"/limited": limited, "/broken": broken, "/early": fails_before_start, "/fine": fine}


def make_app(fast: bool) -> Starlette:
    handlers = _exception_handlers(_Gateway())  # type: ignore[arg-type]
    routes = [Route(path, handler, methods=["POST"]) for path, handler in HANDLERS.items()]
    if fast:
        app: Starlette = FastPathStarlette(
            hot=dict(HANDLERS), routes=routes, exception_handlers=handlers
        )
    else:
        app = Starlette(routes=routes, exception_handlers=handlers)
    app.router.redirect_slashes = False
    return app


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    port = free_port()
    config = GuardedConfig(
        app, ClientBounds(), host="127.0.0.1", port=port, lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    thread = LoopThread()
    serving = thread.submit(server.serve())
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        serving.result(timeout=15)
        thread.close()


def answers(base: str) -> list[tuple[int, str | None, bytes]]:
    """Each request on its own connection: Starlette closes one after a 500 (it re-raises)."""
    out = []
    requests = [("POST", p) for p in HANDLERS] + [("GET", "/fine"), ("POST", "/nowhere")]
    for method, path in requests:
        response = httpx.request(method, base + path, content=b"payload", timeout=10)
        out.append((response.status_code, response.headers.get("x-should-retry"), response.content))
    return out


def test_fast_path_answers_as_the_starlette_path() -> None:
    with serve(make_app(fast=False)) as base:
        reference = answers(base)
    with serve(make_app(fast=True)) as base:
        fast = answers(base)
    assert fast == reference
    statuses = [status for status, _, _ in fast]
    assert statuses == [429, 500, 500, 200, 405, 404]
    assert fast[0][1] == "false"  # the SDK hint of a long 429
    assert b"10.0.0.7" not in fast[1][2] and b"internal_error" in fast[1][2]
    assert fast[3][2] == b"payload"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_gateway_serves_inference_through_the_fast_path(path: str) -> None:
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        body = (
            {"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]}
            if "chat" in path
            else {"model": "granite-8b", "prompt": "hi"}
        )
        ok = httpx.post(
            f"{gateway}{path}",
            json=body,
            headers={"Authorization": f"Bearer {secret('dave')}"},
            timeout=10,
        )
        bad = httpx.post(
            f"{gateway}{path}",
            content=b"{",
            headers={"Authorization": f"Bearer {secret('dave')}"},
            timeout=10,
        )
        anonymous = httpx.post(f"{gateway}{path}", json=body, timeout=10)
        wrong_method = httpx.get(f"{gateway}{path}", timeout=10)
    assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] > 0
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert anonymous.status_code == 401
    assert (
        wrong_method.status_code == 405
        and wrong_method.json()["error"]["code"] == "method_not_allowed"
    )
