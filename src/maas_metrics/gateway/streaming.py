"""Server-sent events passed through event by event, with the usage chunk picked out on the way.

OpenAI streams end with a chunk holding `usage` (and `choices: []`) when the
request asked for `stream_options.include_usage`; the upstream then also
adds `"usage":null` to every other chunk. The gateway always asks for it,
because the token policy needs the count. When the client had not asked,
the gateway removes exactly what its request caused (that last chunk and
each `"usage":null` member) and passes every other byte unchanged, so the
client gets what the upstream would have sent for its own request.

The parser is linear: each byte is copied into the buffer once, scanned for
an event end once (plus 3 bytes of overlap at read boundaries), and an event
is cut out once. An event may not grow past `max_event_bytes` (a hostile or
broken upstream must not make the gateway buffer without end).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from maas_metrics.gateway.estimate import chunk_chars
from maas_metrics.gateway.metering import Usage, parse_usage

# An SSE event ends at a blank line; the spec allows \n, \r\n and \r line ends.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(rb"\r\n|\n|\r")
_OVERLAP = 3  # an event end is at most 4 bytes: rescan this much of the previous read
# The `"usage":null` member the upstream adds when asked for usage, with one neighbouring comma.
_UNCOUNTED_BYTES = 256 * 1024  # chunk data held for a lazy text count before it is counted
_USAGE_NULL = re.compile(rb'\s*,\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')


class EventTooLarge(Exception):
    """An upstream SSE event (or an unterminated tail) is over the configured maximum size."""


def _event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one event, or None when it has none."""
    if event.startswith(b"data:") and b"\n" not in event and b"\r" not in event:
        return event[5:].removeprefix(b" ")  # the usual one-line event, without a split
    parts = [
        line[5:].removeprefix(b" ") for line in _LINE_END.split(event) if line.startswith(b"data:")
    ]
    return b"\n".join(parts) if parts else None


def _chars_of(data: bytes) -> int:
    try:
        payload: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0
    return chunk_chars(payload) if isinstance(payload, dict) else 0


class UsageCapture:
    """Feeds on upstream bytes, returns what to pass to the client, remembers the usage.

    Only complete events are returned (a partial one cannot be judged), so the
    client receives the stream as the upstream produces it, event by event.
    `bytes_scanned` and `bytes_copied` count the parser's work (linear in the
    stream's size whatever the read sizes).
    """

    def __init__(self, hide_usage_chunk: bool, max_event_bytes: int = 1_048_576) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.max_event_bytes = max_event_bytes
        self.usage: Usage | None = None
        self.done = False
        self._answer_chars = 0
        self._uncounted: list[bytes] = []  # chunk data whose text is counted only if needed
        self._uncounted_bytes = 0
        self.bytes_scanned = 0
        self.bytes_copied = 0
        self._buffer = bytearray()
        self._scanned = 0  # no event end starts before this index of the buffer (but the overlap)
        self._overflow = False

    def feed(self, chunk: bytes) -> bytes:
        """Take one upstream read; return the complete events to relay (possibly b"").

        Raises `EventTooLarge` once an event is over the limit; events that were
        complete before it are returned first (the error comes with the next call).
        """
        if self._overflow:
            raise EventTooLarge
        buffer = self._buffer
        buffer += chunk
        self.bytes_copied += len(chunk)
        position = max(self._scanned - _OVERLAP, 0)
        start = 0
        out: list[bytes] = []
        while True:
            match = _EVENT_END.search(buffer, position)
            if match is None:
                self.bytes_scanned += len(buffer) - position
                break
            self.bytes_scanned += match.end() - position
            end = match.start()
            if end - start > self.max_event_bytes:
                self._overflow = True
                break
            event = bytes(buffer[start:end])
            self.bytes_copied += len(event)
            kept = self._relay(event)
            if kept is not None:
                out.append(kept + bytes(buffer[end : match.end()]))
            start = position = match.end()
        if start:
            del buffer[:start]  # CPython moves the start of a bytearray: no copy
        self._scanned = len(buffer)
        if len(buffer) > self.max_event_bytes + _OVERLAP:
            self._overflow = True
        if self._overflow and not out:
            raise EventTooLarge
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever trails the last complete event (normally nothing)."""
        if self._overflow:
            raise EventTooLarge
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        if not rest:
            return b""
        if len(rest) > self.max_event_bytes:
            raise EventTooLarge
        kept = self._relay(rest)
        return b"" if kept is None else kept

    @property
    def answer_chars(self) -> int:
        """Answer text received so far in characters, for an estimate when usage never comes."""
        if self._uncounted:
            for data in self._uncounted:
                self._answer_chars += _chars_of(data)
            self._uncounted.clear()
            self._uncounted_bytes = 0
        return self._answer_chars

    def _relay(self, event: bytes) -> bytes | None:
        """Note usage, text and end of stream; the event to pass on, or None to withhold it."""
        data = _event_data(event)
        if data is None:
            return event  # comments (keep-alives), event names without data
        if data == b"[DONE]":
            self.done = True
            return event
        if b'"usage"' not in data:  # an upstream that does not send usage: count the text now
            self._answer_chars += _chars_of(data)
            return event
        if b'"usage":null' in data or b'"usage": null' in data:
            # The usual chunk of a stream asked for usage: its usage chunk will follow, so
            # its text is counted only if that never comes (no JSON parse per chunk).
            self._uncounted.append(data)
            self._uncounted_bytes += len(data)
            if self._uncounted_bytes > _UNCOUNTED_BYTES:
                self.answer_chars  # noqa: B018 - counts and frees what was held
            return self._without_usage_null(event) if self.hide_usage_chunk else event
        try:
            payload: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(payload, dict):
            return event
        self._answer_chars += chunk_chars(payload)
        if "usage" in payload and payload["usage"] is None:  # `"usage":null` laid out otherwise
            return self._without_usage_null(event) if self.hide_usage_chunk else event
        usage = parse_usage(payload.get("usage"))
        if usage is None:
            return event
        self.usage = usage
        self._uncounted.clear()  # the upstream counted the text itself
        self._uncounted_bytes = 0
        if self.hide_usage_chunk and not payload.get("choices"):
            return None  # the usage-only chunk our request caused
        return event

    @staticmethod
    def _without_usage_null(event: bytes) -> bytes:
        """The event without its `"usage":null` member (unchanged when that is ambiguous).

        Unescaped quotes only delimit JSON strings, so `"usage":null` found once is the
        member itself (text inside a string would read `\\"usage\\"`).
        """
        compact = b'"usage":null'
        if event.count(compact) == 1:
            at = event.index(compact)
            end = at + len(compact)
            if at and event[at - 1 : at] == b",":
                return event[: at - 1] + event[end:]
            if event[end : end + 1] == b",":
                return event[:at] + event[end + 1 :]
        matches = list(_USAGE_NULL.finditer(event))
        if len(matches) != 1:
            return event
        match = matches[0]
        return event[: match.start()] + event[match.end() :]
