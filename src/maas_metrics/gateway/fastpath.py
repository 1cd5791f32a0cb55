"""The inference routes served straight from the ASGI entry, past Starlette's middleware stack.

Starlette wraps every request in `ServerErrorMiddleware`, `ExceptionMiddleware`,
the router's matching and `request_response`; the profile put about a tenth
of the gateway's samples there. `benchmarks/bench_gateway_fastpath.py`
measured +10 to +30 % req/s for the two hot routes (figures in
`benchmarks/results/scale-rest.md`), so they are served here, with the same
error handling Starlette would apply: a `GatewayError` goes through the
app's own handler (429 hints included), anything else through its 500
handler, also when it is raised before the response started. Every other
request (other paths or methods, lifespan) goes through Starlette unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from maas_metrics.gateway import errors

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class FastPathStarlette(Starlette):
    """Starlette whose `POST` routes in `hot` skip its middleware stack and router."""

    def __init__(self, *, hot: dict[str, Handler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot = hot
        handlers: dict[Any, ErrorHandler] = kwargs["exception_handlers"]
        self._gateway_error = handlers[errors.GatewayError]
        self._server_error = handlers[Exception]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._hot.get(scope["path"])
            if handler is not None:
                await self._serve(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        request = Request(scope, receive, send)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            try:
                response = await handler(request)
            except errors.GatewayError as exc:
                response = await self._gateway_error(request, exc)
            await response(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise  # as Starlette: the server closes the connection and logs it
            response = await self._server_error(request, exc)
            await response(scope, receive, send)
