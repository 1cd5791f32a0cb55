"""A tiny purpose-built upstream for the misbehaviour the mock model cannot show.

It reads one HTTP/1.1 request per connection and hands its JSON body and the
raw writer to a test's handler, which writes whatever bytes it wants (a
stream without usage, an event cut in the middle, one byte at a time...).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from tests.gateway_harness import LoopThread

Handler = Callable[[dict[str, Any], asyncio.StreamWriter], Awaitable[None]]
"""Writes the answer to one request body (the reader stays with `FakeUpstream`, see `gone`)."""

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def json_reply(status: int, payload: object) -> bytes:
    body = orjson.dumps(payload)
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def chunk_payload(text: str, finish: str | None, with_usage_null: bool) -> dict[str, Any]:
    """A chat chunk as OpenAI writes it (`usage` last, null on every chunk when usage was asked)."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [
            {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
        ],
    }
    if with_usage_null:
        payload["usage"] = None
    return payload


def sse_events(
    pieces: list[str], include_usage: bool, usage: dict[str, int] | None, done: bool = True
) -> bytes:
    """An OpenAI-style stream: one chunk per piece, the last one with finish_reason."""
    out = []
    for i, piece in enumerate(pieces):
        finish = "stop" if i == len(pieces) - 1 else None
        out.append(b"data: " + orjson.dumps(chunk_payload(piece, finish, include_usage)) + b"\n\n")
    if include_usage and usage is not None:
        last = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000}
        last |= {"model": "fake", "choices": [], "usage": usage}
        out.append(b"data: " + orjson.dumps(last) + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class FakeUpstream:
    """Serves `handler` on 127.0.0.1; `url` is the OpenAI base URL, `bodies` what it received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.bodies: list[dict[str, Any]] = []
        self.gone = 0  # connections the gateway closed before the handler finished
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = orjson.loads(await reader.readexactly(length)) if length else {}
            self.bodies.append(body)
            handling = asyncio.ensure_future(self.handler(body, writer))
            closing = asyncio.ensure_future(reader.read())  # b"" once the gateway hangs up
            done, _ = await asyncio.wait({handling, closing}, return_when=asyncio.FIRST_COMPLETED)
            if handling in done:
                closing.cancel()
                handling.result()
                await writer.drain()
            else:
                self.gone += 1
                handling.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.contextmanager
def fake_upstream(handler: Handler) -> Iterator[FakeUpstream]:
    thread = LoopThread()
    upstream = FakeUpstream(handler)
    thread.run(upstream.start())
    try:
        yield upstream
    finally:
        thread.run(upstream.close())
        thread.close()
