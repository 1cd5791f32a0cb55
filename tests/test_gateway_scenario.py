"""The official openai client through the gateway: answers, exact metrics, identity from the key only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.gateway_harness import (
    MODELS,
    REQUESTS_NS,
    TIER_OF,
    TOKENS_NS,
    RunningMock,
    Series,
    counters,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
)


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


@pytest.fixture
def gateway(mock: RunningMock) -> Iterator[str]:
    with running_gateway(make_config(mock.url)) as url:
        yield url


def client(gateway: str, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=secret(user), max_retries=0)


@dataclass
class Call:
    """One request of the scenario and what the test predicts for it."""

    user: str
    model: str
    endpoint: str  # "chat" | "completions"
    stream: bool
    expect: (
        str  # "ok" | "requests" (429 by the request policy) | "tokens" (429 by the token policy)
    )
    prompt: str = "hi"
    max_tokens: int | None = 3


def run_call(gateway: str, call: Call) -> tuple[int, int, int] | str:
    """Send `call`; (prompt, completion, total) tokens the client received, or the 429 type."""
    api = client(gateway, call.user)
    extra: dict[str, Any] = {}
    if call.max_tokens is not None:
        extra["max_tokens"] = call.max_tokens
    if call.stream:
        extra["stream"] = True
        extra["stream_options"] = {"include_usage": True}
    try:
        if call.endpoint == "chat":
            result: Any = api.chat.completions.create(
                model=call.model, messages=[{"role": "user", "content": call.prompt}], **extra
            )
        else:
            result = api.completions.create(model=call.model, prompt=call.prompt, **extra)
    except openai.RateLimitError as error:
        body = error.body
        assert isinstance(body, dict)
        assert error.response.headers["Retry-After"].isdigit()
        return str(body["type"])
    if call.stream:
        chunks = list(result)
        texts = [
            (c.choices[0].delta.content or "") if call.endpoint == "chat" else c.choices[0].text
            for c in chunks
            if c.choices
        ]
        assert "".join(texts).strip(), "the stream carried no answer"
        usage = chunks[-1].usage
    else:
        answer = (
            result.choices[0].message.content if call.endpoint == "chat" else result.choices[0].text
        )
        assert answer
        usage = result.usage
    assert usage is not None
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


LONG_PROMPT = "tokens " * 60  # 420 characters: more than the free tier's 100 tokens in one request


def scenario() -> list[Call]:
    calls = [
        # alice (free, 5 requests / 120 s): five answers over every endpoint and mode, then two 429s.
        Call("alice", "granite-8b", "chat", False, "ok"),
        Call("alice", "granite-8b", "chat", True, "ok"),
        Call("alice", "llama-3-8b", "completions", False, "ok"),
        Call("alice", "llama-3-8b", "completions", True, "ok"),
        Call("alice", "mistral-7b", "chat", False, "ok"),
        Call("alice", "granite-8b", "chat", False, "requests"),
        Call("alice", "llama-3-8b", "completions", True, "requests"),
        # bob (free, 100 tokens / 60 s): one big request overshoots, the next ones hit the token policy.
        Call("bob", "mistral-7b", "completions", False, "ok", prompt=LONG_PROMPT),
        Call("bob", "mistral-7b", "chat", False, "tokens"),
        Call("bob", "granite-8b", "chat", True, "tokens"),
        # dave (premium) and frank (enterprise): well within their limits.
        Call("dave", "llama-3-8b", "chat", False, "ok", max_tokens=None),
        Call("dave", "llama-3-8b", "chat", False, "ok", prompt="hello there", max_tokens=None),
        Call("dave", "granite-8b", "completions", True, "ok", max_tokens=None),
        Call("frank", "mistral-7b", "chat", False, "ok", max_tokens=None),
        Call("frank", "mistral-7b", "chat", True, "ok", max_tokens=None),
        Call(
            "frank", "granite-8b", "completions", False, "ok", prompt="enterprise", max_tokens=None
        ),
    ]
    return calls


def expected_counters(
    results: list[tuple[Call, tuple[int, int, int] | str]],
) -> dict[Series, float]:
    """Limitador's counting rules applied by hand to the scenario's outcomes."""
    out: Counter[Series] = Counter()
    for call, result in results:
        user, model, tier = call.user, call.model, TIER_OF[call.user]
        if result == "requests":
            out[
                usage_key("limited_calls", REQUESTS_NS, user, model, limit_name=f"{tier}-requests")
            ] += 1
            continue
        out[usage_key("authorized_calls", REQUESTS_NS, user, model)] += 1
        out[usage_key("authorized_hits", REQUESTS_NS, user, model)] += 1
        if result == "tokens":
            out[
                usage_key("limited_calls", TOKENS_NS, user, model, limit_name=f"{tier}-tokens")
            ] += 1
            continue
        assert isinstance(result, tuple)
        prompt, completion, total = result
        out[usage_key("authorized_calls", TOKENS_NS, user, model)] += 1
        out[usage_key("authorized_hits", TOKENS_NS, user, model)] += total
        out[usage_key("maas_prompt_tokens", TOKENS_NS, user, model)] += prompt
        out[usage_key("maas_completion_tokens", TOKENS_NS, user, model)] += completion
    return {key: float(value) for key, value in out.items() if value}


def test_scripted_scenario_gives_exact_limitador_counters(gateway: str) -> None:
    results: list[tuple[Call, tuple[int, int, int] | str]] = []
    tokens_used: Counter[str] = Counter()
    for call in scenario():
        result = run_call(gateway, call)
        assert (result if isinstance(result, str) else "ok") == call.expect, (call, result)
        if isinstance(result, tuple):
            prompt, completion, total = result
            assert total == prompt + completion > 0
            # The scenario relies on these token budgets; check them with the client's numbers.
            if call.user == "alice":
                tokens_used[call.user] += total
                assert tokens_used[call.user] < 100
            if call.user == "bob":
                assert total >= 100
        results.append((call, result))

    scraped = {k: v for k, v in counters(scrape(gateway)).items() if v}
    assert scraped == expected_counters(results)


def test_identity_comes_from_the_key_only(gateway: str) -> None:
    forged = {
        "x-user": "mallory",
        "x-tier": "free",
        "x-model": "llama-3-8b",
        "x-limitador-namespace": "evil",
        "x-forwarded-user": "mallory",
        "x-remote-user": "mallory",
        "x-auth-request-user": "mallory",
        "x-groups": "free",
    }
    api = client(gateway, "frank")
    result = api.chat.completions.create(
        model="granite-8b",
        messages=[{"role": "user", "content": "who am I?"}],
        user="mallory",
        extra_headers=forged,
        extra_body={"tier": "free", "limitador_namespace": "evil"},
    )
    assert result.usage is not None
    scraped = {k: v for k, v in counters(scrape(gateway)).items() if v}
    assert scraped == {
        usage_key("authorized_calls", REQUESTS_NS, "frank", "granite-8b"): 1,
        usage_key("authorized_hits", REQUESTS_NS, "frank", "granite-8b"): 1,
        usage_key("authorized_calls", TOKENS_NS, "frank", "granite-8b"): 1,
        usage_key("authorized_hits", TOKENS_NS, "frank", "granite-8b"): result.usage.total_tokens,
        usage_key(
            "maas_prompt_tokens", TOKENS_NS, "frank", "granite-8b"
        ): result.usage.prompt_tokens,
        usage_key(
            "maas_completion_tokens", TOKENS_NS, "frank", "granite-8b"
        ): result.usage.completion_tokens,
    }


def test_models_listing_works_with_quota_exhausted(gateway: str) -> None:
    api = client(gateway, "carol")
    for _ in range(5):
        api.completions.create(model="granite-8b", prompt="x", max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        api.completions.create(model="granite-8b", prompt="x", max_tokens=1)
    before = scrape(gateway)
    assert sorted(m.id for m in api.models.list()) == sorted(MODELS)  # configured only
    assert api.models.retrieve("llama-3-8b").id == "llama-3-8b"
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("mock-model")  # served by the upstream, not configured here
    assert scrape(gateway) == before
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-wrong", max_retries=0).models.list()


def test_stream_without_include_usage_hides_usage_chunk_but_counts_tokens(gateway: str) -> None:
    body = {"model": "mistral-7b", "messages": [{"role": "user", "content": "stream me"}]}
    # The mock is deterministic: the same prompt, not streamed, tells how many tokens it uses.
    reference = client(gateway, "frank").chat.completions.create(**body)  # type: ignore[call-overload]
    assert reference.usage is not None
    events: list[bytes] = []
    with httpx.stream(
        "POST",
        f"{gateway}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {secret('dave')}"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-ratelimit-limit"] == "20"
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: ").encode())
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks and all(c["choices"] for c in chunks), "a usage-only chunk reached the client"
    assert not any(c.get("usage") for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == reference.choices[0].message.content

    scraped = scrape(gateway)
    assert scraped[usage_key("authorized_hits", TOKENS_NS, "dave", "mistral-7b")] == (
        reference.usage.total_tokens
    )
    assert scraped[usage_key("maas_completion_tokens", TOKENS_NS, "dave", "mistral-7b")] == (
        reference.usage.completion_tokens
    )
