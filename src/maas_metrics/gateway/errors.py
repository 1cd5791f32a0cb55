"""OpenAI-style error bodies, so every client SDK shows gateway errors the way it shows OpenAI's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

JSON = "application/json"


def error_body(message: str, type_: str, code: str | int | None) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as the OpenAI API writes it."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


class GatewayError(Exception):
    """A request the gateway answers with an error; raised anywhere, rendered once by `handle`."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.headers = dict(headers) if headers else None

    def response(self) -> Response:
        return Response(
            error_body(self.message, self.type, self.code),
            status_code=self.status,
            headers=self.headers,
            media_type=JSON,
        )


async def handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for `GatewayError`."""
    del request
    assert isinstance(exc, GatewayError)
    return exc.response()


def handler(
    retry_hint_max_seconds: float,
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """`handle`, and a 429 due later than `retry_hint_max_seconds` says `x-should-retry: false`.

    The official OpenAI SDKs obey `Retry-After` up to two minutes, so a free
    user's call would hang until the window resets and look like an outage;
    `x-should-retry: false` makes them raise `RateLimitError` at once
    (Retry-After stays, for clients that schedule their own retry). Short
    waits get no hint and are retried as before.
    """

    async def handle_with_hint(request: Request, exc: Exception) -> Response:
        del request
        assert isinstance(exc, GatewayError)
        if exc.status == 429 and exc.headers is not None:
            retry_after = next(
                (v for k, v in exc.headers.items() if k.lower() == "retry-after"), ""
            )
            if retry_after.isdigit() and int(retry_after) > retry_hint_max_seconds:
                exc.headers["x-should-retry"] = "false"
        return exc.response()

    return handle_with_hint


# --- the errors the gateway raises, named once -----------------------------------------


def missing_key() -> GatewayError:
    return GatewayError(
        401,
        "Missing API key: send it as 'Authorization: Bearer <key>'.",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def invalid_key() -> GatewayError:
    return GatewayError(
        401, "Invalid API key.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
    )


def no_tier(user: str) -> GatewayError:
    return GatewayError(
        403,
        f"User {user!r} belongs to no configured tier.",
        type_="permission_error",
        code="no_tier",
    )


def bad_request(message: str, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code=code)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body larger than {limit} bytes.", code="request_too_large")


def unknown_model(model: str) -> GatewayError:
    return GatewayError(404, f"The model {model!r} does not exist.", code="model_not_found")


def store_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "rate limit store unavailable",
        type_="service_unavailable",
        code="rate_limit_store_unavailable",
        headers={"Retry-After": "1"},
    )


def upstream_unreachable(detail: str) -> GatewayError:
    return GatewayError(
        502, f"Upstream model server failed: {detail}", type_="upstream_error", code="bad_gateway"
    )


def upstream_timeout(seconds: float) -> GatewayError:
    return GatewayError(
        504,
        f"Upstream model server did not answer within {seconds:g} s.",
        type_="upstream_error",
        code="upstream_timeout",
    )
