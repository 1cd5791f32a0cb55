"""What a tier's usage costs on a given day, from the config's prices.

Prices are data: `Tier.price_per_hit` plus `Tier.price_changes`, each in
force from its `effective_from` date (00:00 UTC), optionally for one model,
optionally per prompt and completion token instead of per hit. The report
splits its range at every effective date, so each piece of usage is priced
with the price of its own day and a new price never rewrites past bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from maas_metrics.config import Config


@dataclass(frozen=True, slots=True)
class Usage:
    """Counter increases of one (tier, model, ...) group in one window."""

    tokens: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class Price:
    """The price in force for one tier and model on one day."""

    per_hit: float
    per_prompt_token: float | None = None
    per_completion_token: float | None = None

    def cost(self, usage: Usage) -> float:
        if self.per_prompt_token is not None and self.per_completion_token is not None:
            return (
                usage.prompt_tokens * self.per_prompt_token
                + usage.completion_tokens * self.per_completion_token
            )
        return usage.tokens * self.per_hit


def price_on(config: Config, tier_name: str, model: str, day: date) -> Price | None:
    """The price for `tier_name` and `model` on `day`; None for a tier the config does not know."""
    try:
        tier = config.tier(tier_name)
    except KeyError:
        return None
    change = tier.price_change_on(day, model)
    if change is None:
        return Price(tier.price_per_hit)
    return Price(change.per_hit, change.per_prompt_token, change.per_completion_token)


def uses_token_prices(config: Config) -> bool:
    return any(c.per_prompt_token is not None for tier in config.tiers for c in tier.price_changes)


def price_boundaries(config: Config, start: datetime, end: datetime) -> list[datetime]:
    """The instants (00:00 UTC of each effective date) strictly inside (start, end)."""
    days = {c.effective_from for tier in config.tiers for c in tier.price_changes}
    moments = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days)
    return sorted(m for m in moments if start < m < end)
