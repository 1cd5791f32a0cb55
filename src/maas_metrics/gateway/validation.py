"""Every 400 the gateway gives for a request body, decided before any limit is checked.

A body rejected here changes no counter (neither the limiter's nor a
metric), so malformed requests cannot use up a user's quota. Only what the
gateway itself relies on is checked; everything else is the upstream's to judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from maas_metrics.gateway import errors
from maas_metrics.gateway.metering import Usage


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


# --- estimating an answer that came without usage ------------------------------------------

CHARS_PER_TOKEN = 4


def _text_length(value: Any) -> int:
    """Characters of text in a message content or prompt (a string, or parts / strings)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def prompt_chars(payload: dict[str, Any]) -> int:
    """Characters of prompt text sent: every message's content (chat) or the prompt (completions)."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        return sum(_text_length(m.get("content")) for m in messages if isinstance(m, dict))
    return _text_length(payload.get("prompt"))


def answer_chars(answer: dict[str, Any]) -> int:
    """Characters of answer text in a JSON completion (`message.content` or `text` per choice)."""
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return 0
    total = 0
    for choice in choices:
        if isinstance(choice, dict):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            total += _text_length(text)
    return total


def estimate_usage(prompt: int, answer: int) -> Usage:
    """ceil(characters / 4) tokens for the prompt and for the answer (about English text's ratio)."""
    prompt_tokens = math.ceil(prompt / CHARS_PER_TOKEN)
    completion_tokens = math.ceil(answer / CHARS_PER_TOKEN)
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
