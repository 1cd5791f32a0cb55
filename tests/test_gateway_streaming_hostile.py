"""Streaming against slow, huge, broken and picky upstreams, and old clients (issue 13).

- the SSE parser does linear work, whatever the read sizes, and bounds an event's size;
- streamed bytes equal the upstream's bytes for the client's own request;
- HTTP/1.0 clients get a valid response; an upstream that rejects `stream_options`
  is asked again without it and counted through the no-usage path;
- upstreams answering byte by byte, and huge answers, pass through whole and counted.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
from typing import Any

import httpx
import orjson
import pytest

from maas_metrics.gateway.streaming import EventTooLarge, UsageCapture
from tests.fake_upstream import (
    SSE_HEAD,
    chunk_payload,
    fake_upstream,
    json_reply,
    sse_events,
    wants_usage,
)
from tests.gateway_harness import (
    TOKENS_NS,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
)

MODEL = "granite-8b"
HEADERS = {"Authorization": f"Bearer {secret('dave')}"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}


def chat(stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi there"}]}
    if stream:
        body["stream"] = True
    return body | extra


# --- the parser's work --------------------------------------------------------------------


def feed_in_reads(capture: UsageCapture, data: bytes, read: int) -> bytes:
    out = [capture.feed(data[i : i + read]) for i in range(0, len(data), read)]
    return b"".join([*out, capture.flush()])


@pytest.mark.parametrize("size", [1_000_000, 2_000_000])
def test_a_big_event_in_small_reads_costs_linear_work(size: int) -> None:
    payload = chunk_payload("x" * size, None, False)
    event = b"data: " + orjson.dumps(payload) + b"\n\n"
    stream = event + b"data: [DONE]\n\n"
    capture = UsageCapture(hide_usage_chunk=True, max_event_bytes=4 * size)
    assert feed_in_reads(capture, stream, 1024) == stream
    assert capture.answer_chars == size
    # Each byte is scanned about once (plus 3 bytes of overlap per read) and copied about
    # twice (into the buffer, out as the event); a rescanning parser does ~size^2 / 2048.
    reads = math.ceil(len(stream) / 1024)
    assert capture.bytes_scanned <= len(stream) + 3 * reads
    assert capture.bytes_copied <= 2 * len(stream)


def test_an_event_over_the_limit_stops_the_parser_within_one_read() -> None:
    capture = UsageCapture(hide_usage_chunk=True, max_event_bytes=64 * 1024)
    fed = 0
    with pytest.raises(EventTooLarge):
        while fed < 10_000_000:
            capture.feed(b"data: " + b"y" * 1018)
            fed += 1024
    assert fed <= 64 * 1024 + 1024
    complete = UsageCapture(hide_usage_chunk=False, max_event_bytes=1024)
    with pytest.raises(EventTooLarge):
        complete.feed(b"data: " + b"z" * 2000 + b"\n\n")  # complete, but over the limit too


# --- events over the limit end-to-end -----------------------------------------------------


def oversized(first: bool) -> Any:
    async def handler(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        del body
        writer.write(SSE_HEAD)
        if not first:
            writer.write(b"data: " + orjson.dumps(chunk_payload("fine", None, True)) + b"\n\n")
        writer.write(b"data: " + b"w" * 70_000 + b"\n\n")
        writer.write(b"data: [DONE]\n\n")

    return handler


def test_an_oversized_first_event_is_a_502_and_counted() -> None:
    with (
        fake_upstream(oversized(first=True)) as upstream,
        running_gateway(
            make_config(upstream.url, metering={"max_sse_event_bytes": 65536})
        ) as gateway,
    ):
        reply = httpx.post(
            f"{gateway}/v1/chat/completions", json=chat(), headers=HEADERS, timeout=10
        )
        assert reply.status_code == 502
        assert reply.json()["error"]["code"] == "bad_gateway"
        assert "127.0.0.1" not in reply.text
        metrics = counters(scrape(gateway))
    assert metrics[("maas_stream_events_too_large", frozenset({("model", MODEL)}))] == 1
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == 0


def test_an_oversized_later_event_ends_the_stream_with_an_error_event() -> None:
    with (
        fake_upstream(oversized(first=False)) as upstream,
        running_gateway(
            make_config(upstream.url, metering={"max_sse_event_bytes": 65536})
        ) as gateway,
    ):
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=chat(), headers=HEADERS, timeout=10
        ) as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert '"fine"' in events[0]
        assert orjson.loads(events[-1][6:])["error"]["code"] == "bad_gateway"
        metrics = counters(scrape(gateway))
    assert metrics[("maas_stream_events_too_large", frozenset({("model", MODEL)}))] == 1


# --- the upstream's bytes, unchanged -------------------------------------------------------

_VOLATILE = re.compile(rb'"id":"[^"]*"|"created":\d+')


def normalise(data: bytes) -> bytes:
    """The mock numbers every answer (id) and stamps it (created); nothing else may differ."""
    return _VOLATILE.sub(b"", data)


def raw_stream(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


@pytest.mark.parametrize("endpoint", ["chat/completions", "completions"])
@pytest.mark.parametrize("options", [None, {"include_usage": False}, {"include_usage": True}])
def test_streamed_bytes_equal_the_mock_models_bytes(
    endpoint: str, options: dict[str, bool] | None
) -> None:
    body = (
        chat()
        if endpoint == "chat/completions"
        else {"model": MODEL, "prompt": "Hi", "stream": True}
    )
    if options is not None:
        body["stream_options"] = options
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        direct = raw_stream(f"{mock.url}/{endpoint}", body)
        relayed = raw_stream(f"{gateway}/v1/{endpoint}", body, HEADERS)
        metrics = counters(scrape(gateway))
    assert normalise(relayed) == normalise(direct)
    assert (b'"usage":{' in relayed) == (options == {"include_usage": True})
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] > 0


async def openai_like(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    """Deterministic chunks, `usage` last in each (as OpenAI orders it), keep-alive comments."""
    events = sse_events(["Hello", ", ", "world"], wants_usage(body), USAGE)
    writer.write(SSE_HEAD + b": keep-alive\r\n\r\n" + events.replace(b"\n\n", b"\r\n\r\n"))


def test_streamed_bytes_equal_an_upstream_that_puts_usage_last() -> None:
    with (
        fake_upstream(openai_like) as upstream,
        running_gateway(make_config(upstream.url)) as gateway,
    ):
        direct = raw_stream(f"{upstream.url}/chat/completions", chat())
        relayed = raw_stream(f"{gateway}/v1/chat/completions", chat(), HEADERS)
        assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}  # we asked
        metrics = counters(scrape(gateway))
    assert relayed == direct
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == 14


# --- HTTP/1.0 ------------------------------------------------------------------------------


def test_an_http_1_0_client_reads_a_complete_stream_without_chunking() -> None:
    body = orjson.dumps(chat())
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        host, port = gateway.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.0\r\n"
                + f"Authorization: {HEADERS['Authorization']}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while chunk := sock.recv(65536):  # the server closes: the body is complete
                received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0].startswith(b"http/1.1 200")
    assert not any(line.startswith(b"transfer-encoding") for line in lines)
    length = [int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")]
    assert length == [len(payload)]
    assert payload.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in payload


# --- an upstream that rejects the stream_options we add ------------------------------------

ANSWER = ["Short", " answer"]


async def no_stream_options(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    if "stream_options" in body:
        message = "Unrecognized request argument supplied: stream_options"
        writer.write(
            json_reply(400, {"error": {"message": message, "type": "invalid_request_error"}})
        )
        return
    writer.write(SSE_HEAD + sse_events(ANSWER, False, None))


def test_an_upstream_rejecting_stream_options_is_asked_again_and_counted_by_estimate() -> None:
    with (
        fake_upstream(no_stream_options) as upstream,
        running_gateway(make_config(upstream.url)) as gateway,
    ):
        relayed = raw_stream(f"{gateway}/v1/chat/completions", chat(), HEADERS)
        assert [("stream_options" in b) for b in upstream.bodies] == [True, False]
        assert relayed == sse_events(ANSWER, False, None)
        metrics = counters(scrape(gateway))
    estimate = math.ceil(len("Hi there") / 4) + math.ceil(len("".join(ANSWER)) / 4)
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == estimate
    assert metrics[usage_key("maas_answers_without_usage", TOKENS_NS, "dave", MODEL)] == 1


# --- slow and huge upstreams ---------------------------------------------------------------


async def byte_by_byte(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    data = SSE_HEAD + sse_events(["Slowly", " but", " surely"], wants_usage(body), USAGE)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0.001)


def test_an_upstream_answering_byte_by_byte_is_relayed_whole_and_counted() -> None:
    with (
        fake_upstream(byte_by_byte) as upstream,
        running_gateway(make_config(upstream.url)) as gateway,
    ):
        body = chat(stream_options={"include_usage": True})
        relayed = raw_stream(f"{gateway}/v1/chat/completions", body, HEADERS)
        metrics = counters(scrape(gateway))
    assert relayed == sse_events(["Slowly", " but", " surely"], True, USAGE)
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == 14


HUGE_TEXT = "".join(f"word{i} " for i in range(400_000))  # ~4.3 MB of answer


async def huge(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 1_000_000, "total_tokens": 1_000_003}
    if body.get("stream"):
        pieces = [HUGE_TEXT[i : i + 1000] for i in range(0, len(HUGE_TEXT), 1000)]
        writer.write(SSE_HEAD)
        data = sse_events(pieces, wants_usage(body), usage)
        for i in range(0, len(data), 65536):
            writer.write(data[i : i + 65536])
            await writer.drain()
        return
    answer = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": HUGE_TEXT}}],
        "usage": usage,
    }
    writer.write(json_reply(200, answer))


def test_huge_answers_pass_through_whole_and_are_counted() -> None:
    with (
        fake_upstream(huge) as upstream,
        running_gateway(make_config(upstream.url)) as gateway,
    ):
        reply = httpx.post(
            f"{gateway}/v1/chat/completions", json=chat(stream=False), headers=HEADERS, timeout=30
        )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == HUGE_TEXT
        frank = {"Authorization": f"Bearer {secret('frank')}"}  # dave's token quota is spent
        relayed = raw_stream(f"{gateway}/v1/chat/completions", chat(), frank)
        text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"]["content"]
            for line in relayed.split(b"\n\n")
            if line.startswith(b"data: {")
        )
        assert text == HUGE_TEXT
        metrics = counters(scrape(gateway))
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == 1_000_003
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "frank", MODEL)] == 1_000_003


@pytest.mark.parametrize(
    ("asked", "plain"),
    [
        (b'{"a":1,"usage":null,"choices":[]}', b'{"a":1,"choices":[]}'),
        (b'{"usage":null,"a":1}', b'{"a":1}'),
        (b'{"a": 1, "usage": null, "choices": []}', b'{"a": 1, "choices": []}'),
        (b'{ "a": 1 ,\t"usage" :  null }', b'{ "a": 1 }'),
        (b'{"usage": null}', b"{}"),
        # Text that only looks like the member stays (its quotes are escaped).
        (
            b'{"choices":[{"delta":{"content":"\\"usage\\":null"}}],"usage":null}',
            b'{"choices":[{"delta":{"content":"\\"usage\\":null"}}]}',
        ),
    ],
)
def test_only_the_usage_null_member_is_removed_whatever_the_json_layout(
    asked: bytes, plain: bytes
) -> None:
    capture = UsageCapture(hide_usage_chunk=True)
    out = capture.feed(b"data: " + asked + b"\n\n") + capture.flush()
    assert out == b"data: " + plain + b"\n\n"
    assert orjson.loads(plain) == {k: v for k, v in orjson.loads(asked).items() if k != "usage"}
