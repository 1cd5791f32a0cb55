"""Cross-request coalescing ("auto-pipelining"): the calls of one event-loop turn share a round trip.

Why: each Redis round trip costs the gateway a command to pack, a socket
write, a reply to parse and an event-loop wake-up, and costs Redis as much
again. At 16 concurrent requests these per-call costs, not the counting,
bounded the gateway. So the operations that concurrent requests submit in
one loop turn are handed to `send` together (one batched script call), and
each caller gets back exactly its own result, or its own error.

At most `max_in_flight` batches are outstanding at once. Operations that
arrive while every slot is busy wait for the next free one and leave
together: under load batches grow instead of round trips multiplying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Op = TypeVar("Op")
Result = TypeVar("Result")

# One batch's outcome: per operation its result or the error that concerns it alone.
Send = Callable[[Sequence[Op]], Awaitable[Sequence[Result | Exception]]]


class Coalescer(Generic[Op, Result]):
    """Queues operations and sends those of one loop turn in one `send` call.

    `send` either returns one entry per operation (a result, or an exception
    that fails that operation only) or raises, which fails every operation of
    that batch (the round trip itself failed).
    """

    def __init__(
        self, send: Send[Op, Result], max_batch: int = 256, max_in_flight: int = 4
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[Op, asyncio.Future[Result]]] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, op: Op) -> Result:
        """Run `op` in the next batch and return its own result (or raise its own error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((op, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # Start once the callers already scheduled in this loop turn have queued too.
        if not self._scheduled and len(self._in_flight) < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and len(self._in_flight) < self._max_in_flight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            task = loop.create_task(self._flush(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    async def _flush(self, batch: list[tuple[Op, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send([op for op, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} operations")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the round trip failed: every operation in it did
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller went away; the operation ran all the same
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until every queued and in-flight operation has its answer."""
        while self._queue or self._in_flight or self._scheduled:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            else:
                await asyncio.sleep(0)
