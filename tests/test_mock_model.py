"""The mock model, as its users see it: the official openai client, raw HTTP/1.1, the CLI.

Expected token counts are computed here from the documented formula
(tokens(text) = ceil(len(text) / 4)), not taken from the code under test.
"""

from __future__ import annotations

import http.client
import io
import math
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from maas_metrics.simulate.mock_model import (
    DEFAULT_MODELS,
    BadRequest,
    compute_usage,
    start_server,
)
from tests.fixtures import CLI
from tests.servers import free_port, wait_for_port


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@pytest.fixture(scope="module")
def mock_port() -> Iterator[int]:
    """`maas-metrics mock-model` as a user starts it; it must exit 0 on SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [CLI, "mock-model", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/v1" in out.decode()


@pytest.fixture
def client(mock_port: int) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{mock_port}/v1", api_key="unused", max_retries=0
    ) as c:
        yield c


# --- the official client -----------------------------------------------------------------


def test_chat_completion_has_openai_shape_and_formula_usage(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How many tokens does this prompt use?"},
    ]
    response = client.chat.completions.create(model="granite-8b", messages=messages)
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "granite-8b"
    assert response.created > 0
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    content = choice.message.content
    assert content
    assert response.usage is not None
    prompt = "Be brief.\nHow many tokens does this prompt use?"
    assert response.usage.prompt_tokens == tokens(prompt) == 12
    assert response.usage.completion_tokens == tokens(content)
    assert response.usage.total_tokens == tokens(prompt) + tokens(content)
    # The public helper agrees with what the server reported.
    usage = compute_usage({"model": "x", "messages": messages})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
        response.usage.total_tokens,
    )


def test_any_model_name_is_accepted_and_models_are_listed(client: openai.OpenAI) -> None:
    listed = [m.id for m in client.models.list()]
    assert listed == list(DEFAULT_MODELS)
    assert {"granite-8b", "llama-3-8b", "mistral-7b"} <= set(listed)
    response = client.chat.completions.create(
        model="some/unlisted-model:v2", messages=[{"role": "user", "content": "hi"}]
    )
    assert response.model == "some/unlisted-model:v2"
    assert client.models.retrieve("anything").id == "anything"


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Stream me a deterministic answer."}]
    whole = client.chat.completions.create(model="llama-3-8b", messages=messages)
    stream = client.chat.completions.create(
        model="llama-3-8b",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 4
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes[:-1] == [None] * (len(finishes) - 1)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == tokens("Stream me a deterministic answer.")
    assert last.usage.completion_tokens == tokens(text)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mistral-7b", messages=[{"role": "user", "content": "no usage please"}], stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    prompt = "Once upon a time"
    whole = client.completions.create(model="granite-8b", prompt=prompt)
    assert whole.object == "text_completion"
    assert whole.id.startswith("cmpl-")
    text = whole.choices[0].text
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == tokens(prompt) == 4
    assert whole.usage.completion_tokens == tokens(text)
    chunks = list(
        client.completions.create(
            model="granite-8b",
            prompt=prompt,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    # A list prompt is its strings joined by newlines.
    listed = client.completions.create(model="granite-8b", prompt=["ab", "cde"])
    assert listed.usage is not None and listed.usage.prompt_tokens == tokens("ab\ncde") == 2


def test_max_tokens_cuts_the_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="granite-8b", messages=[{"role": "user", "content": "long answer"}], max_tokens=3
    )
    assert response.choices[0].finish_reason == "length"
    assert len(response.choices[0].message.content or "") == 12
    assert response.usage is not None and response.usage.completion_tokens == 3
    newer = client.chat.completions.create(
        model="granite-8b",
        messages=[{"role": "user", "content": "long answer"}],
        max_completion_tokens=2,
    )
    assert newer.usage is not None and newer.usage.completion_tokens == 2


def test_errors_reach_the_client_as_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="granite-8b", messages=[])
    assert caught.value.status_code == 400
    assert "messages" in caught.value.message


# --- determinism of the formula ------------------------------------------------------------


def test_usage_is_deterministic_and_follows_the_formula() -> None:
    body = {"model": "a", "messages": [{"role": "user", "content": "same prompt"}]}
    assert compute_usage(body) == compute_usage({**body, "model": "b"})
    assert compute_usage(orjson.dumps(body)) == compute_usage(body)
    assert (
        compute_usage(
            {"model": "a", "messages": [{"role": "user", "content": "x" * 40}]}
        ).prompt_tokens
        == 10
    )
    assert (
        compute_usage(
            {"model": "a", "messages": [{"role": "user", "content": "x" * 41}]}
        ).prompt_tokens
        == 11
    )
    assert (
        compute_usage(
            {"model": "a", "messages": [{"role": "user", "content": "é" * 5}]}
        ).prompt_tokens
        == 2
    )
    parts = {
        "model": "a",
        "messages": [
            {"role": "system", "content": "ab"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "cd"}, {"type": "image_url", "image_url": {}}],
            },
            {"role": "assistant", "content": None},
        ],
    }
    assert compute_usage(parts).prompt_tokens == tokens("ab\ncd\n") == 2
    assert compute_usage({"model": "a", "prompt": "abcde"}, "completions").prompt_tokens == 2
    capped = compute_usage(
        {"model": "a", "messages": [{"role": "user", "content": "q"}], "max_tokens": 1}
    )
    assert capped.completion_tokens == 1
    assert capped.total_tokens == capped.prompt_tokens + 1
    # Different prompts give answers of different lengths (8 to 47 words).
    lengths = {
        compute_usage(
            {"model": "a", "messages": [{"role": "user", "content": f"q{i}"}]}
        ).completion_tokens
        for i in range(50)
    }
    assert len(lengths) > 10
    with pytest.raises(BadRequest):
        compute_usage({"model": "a"})


# --- malformed requests -------------------------------------------------------------------

CHAT = "/v1/chat/completions"
HI: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MALFORMED: list[tuple[str, bytes | dict[str, Any], str | None]] = [
    (CHAT, b"{not json", None),
    (CHAT, b"[1, 2]", None),
    (CHAT, b"", None),
    (CHAT, {"messages": HI["messages"]}, "model"),
    (CHAT, {**HI, "model": 3}, "model"),
    (CHAT, {"model": "m"}, "messages"),
    (CHAT, {"model": "m", "messages": "hi"}, "messages"),
    (CHAT, {"model": "m", "messages": [{"content": "hi"}]}, "messages[0].role"),
    (CHAT, {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (CHAT, {**HI, "max_tokens": 0}, "max_tokens"),
    (CHAT, {**HI, "max_tokens": "5"}, "max_tokens"),
    (CHAT, {**HI, "stream": "yes"}, "stream"),
    (CHAT, {**HI, "stream_options": {"include_usage": True}}, "stream_options"),
    (CHAT, {**HI, "n": 2}, "n"),
    ("/v1/completions", {"model": "m"}, "prompt"),
    ("/v1/completions", {"model": "m", "prompt": [1, 2]}, "prompt"),
]


@pytest.mark.parametrize(("path", "body", "param"), MALFORMED)
def test_malformed_requests_get_400_json(
    mock_port: int, path: str, body: bytes | dict[str, Any], param: str | None
) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{mock_port}{path}",
        content=body if isinstance(body, bytes) else orjson.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error["param"] == param


def test_unknown_path_and_wrong_method_get_json_errors(mock_port: int) -> None:
    base = f"http://127.0.0.1:{mock_port}"
    missing = httpx.get(f"{base}/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    wrong = httpx.get(f"{base}/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}


# --- HTTP/1.1 on raw sockets --------------------------------------------------------------


class _SharedReader(io.BufferedReader):
    """One read buffer for every response of a connection: http.client's close is ignored."""

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        super().close()


class _Conn:
    """A raw connection whose responses are read with http.client from one shared buffer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = _SharedReader(socket.SocketIO(self.sock, "rb"))

    def makefile(self, mode: str) -> io.BufferedReader:
        return self.file

    def response(self) -> tuple[http.client.HTTPResponse, bytes]:
        response = http.client.HTTPResponse(self)  # type: ignore[arg-type]
        response.begin()
        return response, response.read()

    def closed_by_peer(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.really_close()
        self.sock.close()


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _chat(content: str, **extra: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}], **extra})


def test_keep_alive_serves_many_requests_on_one_connection(mock_port: int) -> None:
    conn = _Conn(mock_port)
    try:
        for i in range(5):
            conn.sock.sendall(_post("/v1/chat/completions", _chat(f"question {i}")))
            response, body = conn.response()
            assert response.status == 200
            assert not response.will_close
            usage = orjson.loads(body)["usage"]
            assert usage["prompt_tokens"] == tokens(f"question {i}")
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(mock_port: int) -> None:
    requests = [
        _post("/v1/chat/completions", _chat("first, streamed", stream=True)),
        _post("/v1/chat/completions", _chat("second" * 10)),
        b"GET /v1/models HTTP/1.1\r\nHost: mock\r\n\r\n",
        _post("/v1/completions", orjson.dumps({"model": "m", "prompt": "fourth!"})),
        _post("/v1/chat/completions", b"{broken"),
        _post("/v1/chat/completions", _chat("sixth")),
    ]
    conn = _Conn(mock_port)
    try:
        conn.sock.sendall(b"".join(requests))  # all at once, before reading anything
        first, body = conn.response()
        assert first.status == 200
        assert first.getheader("content-type") == "text/event-stream"
        assert first.getheader("transfer-encoding") == "chunked"
        assert body.endswith(b"data: [DONE]\n\n")
        second, body = conn.response()
        assert second.status == 200
        assert orjson.loads(body)["usage"]["prompt_tokens"] == tokens("second" * 10) == 15
        third, body = conn.response()
        assert third.status == 200
        assert orjson.loads(body)["object"] == "list"
        fourth, body = conn.response()
        assert fourth.status == 200
        assert orjson.loads(body)["object"] == "text_completion"
        assert orjson.loads(body)["usage"]["prompt_tokens"] == tokens("fourth!")
        fifth, body = conn.response()
        assert fifth.status == 400
        sixth, body = conn.response()
        assert sixth.status == 200
        assert orjson.loads(body)["usage"]["prompt_tokens"] == tokens("sixth")
    finally:
        conn.close()


def test_long_pipelines_are_answered_completely(mock_port: int) -> None:
    # A stream first, so the rest queue up behind it (and reading pauses while the queue is long).
    requests = [_post("/v1/chat/completions", _chat("head", stream=True))]
    requests += [
        _post("/v1/chat/completions", _chat(f"n{i:03d}" * (i % 7 + 1))) for i in range(300)
    ]
    conn = _Conn(mock_port)
    try:
        conn.sock.sendall(b"".join(requests))
        head, _ = conn.response()
        assert head.getheader("content-type") == "text/event-stream"
        for i in range(300):
            response, body = conn.response()
            assert response.status == 200
            assert orjson.loads(body)["usage"]["prompt_tokens"] == tokens(f"n{i:03d}" * (i % 7 + 1))
    finally:
        conn.close()


def test_stream_events_arrive_as_separate_chunks(mock_port: int) -> None:
    conn = _Conn(mock_port)
    try:
        body = _chat("chunk by chunk", stream=True, stream_options={"include_usage": True})
        conn.sock.sendall(_post("/v1/chat/completions", body))
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += conn.file.readline()
        assert b"transfer-encoding: chunked" in head
        events = []
        while True:
            size = int(conn.file.readline().strip(), 16)
            data = conn.file.read(size + 2)[:-2]
            if size == 0:
                break
            events.append(data)
        # Each HTTP chunk is exactly one SSE event.
        assert all(
            e.startswith(b"data: ") and e.endswith(b"\n\n") and e.count(b"data: ") == 1
            for e in events
        )
        assert events[-1] == b"data: [DONE]\n\n"
        usage_chunk = orjson.loads(events[-2][6:])
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"]["prompt_tokens"] == tokens("chunk by chunk")
        assert len(events) >= 7
    finally:
        conn.close()


def test_chunked_request_body_and_expect_continue(mock_port: int) -> None:
    conn = _Conn(mock_port)
    try:
        body = _chat("sent in chunks")
        pieces = [body[:10], body[10:]]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        conn.sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked
        )
        response, data = conn.response()
        assert response.status == 200
        assert orjson.loads(data)["usage"]["prompt_tokens"] == tokens("sent in chunks")

        body = _chat("after a 100 Continue")
        conn.sock.sendall(
            _post("/v1/chat/completions", b"", "Expect: 100-continue\r\n")[:-2].replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(body)
            )
            + b"\r\n"
        )
        assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert conn.file.readline() == b"\r\n"
        conn.sock.sendall(body)
        response, data = conn.response()
        assert response.status == 200
        assert orjson.loads(data)["usage"]["prompt_tokens"] == tokens("after a 100 Continue")
    finally:
        conn.close()


def test_http10_and_connection_close_end_the_connection(mock_port: int) -> None:
    for request in (
        b"GET /v1/models HTTP/1.0\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n",
    ):
        conn = _Conn(mock_port)
        try:
            conn.sock.sendall(request)
            response, body = conn.response()
            assert response.status == 200
            assert orjson.loads(body)["object"] == "list"
            assert conn.closed_by_peer()
        finally:
            conn.close()


def test_garbage_gets_400_json_and_close(mock_port: int) -> None:
    conn = _Conn(mock_port)
    try:
        conn.sock.sendall(b"\x00\x01 this is not HTTP\r\n\r\n")
        response, body = conn.response()
        assert response.status == 400
        assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
        assert conn.closed_by_peer()
    finally:
        conn.close()


# --- latency (in process) and the CLI ------------------------------------------------------


async def test_latency_comes_before_the_first_byte() -> None:
    server = await start_server("127.0.0.1", 0, latency_ms=200)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            started = time.monotonic()
            response = await client.post("/chat/completions", content=_chat("slow"))
            assert response.status_code == 200
            assert time.monotonic() - started >= 0.2
            started = time.monotonic()
            async with client.stream(
                "POST", "/chat/completions", content=_chat("slow", stream=True)
            ) as streamed:
                assert time.monotonic() - started >= 0.2
                lines = [line async for line in streamed.aiter_lines() if line]
            assert lines[-1] == "data: [DONE]"
    finally:
        await server.close()


def test_cli_reports_a_busy_port(mock_port: int) -> None:
    result = subprocess.run(
        [CLI, "mock-model", "--port", str(mock_port)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{mock_port}: address already in use"
    ]


async def test_loadgen_counts_whole_responses() -> None:
    """The benchmark load generator reads JSON and chunked SSE responses off keep-alive sockets."""
    from maas_metrics.simulate.loadgen import run_load

    server = await start_server("127.0.0.1", 0)
    try:
        plain = await run_load(f"{server.url}/chat/completions", concurrency=2, duration=0.3)
        streamed = await run_load(
            f"{server.url}/chat/completions",
            concurrency=2,
            duration=0.3,
            body=_chat("s", stream=True, stream_options={"include_usage": True}),
        )
        missing = await run_load(f"{server.url}/nothing", concurrency=1, duration=0.2, body=None)
    finally:
        await server.close()
    for result in (plain, streamed):
        assert result.requests > 0
        assert result.errors == 0
        assert len(result.latencies) == result.requests
    assert missing.requests > 0
    assert missing.errors == missing.requests
