"""`Coalescer` on its own: batching by loop turn, the in-flight bound, and whose error is whose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from maas_metrics.limiter.coalesce import Coalescer


class Recorder:
    """A `send` that records its batches, can be held open, and answers op * 10 or op's error."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, ops: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(ops))
        await self.gate.wait()
        if 99 in ops:
            raise ConnectionError("the round trip failed")
        return [ValueError(f"bad {op}") if op < 0 else op * 10 for op in ops]


async def test_one_batch_per_loop_turn_each_caller_its_own_answer() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.send, max_batch=256, max_in_flight=4)
    first = await asyncio.gather(*(coalescer.submit(i) for i in range(1, 6)))
    second = await asyncio.gather(*(coalescer.submit(i) for i in range(6, 8)))
    assert first == [10, 20, 30, 40, 50] and second == [60, 70]
    assert rec.batches == [[1, 2, 3, 4, 5], [6, 7]]


async def test_max_batch_splits_a_turn() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.send, max_batch=2, max_in_flight=8)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(1, 6))) == [
        10,
        20,
        30,
        40,
        50,
    ]
    assert rec.batches == [[1, 2], [3, 4], [5]]


async def test_while_every_slot_is_busy_later_calls_join_one_batch() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.send, max_batch=256, max_in_flight=1)
    held = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0.01)
    later = []
    for i in (2, 3, 4):  # three separate loop turns while the first batch is out
        later.append(asyncio.ensure_future(coalescer.submit(i)))
        await asyncio.sleep(0.01)
    assert rec.batches == [[1]]
    rec.gate.set()
    assert await held == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]]


async def test_an_operation_error_fails_that_caller_only() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.send)
    results = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-2), coalescer.submit(3), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -2"
    assert rec.batches == [[1, -2, 3]]


async def test_a_failed_round_trip_fails_its_batch_and_no_other() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.send, max_batch=2)
    results = await asyncio.gather(
        *(coalescer.submit(i) for i in (1, 99, 3, 4)), return_exceptions=True
    )
    assert isinstance(results[0], ConnectionError) and isinstance(results[1], ConnectionError)
    assert results[2:] == [30, 40]


async def test_a_caller_that_goes_away_leaves_the_others_their_answers() -> None:
    rec = Recorder()
    rec.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(rec.send)
    calls = [asyncio.ensure_future(coalescer.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    calls[1].cancel()
    rec.gate.set()
    assert await calls[0] == 10 and await calls[2] == 30
    with pytest.raises(asyncio.CancelledError):
        await calls[1]
    await coalescer.drain()
    assert rec.batches == [[1, 2, 3]]  # its operation was sent all the same


def test_bounds_must_be_positive() -> None:
    async def send(ops: Sequence[int]) -> list[int | Exception]:
        return list(ops)

    with pytest.raises(ValueError):
        Coalescer(send, max_batch=0)
    with pytest.raises(ValueError):
        Coalescer(send, max_in_flight=0)
