"""What the mock model answers: a request's route, method and body to a reply (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import orjson

from maas_metrics.simulate.answers import (
    BadRequest,
    Endpoint,
    completion_body,
    error_body,
    model_object,
    models_body,
    parse_request,
    stream_events,
)

_ROUTES: Final[dict[bytes, Endpoint]] = {
    b"/v1/chat/completions": "chat",
    b"/v1/completions": "completions",
}


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool
    http_10: bool


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    events: list[bytes] | None = None  # an SSE stream instead of `body`
    waits: bool = False  # subject to the configured latency


class Routes:
    """The endpoints of one server; `reply` never raises."""

    def __init__(self, models: tuple[str, ...]) -> None:
        self.models = models
        self.models_body = models_body(models)

    def reply(self, request: Request) -> Reply:
        try:
            return self._route(request)
        except Exception as error:  # a bug here must not kill the connection silently
            return error_reply(500, f"mock model failed: {error!r}", kind="server_error")

    def _route(self, request: Request) -> Reply:
        path = request.path
        endpoint = _ROUTES.get(path)
        if endpoint is not None:
            if request.method != b"POST":
                return error_reply(405, f"use POST for {path.decode()}")
            try:
                parsed = parse_request(endpoint, request.body)
            except BadRequest as error:
                return error_reply(400, error.message, param=error.param)
            if parsed.stream:
                return Reply(200, events=stream_events(parsed), waits=True)
            return Reply(200, completion_body(parsed), waits=True)
        if path == b"/v1/models" or path.startswith(b"/v1/models/") or path == b"/healthz":
            if request.method != b"GET":
                return error_reply(405, f"use GET for {path.decode(errors='replace')}")
            if path == b"/healthz":
                return Reply(200, b'{"status":"ok"}')
            if path == b"/v1/models":
                return Reply(200, self.models_body)
            name = unquote(path.removeprefix(b"/v1/models/").decode(errors="replace"))
            return Reply(200, orjson.dumps(model_object(name)))
        return error_reply(404, f"no route {path.decode(errors='replace')}", kind="not_found_error")


def error_reply(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
) -> Reply:
    return Reply(status, error_body(message, kind, param))
