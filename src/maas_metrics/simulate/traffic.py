"""Synthetic users across every tier and model, at a chosen open-loop request rate.

Requests arrive as a Poisson process (exponential gaps, mean ``1 / rate``)
whether or not earlier ones have been answered, as real users do; only when
``max_in_flight`` requests are outstanding does a new arrival wait. Each
arrival draws its tier from a shuffled bag of all tiers that have users (so
every tier shows up within every ``len(tiers)`` requests, whatever the limits
do), a user of that tier at random, and a model from its own shuffled bag.
Prompts vary from a few words to a few hundred; ``stream_fraction`` of the
requests are streamed (SSE, with ``stream_options.include_usage`` so their
tokens are known) and ``completions_fraction`` use ``/v1/completions``.
At the reference limits free users soon get 429s while the others keep going.

Use it in-process::

    stats = await run_traffic(url, users_from_config(config, load_keys(path)),
                              [m.name for m in config.models], rate=10, duration=30)

or from the command line: ``maas-metrics traffic --help``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx
import orjson

from maas_metrics.config import Config, ConfigError, hash_key, read_yaml

Endpoint = Literal["chat", "completions"]
Outcome = Literal["ok", "limited", "error"]
T = TypeVar("T")


class TrafficError(Exception):
    """Input the generator cannot use or a gateway it cannot reach; `str()` is one line."""


@dataclass(frozen=True, slots=True)
class SimUser:
    """A synthetic user: the name and tier the gateway should derive from `key`."""

    name: str
    key: str
    tier: str


@dataclass(frozen=True, slots=True)
class Result:
    """What one request got back. `status` is 0 when no HTTP response arrived; `body` was sent."""

    user: str
    tier: str
    model: str
    endpoint: Endpoint
    stream: bool
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    error: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def outcome(self) -> Outcome:
        if 200 <= self.status < 300:
            return "ok"
        return "limited" if self.status == 429 else "error"


@dataclass(slots=True)
class Counts:
    """Tallies of results: `requests == ok + limited + errors`."""

    requests: int = 0
    ok: int = 0
    limited: int = 0
    errors: int = 0
    streamed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, result: Result) -> None:
        self.requests += 1
        outcome = result.outcome
        if outcome == "ok":
            self.ok += 1
        elif outcome == "limited":
            self.limited += 1
        else:
            self.errors += 1
        self.streamed += result.stream
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens


@dataclass
class TrafficStats:
    """Live and final tallies, overall and per tier, model and user."""

    total: Counts = field(default_factory=Counts)
    tiers: dict[str, Counts] = field(default_factory=dict)
    models: dict[str, Counts] = field(default_factory=dict)
    users: dict[str, Counts] = field(default_factory=dict)
    elapsed: float = 0.0
    unfinished: int = 0  # requests still unanswered when the run ended (cancelled, not counted)

    def add(self, result: Result) -> None:
        self.total.add(result)
        for table, name in (
            (self.tiers, result.tier),
            (self.models, result.model),
            (self.users, result.user),
        ):
            table.setdefault(name, Counts()).add(result)


# --- inputs ---------------------------------------------------------------------------


def load_keys(path: str | Path) -> dict[str, str]:
    """Read a keys file (`keys: {user: secret}`, as examples/demo-keys.yaml)."""
    path = Path(path)
    try:
        data = read_yaml(path, "keys file")
    except ConfigError as error:
        raise TrafficError(str(error)) from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not keys:
        raise TrafficError(
            f"{path}: expected a mapping `keys: {{user: secret}}` with at least one key"
        )
    for user, secret in keys.items():
        if not isinstance(user, str) or not user or not isinstance(secret, str) or not secret:
            raise TrafficError(f"{path}: keys.{user}: user and secret must be non-empty strings")
    return dict(keys)


def users_from_config(config: Config, keys: Mapping[str, str]) -> list[SimUser]:
    """Match each secret to its config entry by SHA-256 and give the user its tier."""
    by_hash = {entry.sha256: entry for entry in config.api_keys}
    users: list[SimUser] = []
    for name, secret in keys.items():
        entry = by_hash.get(hash_key(secret))
        if entry is None:
            raise TrafficError(f"keys.{name}: this key is not in the config's api_keys")
        if entry.user != name:
            raise TrafficError(f"keys.{name}: the config gives this key to user {entry.user!r}")
        tier = config.tier_for_groups(entry.groups)
        if tier is None:
            raise TrafficError(f"keys.{name}: groups {entry.groups} match no tier of the config")
        users.append(SimUser(name, secret, tier.name))
    return users


def api_base(gateway_url: str) -> str:
    """The OpenAI base URL (ending in /v1) of a gateway given with or without /v1."""
    base = gateway_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TrafficError(f"gateway URL {gateway_url!r} must start with http:// or https://")
    return base if base.endswith("/v1") else base + "/v1"


# --- what to send ---------------------------------------------------------------------

_WORDS_TEXT = """
explain summarise translate compare list describe why how what when the a of to and quota token
model cluster latency request tier price limit window user gateway metric kubernetes inference
service deploy scale replica memory budget invoice report chart please briefly detail example
python yaml prometheus grafana alert dashboard cost
"""
_WORDS = _WORDS_TEXT.split()


class _Bag(Generic[T]):
    """Draws every item once in a shuffled order, then reshuffles: even coverage, no pattern."""

    def __init__(self, items: Sequence[T], rng: random.Random) -> None:
        self._items = list(items)
        self._rng = rng
        self._left: list[T] = []

    def draw(self) -> T:
        if not self._left:
            self._left = self._items.copy()
            self._rng.shuffle(self._left)
        return self._left.pop()


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    user: SimUser
    model: str
    endpoint: Endpoint
    stream: bool
    body: dict[str, Any]


class RequestPlanner:
    """The deterministic (given a seed) sequence of requests to send."""

    def __init__(
        self,
        users: Sequence[SimUser],
        models: Sequence[str],
        stream_fraction: float,
        completions_fraction: float,
        rng: random.Random,
    ) -> None:
        self._rng = rng
        by_tier: dict[str, list[SimUser]] = {}
        for user in users:
            by_tier.setdefault(user.tier, []).append(user)
        self._by_tier = by_tier
        self._tiers = _Bag(list(by_tier), rng)
        self._models = _Bag(list(models), rng)
        self._stream_fraction = stream_fraction
        self._completions_fraction = completions_fraction

    def _prompt(self) -> str:
        # Mostly short questions, some paragraphs, a few long documents.
        kind = self._rng.random()
        if kind < 0.55:
            count = self._rng.randint(3, 20)
        elif kind < 0.9:
            count = self._rng.randint(20, 120)
        else:
            count = self._rng.randint(120, 600)
        return " ".join(self._rng.choices(_WORDS, k=count))

    def next(self) -> PlannedRequest:
        user = self._rng.choice(self._by_tier[self._tiers.draw()])
        model = self._models.draw()
        stream = self._rng.random() < self._stream_fraction
        endpoint: Endpoint = (
            "completions" if self._rng.random() < self._completions_fraction else "chat"
        )
        body: dict[str, Any] = {"model": model}
        if endpoint == "chat":
            messages = [{"role": "user", "content": self._prompt()}]
            if self._rng.random() < 0.3:
                messages.insert(0, {"role": "system", "content": "You are a concise assistant."})
            body["messages"] = messages
        else:
            body["prompt"] = self._prompt()
        if self._rng.random() < 0.3:
            body["max_tokens"] = self._rng.randint(8, 128)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return PlannedRequest(user, model, endpoint, stream, body)


# --- sending --------------------------------------------------------------------------


def _error_message(content: bytes) -> str:
    try:
        message = orjson.loads(content)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return content[:200].decode(errors="replace")
    return str(message)


def _usage(data: Any) -> tuple[int, int]:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


async def send_request(client: httpx.AsyncClient, base: str, planned: PlannedRequest) -> Result:
    """Send one planned request and tell what came back (never raises for HTTP trouble)."""
    path = "/chat/completions" if planned.endpoint == "chat" else "/completions"
    headers = {"authorization": f"Bearer {planned.user.key}", "content-type": "application/json"}
    content = orjson.dumps(planned.body)
    started = time.perf_counter()

    def result(status: int, tokens: tuple[int, int] = (0, 0), error: str | None = None) -> Result:
        return Result(
            planned.user.name,
            planned.user.tier,
            planned.model,
            planned.endpoint,
            planned.stream,
            status,
            tokens[0],
            tokens[1],
            time.perf_counter() - started,
            error,
            planned.body,
        )

    try:
        if not planned.stream:
            response = await client.post(base + path, content=content, headers=headers)
            if response.status_code != 200:
                return result(response.status_code, error=_error_message(response.content))
            return result(200, _usage(orjson.loads(response.content)))
        async with client.stream("POST", base + path, content=content, headers=headers) as response:
            if response.status_code != 200:
                return result(response.status_code, error=_error_message(await response.aread()))
            tokens = (0, 0)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = orjson.loads(payload)
                if chunk.get("usage"):
                    tokens = _usage(chunk)
            return result(200, tokens)
    except httpx.HTTPError as error:
        return result(0, error=f"{type(error).__name__}: {error}")
    except (orjson.JSONDecodeError, ValueError) as error:
        return result(0, error=f"unreadable response: {error}")


class TrafficGenerator:
    """Open-loop synthetic traffic; `stats` is live while `run` goes on."""

    def __init__(
        self,
        gateway_url: str,
        users: Sequence[SimUser],
        models: Sequence[str],
        rate: float,
        *,
        stream_fraction: float = 0.2,
        completions_fraction: float = 0.1,
        seed: int | None = None,
        on_result: Callable[[Result], None] | None = None,
        max_in_flight: int = 256,
        timeout: float = 60.0,
    ) -> None:
        if not users:
            raise TrafficError("no users: give at least one API key")
        if not models:
            raise TrafficError("no models to call")
        if not rate > 0:
            raise TrafficError(f"rate must be > 0 requests/s, got {rate}")
        for name, fraction in (
            ("stream fraction", stream_fraction),
            ("completions fraction", completions_fraction),
        ):
            if not 0.0 <= fraction <= 1.0:
                raise TrafficError(f"{name} must be between 0 and 1, got {fraction}")
        if max_in_flight < 1:
            raise TrafficError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.base = api_base(gateway_url)
        self.users = list(users)
        self.rate = rate
        self.stats = TrafficStats()
        self._rng = random.Random(seed)
        self._planner = RequestPlanner(
            users, models, stream_fraction, completions_fraction, self._rng
        )
        self._on_result = on_result
        self._slots = asyncio.Semaphore(max_in_flight)
        self._limits = httpx.Limits(
            max_connections=max_in_flight, max_keepalive_connections=max_in_flight
        )
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._stopping = asyncio.Event()
        self._started: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since `run` started sending (live; frozen in `stats.elapsed` at the end)."""
        if self._started is None:
            return 0.0
        return self.stats.elapsed or time.monotonic() - self._started

    def stop(self) -> None:
        """End `run` early (safe to call from a signal handler)."""
        self._stopping.set()

    async def check_gateway(self) -> None:
        """Raise `TrafficError` unless the gateway answers and accepts the first user's key.

        It asks `GET /v1/models`, which spends no quota.
        """
        user = self.users[0]
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(
                    self.base + "/models", headers={"authorization": f"Bearer {user.key}"}
                )
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            raise TrafficError(f"cannot reach the gateway at {self.base}: {reason}") from None
        if response.status_code in (401, 403):
            raise TrafficError(
                f"the gateway at {self.base} rejects the key of user {user.name!r} "
                f"({response.status_code}): does it use the same config?"
            )

    def _record(self, result: Result) -> None:
        self.stats.add(result)
        if self._on_result is not None:
            self._on_result(result)

    async def _one(self, client: httpx.AsyncClient, planned: PlannedRequest) -> None:
        try:
            self._record(await send_request(client, self.base, planned))
        finally:
            self._slots.release()

    async def run(self, duration: float | None = None, drain_timeout: float = 10.0) -> TrafficStats:
        """Send traffic for `duration` seconds (None: until `stop()`), then wait for answers.

        Requests still unanswered `drain_timeout` seconds after the end are
        cancelled and reported in `stats.unfinished`, not counted.
        """
        if duration is not None and duration <= 0:
            raise TrafficError(f"duration must be > 0 seconds, got {duration}")
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._started = time.monotonic()
        end = start + duration if duration is not None else float("inf")
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(limits=self._limits, timeout=self._timeout) as client:
            try:
                await self._send_until_end(client, tasks, start, end)
                self.stats.elapsed = loop.time() - start
                if tasks:
                    _, unfinished = await asyncio.wait(set(tasks), timeout=drain_timeout)
                    self.stats.unfinished = len(unfinished)
            finally:
                # On cancellation too: no request task outlives the client it uses.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    async def _send_until_end(
        self, client: httpx.AsyncClient, tasks: set[asyncio.Task[None]], start: float, end: float
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = start
        while not self._stopping.is_set():
            next_at += self._rng.expovariate(self.rate)
            if next_at >= end:
                await self._wait_stop(end - loop.time())
                return
            if next_at > loop.time() and await self._wait_stop(next_at - loop.time()):
                return
            await self._slots.acquire()
            task = loop.create_task(self._one(client, self._planner.next()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _wait_stop(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on `stop()`; True if stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))
        return self._stopping.is_set()


async def run_traffic(
    gateway_url: str,
    users: Sequence[SimUser],
    models: Sequence[str],
    rate: float,
    duration: float | None,
    *,
    stream_fraction: float = 0.2,
    completions_fraction: float = 0.1,
    seed: int | None = None,
    on_result: Callable[[Result], None] | None = None,
    check: bool = True,
) -> TrafficStats:
    """Check the gateway answers, then send traffic for `duration` s (None: until cancelled)."""
    generator = TrafficGenerator(
        gateway_url,
        users,
        models,
        rate,
        stream_fraction=stream_fraction,
        completions_fraction=completions_fraction,
        seed=seed,
        on_result=on_result,
    )
    if check:
        await generator.check_gateway()
    return await generator.run(duration)
