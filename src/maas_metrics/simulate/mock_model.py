"""An OpenAI-compatible mock model server, fast enough never to hide the gateway's cost.

It is a small `asyncio.Protocol` server on `httptools` (the C parser uvicorn
uses) and `orjson`, not a framework app: an ASGI stack would cost more per
request than the gateway being measured. It speaks HTTP/1.1 with keep-alive,
pipelining (answers in order), Content-Length and chunked request bodies,
`Expect: 100-continue`, and streams SSE with `Transfer-Encoding: chunked`.

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /healthz``. Any model name is accepted.

Usage is deterministic (see `maas_metrics.simulate.answers`, re-exported here):

- ``tokens(text) = ceil(len(text) / 4)``;
- prompt = the messages' contents joined with ``"\\n"`` (chat) or the prompt (completions);
- answer = ``8 + crc32(prompt) % 40`` vocabulary words, cut to ``4 * max_tokens``
  characters (``finish_reason "length"``) when longer than ``max_tokens`` tokens;
- ``usage = tokens(prompt), tokens(answer), their sum``; `compute_usage(body)` computes it.

Latency (``latency_ms``): the whole latency passes before the first byte of every
completion response (time to first token). A stream then also pauses
``latency_ms / number_of_events`` between consecutive SSE events, so its body
arrives over about one more ``latency_ms``. `/v1/models` and `/healthz` never wait.

The parts: `mock_routes` (what to answer), `mock_http` (the HTTP/1.1 protocol),
`answers` (bodies and usage); this module starts and stops a server.
"""

from __future__ import annotations

import asyncio

from maas_metrics.simulate.answers import (
    DEFAULT_MODELS,
    BadRequest,
    Usage,
    answer_for,
    compute_usage,
    count_tokens,
)
from maas_metrics.simulate.mock_http import Connection, ServerState

__all__ = [
    "DEFAULT_MODELS",
    "BadRequest",
    "MockModelServer",
    "Usage",
    "answer_for",
    "compute_usage",
    "count_tokens",
    "serve",
    "start_server",
]


class MockModelServer:
    """A running mock model; `url` is its OpenAI base URL (ending in /v1)."""

    def __init__(self, server: asyncio.Server, app: ServerState, host: str, port: int) -> None:
        self._server = server
        self._app = app
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self._server.close()
        self._app.stop_clock()
        for connection in list(self._app.connections):
            connection.closed = True
            if connection.transport is not None:
                connection.transport.abort()
            if connection.worker is not None:
                connection.worker.cancel()
        await self._server.wait_closed()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: float = 0.0,
    models: tuple[str, ...] = DEFAULT_MODELS,
) -> MockModelServer:
    """Listen on host:port (0 picks a free port) and return the running server."""
    if latency_ms < 0:
        raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
    app = ServerState(latency_ms, models)
    app.start_clock()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: Connection(app), host, port, backlog=2048)
    except BaseException:
        app.stop_clock()
        raise
    bound_port = int(server.sockets[0].getsockname()[1])
    return MockModelServer(server, app, host, bound_port)


async def serve(host: str, port: int, latency_ms: float = 0.0) -> None:
    """Serve the mock model on host:port until cancelled."""
    server = await start_server(host, port, latency_ms)
    try:
        await asyncio.Future()
    finally:
        await server.close()
