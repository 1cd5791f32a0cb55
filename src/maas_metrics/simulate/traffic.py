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

or from the command line: ``maas-metrics traffic --help``. The parts: `keys` (who sends),
`planner` (what), `sender` (one request), `stats` (what came back); this module paces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence

import httpx

from maas_metrics.simulate.keys import SimUser, TrafficError, api_base
from maas_metrics.simulate.planner import PlannedRequest, RequestPlanner
from maas_metrics.simulate.sender import send_request
from maas_metrics.simulate.stats import Result, TrafficStats


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
