"""The mock model's HTTP/1.1 side: one `asyncio.Protocol` per connection on `httptools`.

Keep-alive, pipelining (answers in order), Content-Length and chunked request
bodies, `Expect: 100-continue`, SSE with `Transfer-Encoding: chunked`, and
flow control both ways; what to answer comes from `mock_routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final, cast

import httptools

from maas_metrics.simulate.mock_routes import Reply, Request, Routes, error_reply

MAX_BODY_BYTES: Final = 16 * 1024 * 1024
MAX_QUEUED: Final = 64  # pipelined requests waiting per connection before reading pauses

_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
}


@dataclass(slots=True)
class _Job:
    """A request waiting for its turn on its connection; `reply` is computed when known."""

    request: Request
    reply: Reply | None = None


_CLOSING_REQUEST: Final = Request(b"", b"", b"", keep_alive=False, http_10=False)


class ServerState:
    """What every connection of one server shares: routes, latency, the Date clock, the open set."""

    def __init__(self, latency_ms: float, models: tuple[str, ...]) -> None:
        self.latency = max(0.0, latency_ms) / 1000.0
        self.routes = Routes(models)
        self.connections: set[Connection] = set()
        self.date = b""
        self._date_timer: asyncio.TimerHandle | None = None

    def start_clock(self) -> None:
        """Refresh the `Date` header once a second instead of formatting it per response."""
        self.date = formatdate(usegmt=True).encode()
        self._date_timer = asyncio.get_running_loop().call_later(1.0, self.start_clock)

    def stop_clock(self) -> None:
        if self._date_timer is not None:
            self._date_timer.cancel()

    def reply(self, request: Request) -> Reply:
        return self.routes.reply(request)


class Connection(asyncio.Protocol):
    """One client connection: parses requests as they arrive and answers them in order.

    A request that needs no waiting is answered inside `data_received` (the fast
    path); otherwise requests queue up as `_Job`s that one task answers in order.
    """

    def __init__(self, app: ServerState) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.expect_continue = False
        self.pending: deque[_Job] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.broken = False  # a malformed request was seen: answer what is queued, then close
        self.queue_full = False  # reading paused until the queue drains
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()

    # --- transport callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        self.writable.set()
        if self.worker is not None:
            self.worker.cancel()

    def pause_writing(self) -> None:
        # Stop reading too: a client that pipelines without reading cannot grow our buffers.
        self.writable.clear()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        if self.transport is not None and not self.closed and not self.queue_full:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._answer_and_close(error_reply(400, "protocol upgrades are not supported"))
        except httptools.HttpParserError as error:
            self._answer_and_close(error_reply(400, f"malformed HTTP request: {error}"))

    # --- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.body_size = 0
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        # Only when nothing is queued: a 100 must not overtake earlier responses.
        if self.expect_continue and self.worker is None and not self.pending and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size <= MAX_BODY_BYTES:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closed or self.broken:
            return
        if self.body_size > MAX_BODY_BYTES:
            self._answer_and_close(
                error_reply(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            )
            return
        request = Request(
            method=self.parser.get_method(),
            path=self.url.split(b"?", 1)[0],
            body=b"".join(self.body),
            keep_alive=self.parser.should_keep_alive(),
            http_10=self.parser.get_http_version() == "1.0",
        )
        if self.worker is None and not self.pending:
            reply = self.app.reply(request)
            if reply.events is None and not (reply.waits and self.app.latency):
                self._write_whole(reply, request.keep_alive)  # the fast path: no task, no wait
                return
            self._enqueue(_Job(request, reply))
        else:
            self._enqueue(_Job(request))

    # --- writing ----------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        self.pending.append(job)
        if len(self.pending) >= MAX_QUEUED and not self.queue_full and self.transport is not None:
            self.queue_full = True  # a client pipelining faster than we answer must wait
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def _answer_and_close(self, reply: Reply) -> None:
        """Answer `reply` after everything already queued, then close: the stream is unusable."""
        self.broken = True
        if self.worker is None and not self.pending:
            self._write_whole(reply, keep_alive=False)
        else:
            self._enqueue(_Job(_CLOSING_REQUEST, reply))

    def _head(self, status: int, keep_alive: bool, extra: bytes) -> bytes:
        return b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
                b"date: ",
                self.app.date,
                b"\r\nserver: maas-metrics-mock\r\n",
                extra,
                b"" if keep_alive else b"connection: close\r\n",
                b"\r\n",
            )
        )

    def _write_whole(self, reply: Reply, keep_alive: bool) -> None:
        assert self.transport is not None
        extra = b"content-type: application/json\r\ncontent-length: %d\r\n" % len(reply.body)
        self.transport.write(self._head(reply.status, keep_alive, extra) + reply.body)
        if not keep_alive:
            self._close()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _work(self) -> None:
        """Answer queued requests one by one, waiting where latency or flow control says so."""
        try:
            while self.pending and not self.closed:
                job = self.pending.popleft()
                if self.queue_full and len(self.pending) < MAX_QUEUED // 2:
                    self.queue_full = False
                    if self.writable.is_set() and self.transport is not None:
                        self.transport.resume_reading()
                reply = job.reply if job.reply is not None else self.app.reply(job.request)
                if reply.waits and self.app.latency:
                    await asyncio.sleep(self.app.latency)
                await self.writable.wait()
                if self.closed:
                    return
                if reply.events is None:
                    self._write_whole(reply, job.request.keep_alive)
                else:
                    await self._write_stream(reply.events, job.request)
        finally:
            self.worker = None

    async def _write_stream(self, events: list[bytes], request: Request) -> None:
        """Send SSE events one by one, each in its own chunk (no chunking for HTTP/1.0)."""
        assert self.transport is not None
        chunked = not request.http_10
        keep_alive = request.keep_alive and chunked
        extra = b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
        if chunked:
            extra += b"transfer-encoding: chunked\r\n"
        self.transport.write(self._head(200, keep_alive, extra))
        pause = self.app.latency / len(events)
        for index, event in enumerate(events):
            if self.closed:
                return
            self.transport.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            if index < len(events) - 1:
                # Even without latency, yield so each event leaves on its own and others run.
                await asyncio.sleep(pause)
            await self.writable.wait()
        if self.closed:
            return
        if chunked:
            self.transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self._close()
