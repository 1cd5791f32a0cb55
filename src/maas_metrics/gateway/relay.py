"""The streamed (SSE) answer: relayed event by event, tokens reported when the stream completes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from maas_metrics.gateway import errors
from maas_metrics.gateway.metering import Usage
from maas_metrics.gateway.proxy import UpstreamStream
from maas_metrics.gateway.streaming import UsageCapture
from maas_metrics.ledger.trace import Trace

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
        trace: Trace | None = None,
    ) -> None:
        self._upstream = upstream
        self._trace = trace
        self._capture = capture
        self._finish = finish
        super().__init__(self._relay(), headers=headers, media_type="text/event-stream")

    async def _relay(self) -> AsyncIterator[bytes]:
        capture = self._capture
        trace = self._trace
        try:
            async for chunk in self._upstream.chunks():
                out = capture.feed(chunk)
                if out:
                    if trace is not None:
                        trace.first_chunk()
                    yield out
        except errors.GatewayError as error:
            # The upstream broke or stalled mid-stream: tell the client in-band, count no tokens.
            if trace is not None:
                trace.finish("upstream_error", error.status)
            yield b"data: " + errors.error_body(error.message, error.type, error.code) + b"\n\n"
            return
        rest = capture.flush()
        if rest:
            yield rest
        usage = capture.usage
        if usage is not None:
            await self._finish(usage)
            if trace is not None:
                trace.usage(
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.total_tokens,
                    usage.cached_tokens,
                )
        if trace is not None:
            trace.finish("ok" if usage is not None else "usage_missing", self.status_code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._upstream.close()
            if self._trace is not None:  # no-op when the relay already finished the trace
                self._trace.finish("client_disconnect", 499)
