"""Rate limits and monthly budgets: what a tier (or an API key) may use."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from maas_metrics.config.base import _Strict
from maas_metrics.durations import (
    KUADRANT_MAX_WINDOW_SECONDS,
    DurationError,
    kuadrant_window_seconds,
)

KUADRANT_MAX_LIMIT = 1_000_000_000
"""The largest `max` a Kuadrant limit takes (checked when `source: kuadrant`)."""


class LimitSpec(_Strict):
    """At most `max` hits per fixed window, per user.

    The window is `window_seconds`, or `window` written as Kuadrant writes it
    (`2m`, `1h30m`; validated as the Kuadrant CRDs validate `rates[].window`).
    Either way it must be one the Kuadrant operator accepts, so every limit
    can become a RateLimitPolicy or TokenRateLimitPolicy.
    """

    max: Annotated[int, Field(ge=0)]
    window_seconds: Annotated[int, Field(gt=0, le=KUADRANT_MAX_WINDOW_SECONDS)]

    @model_validator(mode="before")
    @classmethod
    def _window_text(cls, data: object) -> object:
        if not isinstance(data, dict) or "window" not in data:
            return data
        if "window_seconds" in data:
            raise ValueError("set window or window_seconds, not both")
        window = data["window"]
        if not isinstance(window, str):
            raise ValueError(f"window {window!r} must be a duration text like 2m or 1h30m")
        try:
            seconds = kuadrant_window_seconds(window)
        except DurationError as error:
            raise ValueError(f"window {error}") from None
        return {**{k: v for k, v in data.items() if k != "window"}, "window_seconds": seconds}


class TokenLimitSpec(LimitSpec):
    """A token limit and how it is enforced.

    `optimistic` (Limitador's default): reject once the counter is at or over
    `max`, count the real usage after the answer. `reservation` (Kuadrant's
    Reservation mode): hold the request's `max_tokens` plus a prompt estimate,
    at most `max_reservation_fraction` of `max`, admit iff used + outstanding +
    amount <= max, commit the real usage after; a hold expires after
    `reservation_ttl_seconds` (never past the window end) and charges nothing.
    """

    mode: Literal["optimistic", "reservation"] = "optimistic"
    max_reservation_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    reservation_ttl_seconds: Annotated[float, Field(gt=0)] = 60.0


def _timezone(value: str) -> str:
    """An IANA time zone name (`UTC`, `Europe/Paris`) that this machine's tz database knows."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)"
        ) from None
    return value


class Budget(_Strict):
    """A monthly budget per user, in dollars (`usd`) or tokens, on calendar months of `timezone`.

    `hard`: once a user's month is at or over `amount`, requests get a 429
    `budget_exceeded` until the month renews. `soft`: they are served with an
    `X-Budget-Warning` header and counted in `maas_budget_overage_calls_total`.
    """

    amount: Annotated[float, Field(gt=0)]
    unit: Literal["usd", "tokens"] = "usd"
    enforcement: Literal["hard", "soft"] = "hard"
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"

    @model_validator(mode="after")
    def _whole_tokens(self) -> Budget:
        if self.unit == "tokens" and self.amount != int(self.amount):
            raise ValueError("amount: a token budget is a whole number of tokens")
        return self
