"""Token counts for an answer whose upstream gave no `usage` (`gateway.metering.usage_missing: estimate`).

The rule, documented in the README: ceil(characters / 4) tokens for the
prompt text sent plus ceil(characters / 4) for the answer text received,
about the ratio of English text (and the mock model's own rule).
"""

from __future__ import annotations

import math
from typing import Any

from maas_metrics.gateway.metering import Usage

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
    return _choices_chars(answer, "message")


def chunk_chars(payload: dict[str, Any]) -> int:
    """Characters of answer text in one stream chunk (chat `delta.content` or completions `text`)."""
    return _choices_chars(payload, "delta")


def _choices_chars(payload: dict[str, Any], part: str) -> int:
    """Text length over `choices`: each choice's `<part>.content` (chat), else its `text`."""
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return 0
    total = 0
    for choice in choices:
        if isinstance(choice, dict):
            holder = choice.get(part)
            text = holder.get("content") if isinstance(holder, dict) else choice.get("text")
            total += _text_length(text)
    return total


def estimate_usage(prompt: int, answer: int) -> Usage:
    """ceil(characters / 4) tokens for the prompt and for the answer (about English text's ratio)."""
    prompt_tokens = math.ceil(prompt / CHARS_PER_TOKEN)
    completion_tokens = math.ceil(answer / CHARS_PER_TOKEN)
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
