"""How a report range (a, b] is read: whole roll-up buckets, and raw records only at the edges.

`plan` tiles (a, b] (epoch ms, to the millisecond) with the coarsest whole
buckets that fit, then each partial bucket at an edge with the next finer
level, down to raw records. At every edge it also weighs the complement:
when the part of a bucket outside the range is shorter than the part inside,
it reads the whole bucket and subtracts the finer outside part. So a partial
hour never reads more than half an hour of raw records, and a partial day
never more than twelve hourly buckets. The signed pieces add up to exactly
the records ending in (a, b] because every roll-up bucket equals the
records ending in it (the store writes both in one transaction, and the
report reads them in one snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Piece:
    """Add (`sign` 1) or subtract (-1) the records ending in (lo, hi].

    `level` indexes the bucket sizes given to `plan` (lo and hi are then whole buckets of that
    size); None means the raw records.
    """

    sign: int
    level: int | None
    lo: int
    hi: int


def plan(a: int, b: int, sizes: tuple[int, ...]) -> list[Piece]:
    """Signed pieces whose sum is (a, b]; `sizes` coarsest first, each a multiple of the next."""
    out: list[Piece] = []
    _whole(a, b, 0, 1, sizes, out)
    return out


def _whole(a: int, b: int, depth: int, sign: int, sizes: tuple[int, ...], out: list[Piece]) -> None:
    """(a, b] at level `depth`: its whole buckets, then the partial ones at each end."""
    if a >= b:
        return
    if depth == len(sizes):
        out.append(Piece(sign, None, a, b))
        return
    size = sizes[depth]
    first = -(-a // size) * size  # the first bucket boundary at or after a
    last = b // size * size  # the last bucket boundary at or before b
    if first > last:  # (a, b] lies inside one bucket
        _partial(a, b, depth, sign, sizes, out)
        return
    if first < last:
        out.append(Piece(sign, depth, first, last))
    _partial(a, first, depth, sign, sizes, out)
    _partial(last, b, depth, sign, sizes, out)


def _partial(
    a: int, b: int, depth: int, sign: int, sizes: tuple[int, ...], out: list[Piece]
) -> None:
    """(a, b] inside one bucket of level `depth`: the part finer, or the bucket minus the rest."""
    if a >= b:
        return
    size = sizes[depth]
    start = a // size * size
    inside = b - a
    if size - inside < inside:
        out.append(Piece(sign, depth, start, start + size))
        _whole(start, a, depth + 1, -sign, sizes, out)
        _whole(b, start + size, depth + 1, -sign, sizes, out)
    else:
        _whole(a, b, depth + 1, sign, sizes, out)
