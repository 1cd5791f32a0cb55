"""What every row of the catalogue builds its panels from: config, counters, prices, filters.

The row modules (`overview_panels`, `trend_panels`, `user_panels`,
`tier_panels`, `quota_panels`, `detail_panel`) and the breakdowns share the
expressions here (`hits`, `top_hits`, `cost`, `active`) so that every panel's
numbers add up with every other's; the display names of the labels live
here too, for titles, filters and table columns alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.dashboard.model import Panel
from maas_metrics.dashboard.prices import PriceVectors
from maas_metrics.dashboard.promql import (
    Counters,
    Filters,
    by,
    label_filter,
    top_and_others,
)

HITS = contract.HITS
CALLS = contract.CALLS
LIMITED = contract.LIMITED
USER = contract.USER
MODEL = contract.MODEL

DIMENSION_WORDS = {contract.TIER: "service tier", contract.SUBSCRIPTION: "subscription"}

#: Display names of the labels, for titles and filters.
TITLES = {
    contract.TIER: "Tier",
    contract.SUBSCRIPTION: "Subscription",
    contract.ORGANIZATION: "Organization",
    contract.COST_CENTER: "Cost Centre",
    contract.GROUP: "Group",
    contract.TENANT: "Tenant",
}

USER_FILTER = label_filter(USER)

TOP_USERS = 'user=~"$top_users"'
"""The per-user panels' users: the config's `dashboard.top_users` with the most hits; the rest is "others"."""


class PanelContext:
    """One config's counters (raw or recorded), price vectors and filters, with the shared sums."""

    def __init__(self, config: Config, counters: Counters, prices: PriceVectors) -> None:
        self.config = config
        self.c = counters
        self.prices = prices
        self.schema = config.contract
        self.f = Filters(self.schema)
        self.dim = self.schema.dimension
        self.Dim = TITLES[self.dim]

    def per_user(self, build: Callable[[PanelContext], Panel]) -> Panel:
        """A panel about single users; without `user` only its place and title are kept
        (built from raw counters, as the recording rules keep no `user` then)."""
        if self.schema.user:
            return build(self)
        raw = replace(self.c, recording_rules=False)
        return build(PanelContext(self.config, raw, self.prices))

    def legend(self, *labels: str) -> str:
        """`{{user}} · {{tier}}`: by-dimension legends end with the dimension (tier colours)."""
        return " · ".join("{{" + label + "}}" for label in labels)

    # --- expressions shared by several panels ------------------------------------------------

    def hits(self, labels: tuple[str, ...]) -> str:
        return self.c.total(HITS, self.f.tokens, labels)

    def top_hits(self, labels: tuple[str, ...]) -> str:
        """Hits by `labels` (with `user`) of the top users, plus one row for all the others."""
        return top_and_others(
            self.c.total(HITS, (*self.f.tokens, TOP_USERS), labels),
            self.c.total(HITS, self.f.tokens, labels),
        )

    def cost(self, labels: tuple[str, ...], matchers: tuple[str, ...] | None = None) -> str:
        matchers = self.f.tokens if matchers is None else matchers
        # by model only where a model has its own price: by user, the all-models level is faster
        model = (MODEL,) if self.prices.per_tier_model is not None else ()
        keys = tuple(dict.fromkeys((*labels, self.dim, *model)))
        return f"{by(labels)} {self.prices.cost(self.c.total(HITS, matchers, keys))}"

    def active(self, labels: tuple[str, ...]) -> str:
        """Users (by `labels`, which include `user`) with at least one allowed or limited call."""
        calls = self.c.total(CALLS, self.f.calls, labels)
        limited = self.c.total(LIMITED, self.f.calls, labels)
        return f"(({calls}) > 0 or ({limited}) > 0)"
