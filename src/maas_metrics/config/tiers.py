"""Tiers (subscriptions) and their dated price changes."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)

from maas_metrics.config.base import NAME_PATTERN, _Strict
from maas_metrics.config.limits import Budget, LimitSpec, TokenLimitSpec


class PriceChange(_Strict):
    """A price in force from `effective_from` on, so a change never rewrites past bills.

    `model` narrows it to one model; the token prices, when set, replace the
    per-hit price for that model's prompt and completion tokens.
    """

    effective_from: date
    per_hit: Annotated[float, Field(ge=0)]
    model: str | None = None
    per_prompt_token: Annotated[float, Field(ge=0)] | None = None
    per_completion_token: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _token_prices_come_in_pairs(self) -> PriceChange:
        if (self.per_prompt_token is None) != (self.per_completion_token is None):
            raise ValueError("per_prompt_token and per_completion_token must be set together")
        return self


class Tier(_Strict):
    """A service tier: who is in it, what it may use, what it costs and how it looks."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    level: int
    groups: Annotated[list[str], Field(min_length=1)]
    colour: str = "#8AB8FF"
    price_per_hit: Annotated[float, Field(ge=0)]
    price_changes: list[PriceChange] = []
    request_limit: LimitSpec | None = None
    token_limit: TokenLimitSpec | None = None
    budget: Budget | None = None  # each user's monthly budget (an API key's `budget` overrides it)

    def price_per_hit_on(self, day: date, model: str | None = None) -> float:
        """The per-hit price in force on `day` (model-specific changes win over general ones)."""
        change = self.price_change_on(day, model)
        return self.price_per_hit if change is None else change.per_hit

    def price_change_on(self, day: date, model: str | None = None) -> PriceChange | None:
        """The newest price change in force on `day` for `model`, or None for the base price."""
        applicable = [
            c
            for c in self.price_changes
            if c.effective_from <= day and (c.model is None or c.model == model)
        ]
        if not applicable:
            return None
        # A model-specific change beats a general one from the same day or earlier.
        return max(applicable, key=lambda c: (c.model is not None, c.effective_from))
