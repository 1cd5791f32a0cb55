"""The streamed (SSE) answer: an upstream reader that owns accounting, and a client side that may die.

Three concerns kept apart, the Starlette way:

- `_read` (a `Background` task) owns the upstream: it reads every event,
  feeds the `UsageCapture`, hands relayable bytes to the client side while
  one is attached, and when the upstream ends reports the usage (`finish`)
  and closes the connection. A client that walks away (stops reading at
  `finish_reason`, closes the socket) does not cancel it: the reader keeps
  reading, at most `drain_seconds` longer, to obtain `usage`.
- `__call__` is the client side: it sends what the reader hands over.
- `_watch` notices `http.disconnect` and detaches the client side.

HTTP/1.0 clients cannot take chunked transfer encoding (and uvicorn chunks
every response without a length), so they get the whole stream at once
with a Content-Length.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from maas_metrics.gateway import errors
from maas_metrics.gateway.background import Background
from maas_metrics.gateway.proxy import UpstreamStream
from maas_metrics.gateway.streaming import EventTooLarge, UsageCapture
from maas_metrics.gateway.timing import RequestTimer, has_content

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
QUEUE_EVENTS = 32  # relayable pieces waiting for a slow client before the reader waits too


@dataclass(frozen=True, slots=True)
class _End:
    error: errors.GatewayError | None


_GONE = object()  # the client went away

Finish = Callable[[UsageCapture, errors.GatewayError | None], Awaitable[None]]
"""Accounting when the upstream is done: (capture, error), error None when it ended normally."""


def _error_event(error: errors.GatewayError) -> bytes:
    return b"data: " + errors.error_body(error.message, error.type, error.code) + b"\n\n"


class RelayResponse(Response):
    """Streams an open upstream response to the client; the accounting never depends on the client."""

    def __init__(
        self,
        upstream: UpstreamStream,
        capture: UsageCapture,
        finish: Finish,
        headers: dict[str, str],
        background: Background,
        drain_seconds: float,
        on_too_large: Callable[[], None],
        clock: RequestTimer,
    ) -> None:
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers(headers)
        self._upstream = upstream
        self._capture = capture
        self._finish = finish
        self._tasks = background
        self._drain_seconds = drain_seconds
        self._on_too_large = on_too_large
        self._clock = clock
        self._queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_EVENTS)
        self._detached = False
        self._drain_timer: asyncio.Timeout | None = None
        self._ended = False
        self.client_left = False  # the client went away before the upstream ended (for the ledger)
        self.on_first_piece: Callable[[], None] | None = None  # time to first token (the ledger)

    # --- the upstream side (owns the connection and the accounting) -----------------

    async def _read(self) -> None:
        capture = self._capture
        error: errors.GatewayError | None = None
        try:
            async with asyncio.timeout(None) as timer:
                self._drain_timer = timer
                if self._detached:  # gone before the reader started
                    self._start_drain_clock()
                try:
                    clock = self._clock
                    async for chunk in self._upstream.chunks():
                        out = capture.feed(chunk)
                        if out:
                            if self.on_first_piece is not None:
                                self.on_first_piece()
                                self.on_first_piece = None
                            if clock.waiting_for_first_token and has_content(out):
                                clock.first_token()
                            await self._hand_over(out)
                    rest = capture.flush()
                    if rest:
                        await self._hand_over(rest)
                except EventTooLarge:
                    self._on_too_large()
                    error = errors.upstream_unreachable("an event of the stream is too large")
                except errors.GatewayError as failure:
                    error = failure
        except TimeoutError:  # the client left and the upstream did not finish in time
            error = errors.upstream_timeout(self._drain_seconds)
        finally:
            self._drain_timer = None
            self._upstream.close()
        self._ended = True
        self._hand_over_nowait(_End(error))
        await self._finish(capture, error)

    async def _hand_over(self, piece: bytes) -> None:
        if not self._detached:
            await self._queue.put(piece)

    def _hand_over_nowait(self, item: object) -> None:
        if self._detached:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:  # the client side is busy sending: it takes the end next
            self._tasks.spawn(self._queue.put(item))

    def _start_drain_clock(self) -> None:
        timer = self._drain_timer
        if timer is not None and timer.when() is None:
            timer.reschedule(asyncio.get_running_loop().time() + self._drain_seconds)

    # --- the client side --------------------------------------------------------------

    def _detach(self) -> None:
        """The client is gone: stop handing it bytes, unblock the reader, bound its drain."""
        if self._detached:
            return
        self._detached = True
        # A client that closes once it has read `[DONE]` has the whole answer: it did not leave.
        self.client_left = not self._ended and not self._capture.done
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_GONE)
        self._start_drain_clock()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._detach()
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._tasks.spawn(self._read())
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            if scope.get("http_version") == "1.0":
                await self._send_whole(send)
            else:
                await self._send_stream(send)
        finally:
            self._detach()
            watcher.cancel()

    async def _send_stream(self, send: Send) -> None:
        queue = self._queue
        first = await queue.get()
        if first is _GONE:
            return
        if isinstance(first, _End) and first.error is not None:
            # Nothing was sent yet: the failure can still be the response status.
            await self._send_error(send, first.error)
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        item = first
        while True:
            if item is _GONE:
                return
            if isinstance(item, _End):
                body = b"" if item.error is None else _error_event(item.error)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            assert isinstance(item, bytes)
            await send({"type": "http.response.body", "body": item, "more_body": True})
            item = await queue.get()

    async def _send_whole(self, send: Send) -> None:
        pieces: list[bytes] = []
        while True:
            item = await self._queue.get()
            if item is _GONE:
                return
            if isinstance(item, _End):
                if item.error is not None:
                    if not pieces:
                        await self._send_error(send, item.error)
                        return
                    pieces.append(_error_event(item.error))
                break
            assert isinstance(item, bytes)
            pieces.append(item)
        body = b"".join(pieces)
        headers = [*self.raw_headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _send_error(send: Send, error: errors.GatewayError) -> None:
        body = errors.error_body(error.message, error.type, error.code)
        headers = [(b"content-type", errors.JSON.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
