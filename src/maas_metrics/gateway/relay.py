"""The streamed (SSE) answer: relayed event by event, tokens reported when the stream completes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from maas_metrics.gateway import errors
from maas_metrics.gateway.metering import Usage
from maas_metrics.gateway.proxy import UpstreamStream
from maas_metrics.gateway.streaming import UsageCapture

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class RelayResponse(StreamingResponse):
    """Streams an open upstream response to the client and always closes the upstream.

    Tokens are reported (`finish`) only when the upstream stream ended normally
    and carried usage. A client that disconnects cancels the relay (Starlette
    watches for `http.disconnect`); the upstream connection is then dropped
    and nothing is counted beyond the policy checks that admitted the request.
    """

    def __init__(
        self,
        upstream: UpstreamStream,
        capture: UsageCapture,
        finish: Callable[[Usage], Awaitable[None]],
        headers: dict[str, str],
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._upstream = upstream
        self._capture = capture
        self._finish = finish
        self._release = release  # gives back a token reservation `finish` did not commit
        super().__init__(self._relay(), headers=headers, media_type="text/event-stream")

    async def _relay(self) -> AsyncIterator[bytes]:
        capture = self._capture
        try:
            async for chunk in self._upstream.chunks():
                out = capture.feed(chunk)
                if out:
                    yield out
        except errors.GatewayError as error:
            # The upstream broke or stalled mid-stream: tell the client in-band, count no tokens.
            yield b"data: " + errors.error_body(error.message, error.type, error.code) + b"\n\n"
            return
        rest = capture.flush()
        if rest:
            yield rest
        if capture.usage is not None:
            await self._finish(capture.usage)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._upstream.close()
            if self._release is not None:
                await asyncio.shield(self._release())
