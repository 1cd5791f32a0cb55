"""Server-sent events passed through event by event, with the usage chunk picked out on the way.

OpenAI streams end with a chunk holding `usage` (and `choices: []`) when the
request asked for `stream_options.include_usage`. The gateway always asks the
upstream for it, because the token policy needs the count; when the client
had not asked, that extra chunk is withheld so the client sees the stream it
requested.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from maas_metrics.gateway.metering import Usage, parse_usage

# An SSE event ends at a blank line; the spec allows \n, \r\n and \r line ends.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(rb"\r\n|\n|\r")


def _event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one event, or None when it has none."""
    parts = [
        line[5:].removeprefix(b" ") for line in _LINE_END.split(event) if line.startswith(b"data:")
    ]
    return b"\n".join(parts) if parts else None


class UsageCapture:
    """Feeds on upstream bytes, returns what to pass to the client, remembers the usage.

    Only complete events are returned (an event is small; a partial one cannot
    be judged), so the client receives the stream as the upstream produces it,
    never the whole answer at once.
    """

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.usage: Usage | None = None
        self.done = False
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk if self._buffer else chunk
        pieces = _EVENT_END.split(data)
        if len(pieces) == 1:
            self._buffer = data
            return b""
        self._buffer = pieces[-1]
        if not self.hide_usage_chunk:
            for event in pieces[:-1]:
                self._inspect(event)
            return data[: len(data) - len(self._buffer)]
        out: list[bytes] = []
        # Keep each event's own terminator: walk the separators the regex found.
        position = 0
        for match in _EVENT_END.finditer(data):
            event = data[position : match.start()]
            if not self._inspect(event):
                out.append(data[position : match.end()])
            position = match.end()
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever trails the last complete event (normally nothing)."""
        rest, self._buffer = self._buffer, b""
        if rest and self._inspect(rest) and self.hide_usage_chunk:
            return b""
        return rest

    def _inspect(self, event: bytes) -> bool:
        """Note usage / end of stream; True when the event is the usage-only chunk."""
        data = _event_data(event)
        if data is None:
            return False
        if data == b"[DONE]":
            self.done = True
            return False
        if b'"usage"' not in data or b'"usage":null' in data or b'"usage": null' in data:
            return False  # most chunks: no usage, or `"usage": null` before the last one
        try:
            payload: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(payload, dict):
            return False
        usage = parse_usage(payload.get("usage"))
        if usage is None:
            return False
        self.usage = usage
        return not payload.get("choices")
