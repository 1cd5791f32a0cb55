"""Sending one planned request to the gateway (JSON or SSE) and reading its usage back."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from maas_metrics.simulate.planner import PlannedRequest
from maas_metrics.simulate.stats import Result


def _error_message(content: bytes) -> str:
    try:
        message = orjson.loads(content)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return content[:200].decode(errors="replace")
    return str(message)


def _usage(data: Any) -> tuple[int, int]:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


async def send_request(client: httpx.AsyncClient, base: str, planned: PlannedRequest) -> Result:
    """Send one planned request and tell what came back (never raises for HTTP trouble)."""
    path = "/chat/completions" if planned.endpoint == "chat" else "/completions"
    headers = {"authorization": f"Bearer {planned.user.key}", "content-type": "application/json"}
    content = orjson.dumps(planned.body)
    started = time.perf_counter()

    def result(status: int, tokens: tuple[int, int] = (0, 0), error: str | None = None) -> Result:
        return Result(
            planned.user.name,
            planned.user.tier,
            planned.model,
            planned.endpoint,
            planned.stream,
            status,
            tokens[0],
            tokens[1],
            time.perf_counter() - started,
            error,
            planned.body,
        )

    try:
        if not planned.stream:
            response = await client.post(base + path, content=content, headers=headers)
            if response.status_code != 200:
                return result(response.status_code, error=_error_message(response.content))
            return result(200, _usage(orjson.loads(response.content)))
        async with client.stream("POST", base + path, content=content, headers=headers) as response:
            if response.status_code != 200:
                return result(response.status_code, error=_error_message(await response.aread()))
            tokens = (0, 0)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = orjson.loads(payload)
                if chunk.get("usage"):
                    tokens = _usage(chunk)
            return result(200, tokens)
    except httpx.HTTPError as error:
        return result(0, error=f"{type(error).__name__}: {error}")
    except (orjson.JSONDecodeError, ValueError) as error:
        return result(0, error=f"unreadable response: {error}")
