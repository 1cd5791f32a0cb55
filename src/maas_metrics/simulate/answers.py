"""What the mock model answers: deterministic text, token usage and OpenAI-shaped bodies.

The numbers are a formula, not a tokenizer, so a test can predict them exactly
(call `compute_usage` rather than re-implementing it):

- ``tokens(text) = ceil(len(text) / 4)`` with ``len`` counting Unicode code points.
- Prompt text. Chat: the text of every message joined with ``"\\n"`` (string
  content as is; a list of content parts contributes each ``text`` part; ``null``
  content contributes ``""``). Completions: the ``prompt`` string, or a list of
  strings joined with ``"\\n"``.
- Answer: ``8 + crc32(prompt) % 40`` words, picked from a fixed vocabulary by a
  xorshift32 generator seeded with ``crc32(prompt)`` (UTF-8), joined by single
  spaces. The same prompt always gets the same answer, whatever the model name.
- Limit: ``max_completion_tokens`` (chat), else ``max_tokens``. When
  ``tokens(answer) > limit`` the answer is cut to ``4 * limit`` characters and
  ``finish_reason`` is ``"length"`` (so ``completion_tokens == limit``);
  otherwise ``finish_reason`` is ``"stop"``.
- ``usage = {prompt_tokens: tokens(prompt), completion_tokens: tokens(answer),
  total_tokens: their sum}``.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson

Endpoint = Literal["chat", "completions"]

DEFAULT_MODELS: tuple[str, ...] = ("granite-8b", "llama-3-8b", "mistral-7b", "mock-model")
"""Names `GET /v1/models` lists; requests may name any model."""

_VOCABULARY_TEXT = """the model answers with tokens metered by a gateway that counts every request
and limits users in tiers free premium enterprise quota window rate limit usage cost price hit
cluster serving latency stream chunk prompt completion deterministic mock reply example data metric
counter label namespace policy token budget throughput response"""
_VOCABULARY: tuple[str, ...] = tuple(_VOCABULARY_TEXT.split())


class BadRequest(ValueError):
    """A request the OpenAI API would reject with 400; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class MockRequest:
    """A validated completion request: everything the answer depends on."""

    endpoint: Endpoint
    model: str
    prompt: str
    max_tokens: int | None
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    finish_reason: Literal["stop", "length"]
    usage: Usage


def count_tokens(text: str) -> int:
    """The mock's token count of `text`: ceil(len(text) / 4)."""
    return math.ceil(len(text) / 4)


def _full_answer(prompt: str) -> str:
    return _answer_of_seed(zlib.crc32(prompt.encode("utf-8", "surrogatepass")))


@lru_cache(maxsize=4096)  # keyed by the checksum, so large prompts are not kept alive
def _answer_of_seed(seed: int) -> str:
    state = seed or 0x9E3779B9
    words: list[str] = []
    for _ in range(8 + seed % 40):
        # xorshift32: portable and stable across Python versions, unlike `random`.
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        words.append(_VOCABULARY[state % len(_VOCABULARY)])
    return " ".join(words)


def answer_for(prompt: str, max_tokens: int | None = None) -> Answer:
    """The deterministic answer to `prompt`, cut to `max_tokens` tokens (see module docstring)."""
    text = _full_answer(prompt)
    finish: Literal["stop", "length"] = "stop"
    if max_tokens is not None and count_tokens(text) > max_tokens:
        text = text[: 4 * max_tokens]
        finish = "length"
    return Answer(text, finish, Usage(count_tokens(prompt), count_tokens(text)))


# --- request validation -------------------------------------------------------------


def _message_text(index: int, message: object) -> list[str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"{where} must be an object", where)
    if not isinstance(message.get("role"), str):
        raise BadRequest(f"{where}.role must be a string", f"{where}.role")
    content = message.get("content")
    if content is None:
        return [""]
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts: list[str] = []
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise BadRequest(
                    f"{where}.content[{part_index}] must be an object with a string 'type'",
                    f"{where}.content[{part_index}]",
                )
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest(
                        f"{where}.content[{part_index}].text must be a string",
                        f"{where}.content[{part_index}].text",
                    )
                texts.append(text)
        return texts
    raise BadRequest(
        f"{where}.content must be a string, a list of parts or null", f"{where}.content"
    )


def _prompt(endpoint: Endpoint, body: Mapping[str, Any]) -> str:
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list", "messages")
        return "\n".join(t for i, m in enumerate(messages) for t in _message_text(i, m))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    raise BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")


def _positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"'{name}' must be a positive integer", name)
    return value


def parse_request(endpoint: Endpoint, body: Mapping[str, Any] | bytes | str) -> MockRequest:
    """Validate a request body (raw JSON or decoded) like the OpenAI API; raise `BadRequest`."""
    if isinstance(body, bytes | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", "model")
    prompt = _prompt(endpoint, body)
    limit = _positive_int(body, "max_tokens")
    if endpoint == "chat":
        limit = _positive_int(body, "max_completion_tokens") or limit
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("the mock model supports only n=1", "n")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("'stream_options' must be an object", "stream_options")
        if not stream:
            raise BadRequest(
                "'stream_options' is only allowed when 'stream' is true", "stream_options"
            )
        flag = options.get("include_usage", False)
        if not isinstance(flag, bool):
            raise BadRequest(
                "'stream_options.include_usage' must be a boolean", "stream_options.include_usage"
            )
        include_usage = flag
    return MockRequest(endpoint, model, prompt, limit, stream, include_usage)


def compute_usage(body: Mapping[str, Any] | bytes | str, endpoint: Endpoint = "chat") -> Usage:
    """The usage the mock reports for this request body (raises `BadRequest` if malformed)."""
    request = parse_request(endpoint, body)
    return answer_for(request.prompt, request.max_tokens).usage


# --- response bodies ------------------------------------------------------------------

_PROCESS_TAG = os.urandom(4).hex()
_ids = itertools.count(1)


def _new_id(endpoint: Endpoint) -> str:
    prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
    return f"{prefix}-mock{_PROCESS_TAG}{next(_ids):x}"


def completion_body(request: MockRequest) -> bytes:
    """The JSON body of a non-streamed chat completion or completion."""
    answer = answer_for(request.prompt, request.max_tokens)
    choice: dict[str, Any]
    if request.endpoint == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer.text, "refusal": None},
            "logprobs": None,
            "finish_reason": answer.finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": answer.text,
            "logprobs": None,
            "finish_reason": answer.finish_reason,
        }
        obj = "text_completion"
    return orjson.dumps(
        {
            "id": _new_id(request.endpoint),
            "object": obj,
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_mock",
            "choices": [choice],
            "usage": answer.usage.as_dict(),
        }
    )


_PIECE = re.compile(r"\s*\S+\s*|\s+")


def stream_events(request: MockRequest) -> list[bytes]:
    """The SSE events of a streamed answer: one per word, a final one, usage if asked, `[DONE]`.

    Concatenating the content of the chunks gives exactly the non-streamed answer.
    """
    answer = answer_for(request.prompt, request.max_tokens)
    base: dict[str, Any] = {
        "id": _new_id(request.endpoint),
        "object": "chat.completion.chunk" if request.endpoint == "chat" else "text_completion",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": "fp_mock",
    }
    if request.include_usage:
        base["usage"] = None  # as OpenAI: null on every chunk but the last

    def event(choice: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    def chunk(content: str | None, finish: str | None, role: bool = False) -> bytes:
        if request.endpoint == "completions":
            return event(
                {"index": 0, "text": content or "", "logprobs": None, "finish_reason": finish}
            )
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if content is not None:
            delta["content"] = content
        return event({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish})

    events: list[bytes] = []
    if request.endpoint == "chat":
        events.append(chunk("", None, role=True))
    events.extend(chunk(piece, None) for piece in _PIECE.findall(answer.text))
    events.append(chunk(None, answer.finish_reason))
    if request.include_usage:
        events.append(
            b"data: "
            + orjson.dumps({**base, "choices": [], "usage": answer.usage.as_dict()})
            + b"\n\n"
        )
    events.append(b"data: [DONE]\n\n")
    return events


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None
) -> bytes:
    """An OpenAI-style error body."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}})


def models_body(models: tuple[str, ...]) -> bytes:
    return orjson.dumps({"object": "list", "data": [model_object(m) for m in models]})


def model_object(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "maas-metrics-mock",
    }
