"""Prometheus text exposition exactly as Limitador writes it.

prometheus_client always renames counters to `<name>_total` on their TYPE
line, which would break Limitador compatibility, so families are rendered
here. Label strings are escaped once, when a series is created, which keeps
rendering of 100k series cheap.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricFamily(Protocol):
    """What `render` reads: a `Family` (counter, gauge) or a `Histogram`.

    `samples()` yields (text after the family name, value): `{labels}` for a
    counter or gauge, `_bucket{...}`, `_sum...` and `_count...` for a histogram.
    """

    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def samples(self, now: float | None = None) -> Iterable[tuple[str, float]]: ...


class CachedFamily(MetricFamily, Protocol):
    """What `Exposition` also reads: a `Family` that reports which series changed since last asked."""

    def take_all(self) -> list[tuple[str, ...]]: ...
    def take_changes(
        self, now: float | None = None
    ) -> tuple[list[tuple[str, ...]], set[tuple[str, ...]]]: ...
    def text(self, key: tuple[str, ...]) -> str: ...
    def shown(self, key: tuple[str, ...]) -> float: ...


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`{a="x",b="y"}` with labels sorted by name, as Limitador orders them; empty for no labels."""
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{n}="{escape_label_value(v)}"' for n, v in pairs) + "}"


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def header(family: MetricFamily) -> str:
    return f"# HELP {family.name} {escape_help(family.help)}\n# TYPE {family.name} {family.kind}\n"


def render(families: Iterable[MetricFamily], now: float | None = None) -> bytes:
    """The whole body, every line formatted anew (the reference for `Exposition`)."""
    lines: list[str] = []
    for family in families:
        lines.append(header(family))
        name = family.name
        for text, value in family.samples(now):
            lines.append(f"{name}{text} {format_value(value)}\n")
    return "".join(lines).encode("utf-8")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header allows gzip (Prometheus sends `gzip`)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower()
        if quality.startswith("q="):
            try:
                if float(quality[2:]) <= 0:
                    continue
            except ValueError:
                continue
        return True
    return False


#: Series per cached block: a change re-formats and re-compresses only its block.
BLOCK_SERIES = 256
#: zlib level of each block: level 1 is several times faster than 6 and compresses
#: these repetitive lines nearly as well (see benchmarks/bench_metrics_render.py).
GZIP_LEVEL = 1
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
_DEFLATE_END = b"\x03\x00"  # an empty final block (fixed Huffman)


class _Segment:
    """A piece of the body and, once asked for, its raw-deflate form ending on a full flush.

    Each segment is deflated on its own, so segments concatenate into one
    valid deflate stream (a full flush is byte-aligned and refers to nothing
    before it): one gzip member, readable by every client.
    """

    __slots__ = ("_deflated", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._deflated: bytes | None = None

    def deflated(self) -> bytes:
        if self._deflated is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._deflated = compressor.compress(self.raw) + compressor.flush(zlib.Z_FULL_FLUSH)
        return self._deflated


class _FamilyText:
    """One family's lines in creation order, joined per block of `BLOCK_SERIES`."""

    def __init__(self, family: CachedFamily) -> None:
        self.family = family
        self.head = _Segment(header(family).encode("utf-8"))
        self.index: dict[tuple[str, ...], int] = {}
        self.lines: list[str] = []
        self.blocks: list[_Segment | None] = []
        self._add(family.take_all())

    def _line(self, key: tuple[str, ...]) -> str:
        family = self.family
        return f"{family.name}{family.text(key)} {format_value(family.shown(key))}\n"

    def _add(self, keys: list[tuple[str, ...]]) -> None:
        for key in keys:
            position = len(self.lines)
            self.index[key] = position
            self.lines.append(self._line(key))
            block = position // BLOCK_SERIES
            if block == len(self.blocks):
                self.blocks.append(None)
            else:
                self.blocks[block] = None

    def update(self, now: float | None) -> bool:
        """Take the family's changes; True if any line changed."""
        new, changed = self.family.take_changes(now)
        self._add(new)
        for key in changed:
            position = self.index[key]
            self.lines[position] = self._line(key)
            self.blocks[position // BLOCK_SERIES] = None
        return bool(new or changed)

    def segments(self) -> list[_Segment]:
        out = [self.head]
        lines = self.lines
        for number, block in enumerate(self.blocks):
            if block is None:
                start = number * BLOCK_SERIES
                block = _Segment("".join(lines[start : start + BLOCK_SERIES]).encode("utf-8"))
                self.blocks[number] = block
            out.append(block)
        return out


class Exposition:
    """The `/metrics` body of fixed families, re-formatting only series whose shown value changed.

    Byte-identical to `render` for the same scrapes (tests/test_scale_exposition.py),
    and its gzip form re-compresses only changed blocks. Each family must be
    rendered only through this cache once it exists.
    """

    def __init__(self, families: Sequence[CachedFamily]) -> None:
        self._families = [_FamilyText(family) for family in families]
        self._segments: list[_Segment] = []
        self._raw = b""  # the cached families' body, kept while no series changed
        self._crc: int | None = None  # its CRC-32 and joined deflate form, once gzip was asked
        self._deflated: bytes | None = None
        self._fresh = False

    def _update(self, now: float | None) -> None:
        changed = False
        for family in self._families:
            changed |= family.update(now)
        if changed or not self._fresh:
            self._segments = [s for family in self._families for s in family.segments()]
            self._raw = b"".join(segment.raw for segment in self._segments)
            self._crc = self._deflated = None
            self._fresh = True

    def scrape(
        self, now: float | None = None, gzip: bool = False, extra: Sequence[MetricFamily] = ()
    ) -> bytes:
        """One scrape (advances born-at-zero series): the body, gzip-compressed if asked.

        `extra` families (a few series built anew for each scrape, such as the
        ledger's health) are rendered uncached after the cached ones.
        """
        self._update(now)
        tail = _Segment(render(extra, now)) if extra else None
        if not gzip:
            return self._raw if tail is None else self._raw + tail.raw
        if self._crc is None or self._deflated is None:
            self._crc = zlib.crc32(self._raw)
            self._deflated = b"".join(segment.deflated() for segment in self._segments)
        crc, size, deflated = self._crc, len(self._raw), self._deflated
        if tail is not None:
            crc, size = zlib.crc32(tail.raw, crc), size + len(tail.raw)
            deflated += tail.deflated()
        trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
        return _GZIP_HEADER + deflated + _DEFLATE_END + trailer
