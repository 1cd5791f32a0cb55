"""A closed-loop HTTP/1.1 load generator on raw asyncio sockets, for benchmarks.

httpx costs about a millisecond of CPU per request, which would make the client,
not the server, the thing measured. This sends one prepared request per
keep-alive connection, waits for the whole response (Content-Length or chunked)
and sends the next, on `concurrency` connections at once.

    python -m maas_metrics.simulate.loadgen --url http://127.0.0.1:8001/v1/chat/completions \\
        --concurrency 16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import cast
from urllib.parse import urlsplit

import orjson

DEFAULT_BODY = orjson.dumps(
    {"model": "granite-8b", "messages": [{"role": "user", "content": "Say hello in five words."}]}
)


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0  # responses whose status was not 2xx
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        lat = sorted(self.latencies)
        median = statistics.median(lat) * 1000 if lat else 0.0
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else 0.0
        return (
            f"{self.requests} requests in {self.elapsed:.2f}s = {self.rate:,.0f} req/s; "
            f"non-2xx {self.errors}; latency median {median:.3f} ms, p99 {p99:.3f} ms"
        )


def build_request(url: str, body: bytes | None, headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"{'POST' if body is not None else 'GET'} {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class _Client(asyncio.Protocol):
    """Sends `request` again each time a whole response has arrived."""

    def __init__(
        self, request: bytes, result: LoadResult, deadline: float, done: asyncio.Future[None]
    ) -> None:
        self.request = request
        self.result = result
        self.deadline = deadline
        self.done = done
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            size = _response_size(self.buffer)
            if size is None:
                return
            status = int(self.buffer[9:12])
            del self.buffer[:size]
            self.result.requests += 1
            self.result.latencies.append(time.perf_counter() - self.sent_at)
            if not 200 <= status < 300:
                self.result.errors += 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _response_size(buffer: bytearray) -> int | None:
    """Bytes of the first complete response in `buffer`, or None if it is not complete yet."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    start = end + 4
    marker = head.find(b"content-length:")
    if marker >= 0:
        length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
        return start + length if len(buffer) >= start + length else None
    if b"transfer-encoding: chunked" in head:
        last = buffer.find(b"\r\n0\r\n\r\n", start - 2)
        return last + 7 if last >= 0 else None
    raise ValueError("response without Content-Length or chunked encoding")


async def run_load(
    url: str,
    concurrency: int = 16,
    duration: float = 5.0,
    body: bytes | None = DEFAULT_BODY,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Keep `concurrency` keep-alive connections busy for `duration` seconds."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    request = build_request(url, body, headers)
    loop = asyncio.get_running_loop()
    result = LoadResult()
    start = time.perf_counter()
    deadline = start + duration
    waits: list[asyncio.Future[None]] = []
    for _ in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(partial(_Client, request, result, deadline, done), host, port)
        waits.append(done)
    await asyncio.gather(*waits)
    result.elapsed = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", required=True, help="full URL, e.g. http://127.0.0.1:8001/v1/chat/completions"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--body", help="JSON request body (default: a small chat completion)")
    parser.add_argument("--get", action="store_true", help="send GET requests without a body")
    parser.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    args = parser.parse_args(argv)
    body = None if args.get else (args.body.encode() if args.body else DEFAULT_BODY)
    headers = dict(h.split(":", 1) for h in args.header)
    import uvloop

    result = uvloop.run(
        run_load(
            args.url,
            args.concurrency,
            args.duration,
            body,
            {k.strip(): v.strip() for k, v in headers.items()},
        )
    )
    print(result.summary())
    sys.exit(0 if result.errors == 0 else 1)


if __name__ == "__main__":
    main()
