"""Every delivered token is counted once; a 400 counts nothing; answers without usage are counted.

Real gateway, real Redis where the store matters, the official `openai`
client. The truth is computed from what the client received (the mock
model's documented rule, tokens = ceil(characters / 4)), never from the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import redis as redis_lib

from maas_metrics.gateway import Gateway
from maas_metrics.limiter.redis import RedisStore
from maas_metrics.policies import tier_policies
from tests.fake_upstream import SSE_HEAD, fake_upstream, json_reply, sse_events, wants_usage
from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    counters,
    make_config,
    running_gateway,
    running_gateway_object,
    running_mock,
    scrape,
    scrape_text,
    secret,
    usage_key,
)
from tests.servers import RedisServer

MODEL = "granite-8b"
PROMPT = "Tell me about token metering, in some detail please."


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def token_hits(gateway: str, user: str) -> float:
    return scrape(gateway).get(usage_key("authorized_hits", TOKENS_NS, user, MODEL), 0)


def redis_tokens(redis: RedisServer, config: Any, user: str, tier: str) -> int:
    limit = tier_policies(config)[tier].tokens
    assert limit is not None
    value = redis_lib.Redis.from_url(redis.url).get(limit.counter_key(user))
    return int(value or 0)


def walk_away(base: str, user: str, include_usage: bool, at_first_chunk: bool = False) -> str:
    """Stream with the official client, stop reading at finish_reason (or the first chunk), close."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=secret(user), max_retries=0, timeout=20)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True} if include_usage else None,
    )
    text = ""
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            if chunk.choices[0].finish_reason or (at_first_chunk and text):
                break
    stream.close()
    return text


@pytest.fixture
def idle() -> Callable[[Gateway], bool]:
    return lambda gateway: len(gateway.background) == 0


@pytest.mark.parametrize("storage", ["memory", "redis"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_a_client_walking_away_at_finish_reason_is_charged_what_it_was_sent(
    storage: str, include_usage: bool, redis: RedisServer, idle: Callable[[Gateway], bool]
) -> None:
    with running_mock(latency_ms=400) as mock:
        config = make_config(mock.url, storage=redis.url if storage == "redis" else "memory")
        with running_gateway_object(config) as (gateway, state):
            text = walk_away(gateway, "dave", include_usage)
            truth = tokens(PROMPT) + tokens(text)
            assert text  # it read the whole answer up to finish_reason
            wait_until(lambda: token_hits(gateway, "dave") == truth)
            metrics = scrape(gateway)
            key = ("maas/tokens", "dave", "premium", MODEL)
            assert metrics[usage_key("maas_prompt_tokens", *key[:1], "dave", MODEL)] == tokens(
                PROMPT
            )
            assert metrics[usage_key("maas_completion_tokens", TOKENS_NS, "dave", MODEL)] == tokens(
                text
            )
            if storage == "redis":
                assert redis_tokens(redis, config, "dave", "premium") == truth
            wait_until(lambda: idle(state))  # the reader finished: no task left behind
            time.sleep(0.3)
            assert token_hits(gateway, "dave") == truth  # counted once, not twice


def test_a_client_leaving_mid_stream_is_charged_the_whole_answer(
    redis: RedisServer, idle: Callable[[Gateway], bool]
) -> None:
    """The upstream generated (and billed) the whole answer; the gateway reads it to the end."""
    with running_mock(latency_ms=600) as mock:
        config = make_config(mock.url, storage=redis.url)
        with running_gateway_object(config) as (gateway, state):
            walk_away(gateway, "frank", include_usage=False, at_first_chunk=True)
            # The same request, read to the end by an independent client, says what it costs.
            full = httpx.post(
                f"{mock.url}/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]},
                timeout=10,
            ).json()["usage"]["total_tokens"]
            hits = partial_hits(gateway, "frank")
            wait_until(lambda: hits() == full)
            assert redis_tokens(redis, config, "frank", "enterprise") == full
            wait_until(lambda: idle(state))


def partial_hits(gateway: str, user: str) -> Callable[[], float]:
    return lambda: token_hits(gateway, user)


def test_a_disconnect_during_the_report_leaves_store_and_metrics_equal(redis: RedisServer) -> None:
    """Redis writes are paused while the token report runs; the client leaves meanwhile.

    The gateway's store gets a 5 s timeout, so a pause on a loaded machine is never taken
    for an outage (which counts in metrics only, by design).
    """
    control = redis_lib.Redis.from_url(redis.url)
    with running_mock(latency_ms=400) as mock:
        config = make_config(mock.url, storage=redis.url)
        with running_gateway_object(config) as (gateway, state):
            state.limiter.store = RedisStore(redis.url, timeout_seconds=5.0)
            client = openai.OpenAI(
                base_url=f"{gateway}/v1", api_key=secret("dave"), max_retries=0, timeout=20
            )
            stream = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    # The usage chunk and the report come next: hold Redis writes, then leave.
                    control.client_pause(250, all=False)
                    break
            stream.close()
            # A JSON answer: admitted at once, the upstream answers after 400 ms, the report
            # then waits for Redis until 500 ms, and the client leaves at 450 ms.
            body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
            with ThreadPoolExecutor(1) as pool:
                leaving = pool.submit(
                    httpx.post,
                    f"{gateway}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {secret('dave')}"},
                    timeout=0.45,
                )
                time.sleep(0.15)
                control.client_pause(350, all=False)
                with pytest.raises(httpx.TimeoutException):
                    leaving.result()
            answer = httpx.post(f"{mock.url}/chat/completions", json=body, timeout=10).json()[
                "usage"
            ]["total_tokens"]

            def equal() -> bool:
                stored = redis_tokens(redis, config, "dave", "premium")
                return stored == 2 * answer and token_hits(gateway, "dave") == stored

            with contextlib.suppress(AssertionError):
                wait_until(equal)
            stored = redis_tokens(redis, config, "dave", "premium")
            assert (stored, token_hits(gateway, "dave")) == (2 * answer, 2 * answer)


# --- a 400 changes nothing ---------------------------------------------------------------

BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("stream_options not an object", {"stream": True, "stream_options": "yes"}),
    ("stream_options without stream", {"stream_options": {"include_usage": True}}),
    ("stream_options with stream false", {"stream": False, "stream_options": {}}),
    ("include_usage not a boolean", {"stream": True, "stream_options": {"include_usage": 1}}),
    ("stream not a boolean", {"stream": "true"}),
    ("messages missing", {"messages": None}),
    ("messages empty", {"messages": []}),
    ("messages not a list", {"messages": "hello"}),
    ("message not an object", {"messages": ["hello"]}),
    ("model not a string", {"model": 7}),
]


def redis_snapshot(redis: RedisServer) -> dict[Any, Any]:
    client = redis_lib.Redis.from_url(redis.url)
    return {key: client.get(key) for key in client.keys("*")}


def test_bodies_rejected_with_400_change_no_counter(redis: RedisServer) -> None:
    with running_mock() as mock:
        config = make_config(mock.url, storage=redis.url)
        with running_gateway(config) as gateway:
            headers = {"Authorization": f"Bearer {secret('dave')}"}  # 20 requests / 2 min
            good = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
            assert (
                httpx.post(
                    f"{gateway}/v1/chat/completions", json=good, headers=headers, timeout=10
                ).status_code
                == 200
            )
            scrape_text(gateway)
            before, stored = scrape_text(gateway), redis_snapshot(redis)
            for name, change in BAD_BODIES * 2:  # 21 bad bodies: more than dave's quota
                body = {**good, **change}
                reply = httpx.post(
                    f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=10
                )
                assert reply.status_code == 400, (name, reply.text)
                assert reply.json()["error"]["type"] == "invalid_request_error", name
            reply = httpx.post(
                f"{gateway}/v1/completions",
                json={"model": MODEL, "prompt": 5},
                headers=headers,
                timeout=10,
            )
            assert reply.status_code == 400
            assert scrape_text(gateway) == before
            assert redis_snapshot(redis) == stored
            # Dave still has the 19 requests left of his 20.
            statuses = [
                httpx.post(
                    f"{gateway}/v1/chat/completions", json=good, headers=headers, timeout=10
                ).status_code
                for _ in range(20)
            ]
            assert statuses == [200] * 19 + [429]


# --- answers without usage ---------------------------------------------------------------

ANSWER = "An answer that says nothing about its own usage, of some length."


async def no_usage(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    """An upstream that never reports usage, JSON or stream."""
    if body.get("stream"):
        writer.write(SSE_HEAD + sse_events([ANSWER[:20], ANSWER[20:]], False, None))
        return
    writer.write(
        json_reply(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}],
            },
        )
    )


@pytest.mark.parametrize("mode", ["estimate", "zero"])
def test_answers_without_usage_are_counted_as_configured(mode: str) -> None:
    with fake_upstream(no_usage) as upstream:
        config = make_config(upstream.url, metering={"usage_missing": mode})
        with running_gateway(config) as gateway:
            client = openai.OpenAI(
                base_url=f"{gateway}/v1", api_key=secret("dave"), max_retries=0, timeout=20
            )
            messages: Any = [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": PROMPT},
            ]
            answer = client.chat.completions.create(model=MODEL, messages=messages)
            assert answer.choices[0].message.content == ANSWER
            streamed = "".join(
                chunk.choices[0].delta.content or ""
                for chunk in client.chat.completions.create(
                    model=MODEL, messages=messages, stream=True
                )
                if chunk.choices
            )
            assert streamed == ANSWER
            metrics = counters(scrape(gateway))
    prompt_chars = len("Be brief.") + len(PROMPT)
    each = math.ceil(prompt_chars / 4) + math.ceil(len(ANSWER) / 4) if mode == "estimate" else 0
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "dave", MODEL)] == 2 * each
    assert metrics[usage_key("maas_answers_without_usage", TOKENS_NS, "dave", MODEL)] == 2
    assert metrics[usage_key("authorized_calls", REQUESTS_NS, "dave", MODEL)] == 2


# --- a stream cut right after its usage chunk ---------------------------------------------

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def cut_after_usage(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    """Chunked stream: events, the usage chunk, then the connection drops (no final chunk)."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    data = sse_events(["Hello ", "there"], wants_usage(body), USAGE, done=False)
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()


def test_a_stream_cut_right_after_its_usage_chunk_is_counted() -> None:
    with (
        fake_upstream(cut_after_usage) as upstream,
        running_gateway(make_config(upstream.url)) as gateway,
    ):
        if True:
            with httpx.stream(
                "POST",
                f"{gateway}/v1/chat/completions",
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "x"}],
                    "stream": True,
                },
                headers={"Authorization": f"Bearer {secret('dave')}"},
                timeout=10,
            ) as response:
                events = [line for line in response.iter_lines() if line.startswith("data: ")]
            assert '"error"' in events[-1]  # told in-band that the stream broke
            assert any('"Hello "' in e for e in events)
            wait_until(lambda: token_hits(gateway, "dave") == USAGE["total_tokens"])


# --- an upstream that stalls after the client left: bounded, nothing leaks ----------------


def test_a_walk_away_drain_is_bounded_by_the_upstream_timeout() -> None:
    async def stall(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        del body
        writer.write(SSE_HEAD + sse_events(["All ", "done"], True, None, done=False))
        await writer.drain()
        await asyncio.sleep(30)  # stalled: never another byte

    with fake_upstream(stall) as upstream:
        config = make_config(upstream.url, timeout_seconds=1.0)
        with running_gateway_object(config) as (gateway, state):
            with httpx.stream(
                "POST",
                f"{gateway}/v1/chat/completions",
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "x"}],
                    "stream": True,
                },
                headers={"Authorization": f"Bearer {secret('dave')}"},
                timeout=10,
            ) as response:
                next(response.iter_raw())
            # The client left; the upstream never finishes: the reader gives up after the
            # upstream timeout, counts no tokens, closes the upstream connection and
            # leaves nothing running.
            wait_until(lambda: len(state.background) == 0, seconds=10)
            wait_until(lambda: upstream.gone == 1, seconds=5)
            assert token_hits(gateway, "dave") == 0
