"""Must-happen work (token accounting, draining an upstream) that no client disconnect cancels.

A request handler or a response body can be cancelled at any await when its
client goes away. Accounting that ran there could stop between the limiter
counter update and the metrics update. Work spawned here runs in its own
task: the caller may await it (shielded) or leave; the gateway waits for
what is still running when it shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Background:
    """The set of running must-happen tasks (strong references, so none is collected mid-way)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` to its end even if the awaiting caller is cancelled."""
        return await asyncio.shield(self.spawn(work))

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` s for running work, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
