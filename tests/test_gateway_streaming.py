"""SSE relay: event-by-event pass-through, usage capture, client disconnects and upstream breaks."""

from __future__ import annotations

import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st

from maas_metrics.gateway.streaming import UsageCapture
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

USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def sse(separator: bytes) -> tuple[bytes, bytes]:
    """An OpenAI-style stream asked for usage, and the stream the upstream sends when not asked
    (no usage chunk, no `"usage":null` member)."""

    def event(payload: object) -> bytes:
        return b"data: " + orjson.dumps(payload) + separator

    asked = [
        event({"choices": [{"delta": {"content": w}}], "usage": None}) for w in ("a", "b ", "é")
    ]
    plain = [event({"choices": [{"delta": {"content": w}}]}) for w in ("a", "b ", "é")]
    usage = event({"choices": [], "usage": USAGE})
    done = b"data: [DONE]" + separator
    keepalive = b": keep-alive" + separator
    return (b"".join([*asked, keepalive, usage, done]), b"".join([*plain, keepalive, done]))


def run(capture: UsageCapture, data: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.append(capture.feed(data[start:cut]))
        start = cut
    out.append(capture.flush())
    return b"".join(out)


@given(
    separator=st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30),
    hide=st.booleans(),
)
def test_usage_is_found_and_hidden_whatever_the_chunking(
    separator: bytes, cuts: list[int], hide: bool
) -> None:
    full, not_asked = sse(separator)
    cuts = [c for c in cuts if c <= len(full)]
    capture = UsageCapture(hide_usage_chunk=hide)
    assert run(capture, full, cuts) == (not_asked if hide else full)
    # Without a usage chunk, the answer's text is what an estimate counts.
    for stream in (not_asked, full.replace(b'"choices":[],"usage":{', b'"choices":[],"x":{')):
        without = UsageCapture(hide_usage_chunk=hide)
        run(without, stream, cuts)
        assert without.usage is None
        assert without.answer_chars == len("ab é")
    assert capture.usage is not None
    assert (
        capture.usage.prompt_tokens,
        capture.usage.completion_tokens,
        capture.usage.total_tokens,
    ) == (3, 5, 8)
    assert capture.done


def test_events_pass_as_soon_as_they_are_complete() -> None:
    capture = UsageCapture(hide_usage_chunk=True)
    assert capture.feed(b'data: {"choices": [{"text": "a"}]}') == b""
    assert capture.feed(b"\n\ndata: {") == b'data: {"choices": [{"text": "a"}]}\n\n'
    assert capture.feed(b'"choices": []}\n\n') == b'data: {"choices": []}\n\n'  # no usage: kept
    assert capture.usage is None


def test_upstream_dying_mid_stream_ends_with_an_error_event_and_counts_no_tokens() -> None:
    body = {
        "model": "granite-8b",
        "messages": [{"role": "user", "content": "long story"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {secret('frank')}"}
    with running_mock(latency_ms=500) as mock, running_gateway(make_config(mock.url)) as gateway:
        before = counters(scrape(gateway))
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=10
        ) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: {")
            mock.stop()
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest, "the client was not told"
        last = orjson.loads(rest[-1].removeprefix("data: "))
        assert last["error"]["type"] == "upstream_error"
        after = counters(scrape(gateway))
        assert after[usage_key("authorized_hits", TOKENS_NS, "frank", "granite-8b")] == 0
        assert usage_key("maas_completion_tokens", TOKENS_NS, "frank", "granite-8b") not in after
        assert before == {}
        assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
