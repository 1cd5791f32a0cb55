"""The config's per-hit prices as PromQL vectors, for cost panels (`PriceVectors.cost`).

One place turns the config's tiers and model prices into label-matched
vectors, so every cost panel multiplies hits by the same prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.dashboard.promql import set_label


def _price(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class PriceVectors:
    """The config's per-hit prices on one day as PromQL vectors.

    `per_tier`: `{tier="free"} 0.005`, one element per configured tier (or
    subscription: the label is the billing dimension's, `dimension`).
    `per_tier_model`: `{tier, model}` elements only where a model-specific
    price differs from the tier's price that day, else None.
    """

    per_tier: str
    per_tier_model: str | None
    dimension: str = contract.TIER

    def cost(self, hits_by_tier_model: str) -> str:
        """Hits (aggregated by at least the dimension and model) times their price."""
        dim = self.dimension
        general = f"{hits_by_tier_model} * on ({dim}) group_left () {self.per_tier}"
        if self.per_tier_model is None:
            return f"({general})"
        specific = f"{hits_by_tier_model} * on ({dim}, model) group_left () {self.per_tier_model}"
        return f"({specific} or {general})"


def price_vectors(config: Config, day: date) -> PriceVectors:
    """Every configured tier's per-hit price on `day` (`Tier.price_per_hit_on`), as PromQL."""
    dim = config.contract.dimension
    general: list[str] = []
    specific: list[str] = []
    for tier in config.tiers_by_level():
        base = tier.price_per_hit_on(day)
        general.append(set_label(f"vector({_price(base)})", dim, tier.name))
        for model in config.models:
            price = tier.price_per_hit_on(day, model.name)
            if price != base:
                inner = set_label(f"vector({_price(price)})", dim, tier.name)
                specific.append(set_label(inner, contract.MODEL, model.name))
    return PriceVectors(
        per_tier="(" + " or ".join(general) + ")",
        per_tier_model="(" + " or ".join(specific) + ")" if specific else None,
        dimension=dim,
    )
