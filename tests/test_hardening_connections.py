"""Slow, silent and hostile clients: every phase a client controls ends within its deadline.

The gateway runs as its own process (`maas-metrics gateway`, as in production)
so its file descriptors can be counted in /proc. 500 raw TCP connections
misbehave in four ways (silent, headers dripped a byte at a time, a body
shorter than its Content-Length, an idle keep-alive) while a normal client
(the official `openai` SDK) keeps calling; every misbehaving connection must
be closed by the gateway, each with the answer its phase calls for, the
normal client must see only successes, only its own requests may be counted,
and the descriptors must come back to the baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from maas_metrics.config import Config, parse_config
from tests.gateway_harness import (
    REQUESTS_NS,
    GatewayURL,
    RunningMock,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
    write_config,
)
from tests.servers import free_port, wait_for_port

TIMEOUT = 2.0  # header, body and keep-alive deadlines of the gateway under test
# How long a misbehaving connection may stay open before the test calls it "never closed":
# far above every deadline (the bug this guards against held connections for ever).
NEVER = 30.0
PER_KIND = 125  # x 4 kinds = 500 connections
PIPELINED = 20


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(mock: RunningMock) -> Iterator[GatewayURL]:
    """The gateway in a thread (uvicorn, as in production) with the short deadlines."""
    with running_gateway(bounded_config(mock.url)) as url:
        yield url


def bounded_config(mock_url: str, **connections: Any) -> Config:
    data: dict[str, Any] = make_config(mock_url).model_dump(mode="json")
    data["gateway"]["connections"] = {
        "header_timeout_seconds": TIMEOUT,
        "body_timeout_seconds": TIMEOUT,
        "keep_alive_timeout_seconds": TIMEOUT,
        **connections,
    }
    return parse_config(data)


@dataclass
class Running:
    url: GatewayURL
    pid: int

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@contextmanager
def gateway_process(config: Config, tmp_path: Path) -> Iterator[Running]:
    port, operator_port = free_port(), free_port()
    path = write_config(config, tmp_path / "maas.yaml")
    command = [
        str(Path(sys.executable).parent / "maas-metrics"),
        "gateway",
        "--config",
        str(path),
        "--port",
        str(port),
        "--operator-port",
        str(operator_port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process=process)
        wait_for_port(operator_port, process=process)
        url = GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")
        yield Running(url, process.pid)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


# --- misbehaving clients -------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    closed: bool  # the gateway closed the connection (EOF or reset) before NEVER
    received: bytes


def chat_head(length: int, user: str = "frank") -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        b"Authorization: Bearer " + secret(user).encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length
    )


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[bool, bytes]:
    received = b""
    try:
        async with asyncio.timeout(NEVER):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


async def misbehave(port: int, kind: str) -> Outcome:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    drip: asyncio.Task[None] | None = None
    if kind == "slow_body":  # announces 100 bytes, sends 2
        writer.write(chat_head(100) + b"{}")
    elif kind == "slow_headers":  # a header block that never ends, one byte at a time

        async def drip_bytes() -> None:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Drip: ")
            while True:
                await asyncio.sleep(0.25)
                writer.write(b"x")

        drip = asyncio.create_task(drip_bytes())
    elif kind == "idle_keep_alive":  # one complete request, then nothing
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
    closed, received = await read_until_closed(reader)
    if drip is not None:
        drip.cancel()
    writer.close()
    return Outcome(kind, closed, received)


def error_code(received: bytes) -> tuple[int, str]:
    """Status and OpenAI error code of a raw HTTP response."""
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)["error"]["code"]


async def normal_client(base: str, stop: asyncio.Event) -> Counter[str]:
    """The official SDK at default settings, listing models and chatting until told to stop."""
    outcomes: Counter[str] = Counter()
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=secret("frank")) as client:
        n = 0
        while not stop.is_set():
            if n % 4 == 0:
                await client.chat.completions.create(
                    model="granite-8b", messages=[{"role": "user", "content": "hi"}]
                )
                outcomes["chat"] += 1
            else:
                await client.models.list()
                outcomes["models"] += 1
            n += 1
            await asyncio.sleep(0.05)
    return outcomes


async def test_500_slow_or_silent_connections_are_closed_while_others_are_served(
    mock: RunningMock, tmp_path: Path
) -> None:
    with gateway_process(bounded_config(mock.url), tmp_path) as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="sk-test-frank") as c:
            # Warm: served once, so its pooled upstream connection is part of the baseline.
            await c.chat.completions.create(
                model="granite-8b", messages=[{"role": "user", "content": "hi"}]
            )
        before = counters(scrape(gateway.url))
        await asyncio.sleep(0.2)
        baseline = gateway.fds()

        stop = asyncio.Event()
        normal = asyncio.create_task(normal_client(gateway.url, stop))
        kinds = ("silent", "slow_headers", "slow_body", "idle_keep_alive")
        outcomes = await asyncio.gather(
            *(misbehave(port, kind) for kind in kinds for _ in range(PER_KIND))
        )
        stop.set()
        served = await normal

        assert len(outcomes) == 500
        assert [o for o in outcomes if not o.closed] == []
        by_kind: dict[str, list[Outcome]] = {k: [o for o in outcomes if o.kind == k] for k in kinds}
        # Nothing was sent: closed without a word. A request begun: 408 as OpenAI JSON.
        assert {o.received for o in by_kind["silent"]} == {b""}
        for kind in ("slow_headers", "slow_body"):
            assert {error_code(o.received) for o in by_kind[kind]} == {(408, "request_timeout")}
        for outcome in by_kind["idle_keep_alive"]:  # its answer, then closed when idle
            assert outcome.received.startswith(b"HTTP/1.1 200 ")
            assert outcome.received.count(b"HTTP/1.1") == 1

        # The normal client got an answer every time (an exception would have ended it).
        assert served["chat"] >= 1 and served["models"] >= 1
        # Only its chats were counted: the 125 slow bodies carried frank's key but changed nothing.
        after = counters(scrape(gateway.url))
        key = usage_key("authorized_calls", REQUESTS_NS, "frank", "granite-8b")
        assert after.get(key, 0) - before.get(key, 0) == served["chat"]

        # Every descriptor the flood took is given back.
        deadline = asyncio.get_running_loop().time() + NEVER
        while gateway.fds() > baseline and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        assert gateway.fds() <= baseline


def test_a_client_that_stops_reading_its_answer_is_dropped(
    mock: RunningMock, tmp_path: Path
) -> None:
    """Pipelined requests for large answers and no reads: the answers stall, the send deadline drops it."""
    data: dict[str, Any] = bounded_config(mock.url).model_dump(mode="json")
    data["models"] += [{"name": f"m-{i:05}", "upstream": mock.url} for i in range(4000)]
    with gateway_process(parse_config(data), tmp_path) as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        baseline = gateway.fds()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            request = (
                b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n"
                b"Authorization: Bearer " + secret("frank").encode() + b"\r\n\r\n"
            )
            sock.sendall(request * PIPELINED)  # ~6 MB of answers: more than any socket buffer
            time.sleep(3 * TIMEOUT)  # not reading, well past the deadline
            sock.settimeout(NEVER)
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    received += chunk
        one = httpx.get(
            f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {secret('frank')}"}
        )
        assert len(one.content) > 300_000
        # The gateway gave up on the reader: far from every answer arrived.
        assert len(received) < PIPELINED * len(one.content)
        deadline = time.monotonic() + NEVER
        while gateway.fds() > baseline and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gateway.fds() <= baseline


# --- the connection cap and oversized or invalid requests -------------------------------------


async def test_connections_over_the_cap_get_503_json_and_metrics_stay_reachable(
    mock: RunningMock, tmp_path: Path
) -> None:
    config = bounded_config(mock.url, max_connections=20, header_timeout_seconds=3)
    with gateway_process(config, tmp_path) as gateway:
        port = int(gateway.url.rsplit(":", 1)[1])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        closed, received = await read_until_closed(reader)
        writer.close()
        assert closed
        assert error_code(received) == (503, "too_many_connections")
        assert b"\r\nretry-after: 1\r\n" in received.lower()
        # The operator listener has its own cap: Prometheus and the kubelet still get through.
        assert httpx.get(f"{gateway.url.operator}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{gateway.url.operator}/healthz", timeout=10).status_code == 200
        # The silent ones are closed at their header deadline; then there is room again.
        for held_reader, held_writer in held:
            assert (await read_until_closed(held_reader)) == (True, b"")
            held_writer.close()
        response = httpx.get(
            f"{gateway.url}/v1/models", headers={"Authorization": "Bearer sk-test-frank"}
        )
        assert response.status_code == 200


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    closed, received = await read_until_closed(reader)
    writer.close()
    assert closed
    return received


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "invalid_http_request"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400, "invalid_http_request"),
        (b"GET /v1/models HTTP/1.1\r\nHo st: a\r\n\r\n", 400, "invalid_http_request"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
            400,
            "invalid_http_request",
        ),
        (
            b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        # No end of line: httptools would buffer it all; the received bytes are bounded instead.
        (
            b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 300_000,
            431,
            "headers_too_large",
        ),
    ],
    ids=[
        "garbage",
        "bad-content-length",
        "space-in-name",
        "tls-to-plain-port",
        "huge-header",
        "endless-header-line",
    ],
)
async def test_protocol_errors_are_openai_json(
    gateway: GatewayURL, request_bytes: bytes, status: int, code: str
) -> None:
    before = counters(scrape(gateway))
    received = await raw_exchange(int(gateway.rsplit(":", 1)[1]), request_bytes)
    assert error_code(received) == (status, code)
    assert b"content-type: application/json" in received.lower()
    assert counters(scrape(gateway)) == before
