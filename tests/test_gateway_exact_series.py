"""No counter series is ever born above zero: every one is scraped at 0 before it counts.

The live test scrapes `/metrics` in a tight loop while real clients (the
official `openai` package, streamed and not, some walking away, some only
ever rate-limited) run traffic through the real gateway, across a restart on
a shared Redis, and checks the first sighting of every counter series.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from maas_metrics.telemetry.metrics import Family
from tests.gateway_harness import (
    TOKENS_NS,
    Series,
    counters,
    make_config,
    parse_metrics,
    running_gateway,
    running_mock,
    scrape_text,
    usage_key,
)
from tests.servers import RedisServer

# --- the Family rule, step by step (times given explicitly) ---------------------------------


def test_a_new_series_shows_zero_once_then_its_value() -> None:
    family = Family("authorized_calls", "h", "counter", ("user",))
    family.inc(("alice",), 3)
    assert family.get(("alice",)) == 3  # the true value is never hidden from the code
    assert list(family.samples(now=10.0)) == [('{user="alice"}', 0)]
    family.inc(("alice",), 2)
    assert list(family.samples(now=11.0)) == [('{user="alice"}', 5)]
    family.inc(("alice",))
    assert list(family.samples(now=12.0)) == [('{user="alice"}', 6)]
    assert family.held() == 0


def test_a_series_born_between_scrapes_waits_for_its_own_zero() -> None:
    family = Family("limited_calls", "h", "counter", ("user",))
    family.inc(("a",))
    assert dict(family.samples(now=1.0)) == {'{user="a"}': 0}
    family.inc(("b",), 7)
    assert dict(family.samples(now=2.0)) == {'{user="a"}': 1, '{user="b"}': 0}
    assert dict(family.samples(now=3.0)) == {'{user="a"}': 1, '{user="b"}': 7}


def test_gauges_show_their_value_at_once() -> None:
    family = Family("maas_limit_max", "h", "gauge", ("tier",))
    family.set(("free",), 100)
    assert list(family.samples(now=1.0)) == [('{tier="free"}', 100)]


def test_with_a_hold_every_scraper_of_an_ha_pair_reads_the_zero() -> None:
    """Two Prometheus replicas scrape every 15 s, 6 s apart; hold = scrape interval."""
    family = Family("authorized_hits", "h", "counter", ("user",), hold_seconds=15)
    rng = random.Random(5)
    first: dict[tuple[str, str], float] = {}
    t = 100.0
    for step in range(40):
        t = 100.0 + step * 7.5
        replica = "a" if step % 2 == 0 else "b"
        if rng.random() < 0.5:
            family.inc((f"u{rng.randrange(6)}",), rng.randrange(1, 50))
        for text, value in family.samples(now=t):
            first.setdefault((replica, text), value)
    assert first and all(value == 0 for value in first.values()), first
    assert {replica for replica, _ in first} == {"a", "b"}
    # Without the hold the second replica would see a value above zero.
    family = Family("authorized_hits", "h", "counter", ("user",), hold_seconds=0)
    family.inc(("u",), 5)
    assert list(family.samples(now=1.0)) == [('{user="u"}', 0)]
    assert list(family.samples(now=1.1)) == [('{user="u"}', 5)]


# --- live: real gateway, real clients, a scrape loop ---------------------------------------

COUNTER_NAMES = {
    "authorized_hits",
    "authorized_calls",
    "limited_calls",
    "maas_prompt_tokens",
    "maas_completion_tokens",
    "maas_answers_without_usage",
    "maas_stream_events_too_large",
}
MODELS = ("granite-8b", "llama-3-8b")


class ScrapeLoop:
    """Scrapes as fast as it can in a thread and remembers each counter series' first value."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.first: dict[Series, float] = {}
        self.last: dict[Series, float] = {}
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                text = client.get(f"{getattr(self.base, 'operator', self.base)}/metrics").text
                self.scrapes += 1
                self.last = parse_metrics(text)
                for key, value in self.last.items():
                    if key[0] in COUNTER_NAMES:
                        self.first.setdefault(key, value)

    def __enter__(self) -> ScrapeLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def users(prefix: str, count: int) -> dict[str, tuple[list[str], str]]:
    out = {}
    for i in range(count):
        groups = ["system:authenticated"] + (["premium-users"] if i % 3 == 0 else [])
        out[f"{prefix}{i:02d}"] = (groups, f"sk-series-{prefix}{i:02d}")
    return out


def one_user(base: str, key: str, rng: random.Random) -> int:
    """1-7 requests, streamed or not, some walking away at finish_reason; returns tokens charged."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=20)
    tokens = 0
    for n in range(rng.randrange(1, 8)):
        model = rng.choice(MODELS)
        prompt = f"question {n} " * rng.randrange(1, 30)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
        try:
            if rng.random() < 0.5:
                answer = client.chat.completions.create(model=model, messages=messages)
                assert answer.usage is not None
                tokens += answer.usage.total_tokens
                continue
            walk_away = rng.random() < 0.5
            if walk_away:
                stream = client.chat.completions.create(
                    model=model,
                    messages=messages,
                    stream=True,
                )
            else:
                stream = client.chat.completions.create(
                    model=model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            text = ""
            for chunk in stream:
                if chunk.usage is not None:
                    tokens += chunk.usage.total_tokens
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    if walk_away and chunk.choices[0].finish_reason:
                        break
            stream.close()
            if walk_away:  # charged what it was sent: the mock's rule ceil(chars / 4)
                tokens += math.ceil(len(prompt) / 4) + math.ceil(len(text) / 4)
        except (openai.RateLimitError, openai.InternalServerError):
            pass  # 429, or 503 when a loaded machine makes Redis miss its 0.5 s timeout
    return tokens


def run_traffic(base: str, keys: dict[str, str], seed: int) -> dict[str, int]:
    results: dict[str, int] = {}

    def work(user: str, key: str) -> None:
        results[user] = one_user(base, key, random.Random(f"{seed}-{user}"))

    threads = [threading.Thread(target=work, args=item) for item in keys.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == len(keys)
    return results


def wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def token_totals(metrics: dict[Series, float], names: list[str]) -> dict[str, float]:
    out = dict.fromkeys(names, 0.0)
    for (name, labels), value in metrics.items():
        label = dict(labels)
        token_hits = name == "authorized_hits" and label["limitador_namespace"] == TOKENS_NS
        if token_hits and label["user"] in out:
            out[label["user"]] += value
    return out


def loop_saw(loop: ScrapeLoop, charged: dict[str, int]) -> bool:
    """The loop's latest scrape shows every charged token (no second scraper takes a 0 from it)."""
    return token_totals(loop.last, list(charged)) == charged


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_no_scraped_counter_series_is_born_above_zero(
    storage: str, redis: RedisServer, tmp_path: Path
) -> None:
    del tmp_path
    people = users("s", 30)
    keys = {user: key for user, (_, key) in people.items()}
    url = redis.url if storage == "redis" else "memory"
    with running_mock(latency_ms=20) as mock:
        config = make_config(mock.url, storage=url, extra_users=people)
        for life in range(2):  # the second life is a restart: every series is new again
            with running_gateway(config) as gateway, ScrapeLoop(gateway) as loop:
                charged = run_traffic(gateway, keys, seed=life)
                # Walk-away streams are reported by the gateway's reader shortly after. Read
                # what the loop scraped: a second scraper could take a new series' 0 from it.
                wait_until(partial(loop_saw, loop, charged))
            assert loop.scrapes > 20
            seen = {key: value for key, value in loop.first.items() if key[0] in COUNTER_NAMES}
            assert len(seen) > 60, len(seen)  # the loop did see the traffic's series
            born_high = {key: value for key, value in seen.items() if value != 0}
            assert born_high == {}
            limited = [key for key in seen if key[0] == "limited_calls"]
            assert limited, "some users were rate-limited"
            assert sum(charged.values()) > 0


def test_a_restarted_gateway_shows_its_series_at_zero_first() -> None:
    with running_mock() as mock:
        config = make_config(mock.url)
        body = {"model": "granite-8b", "messages": [{"role": "user", "content": "hello"}]}
        key = usage_key("authorized_hits", TOKENS_NS, "dave", "granite-8b")
        for _ in range(2):
            with running_gateway(config) as gateway:
                headers = {"Authorization": "Bearer sk-test-dave"}
                reply = httpx.post(
                    f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=10
                )
                assert reply.status_code == 200
                first = counters(parse_metrics(scrape_text(gateway)))
                assert first and set(first.values()) == {0}
                second = counters(parse_metrics(scrape_text(gateway)))
                assert second[key] == reply.json()["usage"]["total_tokens"]
