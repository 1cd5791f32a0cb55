"""A deadline on every phase of a connection the client controls, and a cap on connections.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`):
a client that connects and sends nothing, sends its headers a byte at a
time, announces `Content-Length: 100` and sends 2 bytes, or stops reading
the answer, holds a connection (and a file descriptor) for ever. This
subclass of uvicorn's httptools protocol adds, per connection:

- a header deadline, from connect (or the first byte of a keep-alive
  request) until the header block is complete, and a header size cap;
- a body deadline, from the end of the headers until the body is complete;
- a send deadline while the client does not read what it is sent;
- a cap on open connections per listener: over it, a 503 and a close.

Expired requests are answered `408` as OpenAI-style JSON when nothing has
been answered yet; protocol errors get a JSON `400` instead of uvicorn's
plain text. The application sees a client disconnect, so no counter moves.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import uvicorn
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from maas_metrics.config import ClientBounds
from maas_metrics.gateway import errors

#: How long a connection over the cap may linger after its 503, so the client reads it (no RST).
REJECT_LINGER_SECONDS = 1.0


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a header block over the limit."""


class GuardedConfig(uvicorn.Config):
    """uvicorn's config plus the bounds every connection of this listener gets."""

    def __init__(self, app: Any, bounds: ClientBounds, **kwargs: Any) -> None:
        super().__init__(
            app,
            http=GuardedProtocol,
            ws="none",
            timeout_keep_alive=max(1, round(bounds.keep_alive_timeout_seconds)),
            **kwargs,
        )
        self.bounds = bounds


def raw_response(
    status: int, message: str, code: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with an OpenAI-style error body."""
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    body = errors.error_body(message, type_, code)
    lines = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
    ]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join([*lines, b"\r\n", body])


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body/send deadlines and a connection cap."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, GuardedConfig)
        self.bounds = config.bounds
        self._deadline: TimerHandle | None = None
        self._send_deadline: TimerHandle | None = None
        self._in_headers = True  # reading a header block (or waiting for the first one)
        self._request_begun = False  # a byte of the current request has arrived
        self._wire_bytes = 0  # bytes received while the current header block is incomplete
        self._chunk = 0  # size of the chunk being parsed
        self._phase = ""  # what the armed deadline bounds: "headers", "body" or nothing
        self._oversized = False
        self._rejected = False
        self._running: RequestResponseCycle | None = None

    # --- connection life cycle ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.bounds.max_connections:
            self._reject(transport)
            return
        super().connection_made(transport)
        self._arm(self.bounds.header_timeout_seconds, "headers")

    def _reject(self, transport: asyncio.Transport) -> None:
        """Over the cap: answer 503 at once, stop writing, and close after a short linger."""
        self._rejected = True
        self.transport = transport
        transport.write(
            raw_response(
                503,
                "Too many open connections; retry shortly.",
                "too_many_connections",
                ((b"retry-after", b"1"),),
            )
        )
        if transport.can_write_eof():
            transport.write_eof()
        self._deadline = self.loop.call_later(REJECT_LINGER_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_send()
        if self._rejected:
            return
        super().connection_lost(exc)

    # --- reading -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a request still incomplete after this chunk gets its phase's deadline.

        A request that arrives whole in one read (the usual case) never arms a
        timer: deadlines cost only the requests that are actually slow.
        """
        if self._rejected:
            return  # discarded while the 503 lingers
        self._chunk = len(data)
        super().data_received(data)
        if not self._request_begun or self.transport.is_closing():
            return
        if self._in_headers:
            # httptools buffers a header line until it ends: bound what it may buffer.
            self._wire_bytes += len(data)
            if self._wire_bytes > self.bounds.max_header_bytes:
                self._oversized = True
                self.send_400_response("")
            elif self._phase != "headers":
                self._arm(self.bounds.header_timeout_seconds, "headers")
        elif self._phase != "body":
            self._arm(self.bounds.body_timeout_seconds, "body")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._request_begun = True
        self._wire_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        limit = self.bounds.max_header_bytes
        # Only a block that came in more bytes than the limit can be over it: count it then.
        if self._wire_bytes + self._chunk > limit and self._header_size() > limit:
            self._oversized = True
            raise HeadersTooLarge  # stops the parser; uvicorn then calls send_400_response
        super().on_headers_complete()

    def _header_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        self._disarm()
        self._request_begun = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Invalid HTTP: the JSON error every other failure gets, never uvicorn's plain text."""
        del msg
        if self._oversized:
            self._answer_and_close(431, "Request headers too large.", "headers_too_large")
        else:
            self._answer_and_close(400, "Invalid HTTP request.", "invalid_http_request")

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle  # the request being answered (self.cycle is the latest parsed)
        super()._start_asgi_task(cycle, app)

    # --- writing -------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.bounds.body_timeout_seconds, self._send_expired
            )

    def resume_writing(self) -> None:
        self._disarm_send()
        super().resume_writing()

    def _send_expired(self) -> None:
        """The client stopped reading what it is sent: drop it (the app sees a disconnect).

        `abort`, not `close`: close would wait for the unread answer to be sent.
        """
        self._send_deadline = None
        # Every request of this connection, running or queued behind it (pipelining), ends
        # as a client disconnect now: nothing writes to the transport once it is aborted.
        cycles = [self._running, self.cycle, *(cycle for cycle, _ in self.pipeline)]
        self.pipeline.clear()
        for cycle in cycles:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self.flow.resume_writing()  # wakes a send waiting for the client to read
        self.transport.abort()

    # --- deadlines -----------------------------------------------------------------------

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)
        self._phase = phase

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = ""

    def _disarm_send(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self._phase = ""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if answering or not self._request_begun:
            self.transport.close()  # already answering, or an idle connection: nothing to say
            return
        self._answer_and_close(408, "The request was not received in time.", "request_timeout")

    def _answer_and_close(self, status: int, message: str, code: str) -> None:
        """Answer with a JSON error and close; a running request sees a client disconnect."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(raw_response(status, message, code))
        self.transport.close()
