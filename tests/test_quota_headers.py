"""What clients see: every answer's remaining quota and reset equal the counters in Redis.

The counters are read straight from Redis (GET / PTTL / the reservation
total), never through the gateway; the IETF fields are parsed by hand here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from maas_metrics.config import parse_config
from tests.gateway_harness import RunningMock, make_config, running_gateway, running_mock, secret
from tests.servers import RedisServer

REQUEST_KEY = "maas:13:maas/requests:{tier}-requests:{user}"
TOKEN_KEY = "maas:11:maas/tokens:{tier}-tokens:{user}"
ITEM = re.compile(r'^"(?P<name>[^"]+)"(?P<params>(;[a-z]+=("[^"]*"|\d+))*)$')


def parse_list(value: str) -> dict[str, dict[str, str]]:
    """A structured-field list of strings with parameters: name -> {param: value}."""
    out: dict[str, dict[str, str]] = {}
    for member in value.split(", "):
        match = ITEM.match(member)
        assert match, member
        params = dict(p.split("=", 1) for p in match["params"].split(";")[1:])
        out[match["name"]] = {k: v.strip('"') for k, v in params.items()}
    return out


class Counters:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def read(self, key: str) -> tuple[int, int]:
        """(value, seconds to the window end rounded up as the headers do)."""
        value = int(self.client.get(key) or 0)
        ttl_ms = self.client.pttl(key)
        return value, math.ceil(ttl_ms / 1000) if ttl_ms > 0 else -1

    def held(self, key: str) -> int:
        return int(self.client.hget(f"maas-res:{key}", "#") or 0)


def assert_reset(header: str, ttl_after: int) -> None:
    # The header was computed a moment before Redis was read: same second or one more.
    assert int(header) - ttl_after in (0, 1), (header, ttl_after)


def check(
    headers: httpx.Headers, counters: Counters, tier: str, user: str, limits: tuple[int, int]
) -> None:
    """The answer's request and token quota == max - counter; resets == the keys' TTLs."""
    req_max, tok_max = limits
    used, req_ttl = counters.read(REQUEST_KEY.format(tier=tier, user=user))
    token_key = TOKEN_KEY.format(tier=tier, user=user)
    tokens, tok_ttl = counters.read(token_key)
    held = counters.held(token_key)
    assert headers["X-RateLimit-Limit"] == str(req_max)
    assert headers["X-RateLimit-Remaining"] == str(max(req_max - used, 0))
    assert_reset(headers["X-RateLimit-Reset"], req_ttl)
    assert headers["X-RateLimit-Limit-Tokens"] == str(tok_max)
    assert headers["X-RateLimit-Remaining-Tokens"] == str(max(tok_max - tokens - held, 0))
    if tok_ttl > 0:
        assert_reset(headers["X-RateLimit-Reset-Tokens"], tok_ttl)
    policy = parse_list(headers["RateLimit-Policy"])
    state = parse_list(headers["RateLimit"])
    assert policy[f"{tier}-requests"] == {"q": str(req_max), "w": "120", "qu": "requests"}
    assert policy[f"{tier}-tokens"] == {"q": str(tok_max), "w": "60", "qu": "tokens"}
    assert state[f"{tier}-requests"] == {
        "r": headers["X-RateLimit-Remaining"],
        "t": headers["X-RateLimit-Reset"],
    }
    assert state[f"{tier}-tokens"] == {
        "r": headers["X-RateLimit-Remaining-Tokens"],
        "t": headers["X-RateLimit-Reset-Tokens"],
    }


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def body(prompt: str, stream: bool = False, max_tokens: int = 5) -> dict[str, Any]:
    return {
        "model": "granite-8b",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def test_scripted_sequence_headers_equal_the_counters(
    mock: RunningMock, redis: RedisServer
) -> None:
    counters = Counters(redis.url)
    auth = {"Authorization": f"Bearer {secret('alice')}"}
    with running_gateway(make_config(mock.url, storage=redis.url)) as gateway:
        url = f"{gateway}/v1/chat/completions"
        # Non-streamed answers: the headers show the counters after this answer's usage.
        for prompt in ("one", "three four five six"):
            answer = httpx.post(url, json=body(prompt), headers=auth, timeout=10)
            assert answer.status_code == 200
            check(answer.headers, counters, "free", "alice", (5, 100))
        # A streamed answer: headers leave before the body, so they show the counters at
        # admission; nothing else is in flight, so that is the counter read just before.
        before = counters.read(TOKEN_KEY.format(tier="free", user="alice"))[0]
        with httpx.stream("POST", url, json=body("stream", True), headers=auth) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["X-RateLimit-Remaining-Tokens"] == str(100 - before)
            streamed.read()
        # A big completion overshoots the token limit; the next call is refused by tokens.
        big = body("tokens " * 60)
        answer = httpx.post(url, json=big, headers=auth, timeout=10)
        assert answer.status_code == 200
        check(answer.headers, counters, "free", "alice", (5, 100))
        assert answer.headers["X-RateLimit-Remaining-Tokens"] == "0"
        refused = httpx.post(url, json=body("again"), headers=auth, timeout=10)
        assert refused.status_code == 429
        tokens, ttl = counters.read(TOKEN_KEY.format(tier="free", user="alice"))
        assert tokens >= 100
        assert refused.headers["X-RateLimit-Limit"] == "100"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert_reset(refused.headers["Retry-After"], ttl)
        assert parse_list(refused.headers["RateLimit"]) == {
            "free-tokens": {"r": "0", "t": refused.headers["Retry-After"]}
        }
    counters.client.close()


def test_reservation_headers_show_the_hold_then_the_commit(
    mock: RunningMock, redis: RedisServer
) -> None:
    data = make_config(mock.url, storage=redis.url).model_dump(mode="json")
    data["tiers"][1]["token_limit"]["mode"] = "reservation"  # premium: 50,000 tokens / 60 s
    counters = Counters(redis.url)
    token_key = TOKEN_KEY.format(tier="premium", user="dave")
    with running_gateway(parse_config(data)) as gateway:
        api = openai.OpenAI(base_url=f"{gateway}/v1", api_key=secret("dave"), max_retries=0)
        for prompt in ("first question", "second, longer question"):
            raw = api.chat.completions.with_raw_response.create(
                model="granite-8b", messages=[{"role": "user", "content": prompt}], max_tokens=9
            )
            check(raw.headers, counters, "premium", "dave", (20, 50_000))  # type: ignore[arg-type]
            assert counters.held(token_key) == 0  # committed: the hold became the real usage
        used = counters.read(token_key)[0]  # nothing in flight: the counter at admission
        with api.chat.completions.with_streaming_response.create(
            model="granite-8b",
            messages=[{"role": "user", "content": "a stream"}],
            max_tokens=9,
            stream=True,
        ) as streamed:
            hold = 9 + math.ceil(len("a stream") / 4)
            assert streamed.headers["X-RateLimit-Remaining-Tokens"] == str(50_000 - used - hold)
            for _ in streamed.iter_lines():
                pass
    counters.client.close()
