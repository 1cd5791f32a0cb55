"""Every 400 the gateway gives for a request body, decided before any limit is checked.

A body rejected here changes no counter (neither the limiter's nor a
metric), so malformed requests cannot use up a user's quota. Only what the
gateway itself relies on is checked; everything else is the upstream's to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from maas_metrics.gateway import errors


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """A request body the gateway accepted: the JSON object and what the relay needs from it."""

    payload: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool  # the client itself asked for the usage chunk


def parse_request(body: bytes, path: str) -> InferenceRequest:
    """The checked request for `/chat/completions` or `/completions`; raise a 400 `GatewayError`."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.bad_request("Request body is not valid JSON.", "invalid_json") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("Request body must be a JSON object.", "invalid_json")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("Missing required parameter: 'model' (a string).", "missing_model")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise errors.bad_request("'stream' must be a boolean.", "invalid_stream")
    options = payload.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise errors.bad_request(
                "'stream_options' must be an object.", "invalid_stream_options"
            )
        if stream is not True:
            raise errors.bad_request(
                "'stream_options' is only allowed when 'stream' is true.", "invalid_stream_options"
            )
        flag = options.get("include_usage", False)
        if flag is not None and not isinstance(flag, bool):
            raise errors.bad_request(
                "'stream_options.include_usage' must be a boolean.", "invalid_stream_options"
            )
        include_usage = flag is True
    if path == "/chat/completions":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise errors.bad_request(
                "Missing required parameter: 'messages' (a non-empty array).", "invalid_messages"
            )
        if not all(isinstance(m, dict) for m in messages):
            raise errors.bad_request("Each of 'messages' must be an object.", "invalid_messages")
    else:
        prompt = payload.get("prompt")
        if prompt is not None and not isinstance(prompt, str | list):
            raise errors.bad_request("'prompt' must be a string or an array.", "invalid_prompt")
    return InferenceRequest(payload, model, stream is True, include_usage)
