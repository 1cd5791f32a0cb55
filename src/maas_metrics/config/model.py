"""The top-level `Config`: every section together, with the rules that span sections."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from maas_metrics.config.base import _Strict, _unique
from maas_metrics.config.dashboard import Dashboard
from maas_metrics.config.gateway import GatewaySettings, workers_refusal
from maas_metrics.config.keys import ApiKey
from maas_metrics.config.limits import KUADRANT_MAX_LIMIT, Budget
from maas_metrics.config.schema import KuadrantRoutes, Namespaces, SchemaSettings, Source
from maas_metrics.config.storage import Ledger, Storage
from maas_metrics.config.tiers import Tier
from maas_metrics.config.upstreams import Model
from maas_metrics.contract import (
    GROUP,
    Schema,
)


class Config(_Strict):
    """The whole config. With `schema.billing_dimension: subscription` the YAML lists
    `subscriptions:` (each shaped like a tier; `price_per_token` may stand for
    `price_per_hit`, as token hits are tokens) instead of `tiers:`; the code
    calls both `tiers`.
    """

    tiers: Annotated[list[Tier], Field(min_length=1)]
    models: Annotated[list[Model], Field(min_length=1)]
    api_keys: list[ApiKey] = []
    storage: Storage = Storage()
    source: Source = "gateway"
    namespaces: Namespaces = Namespaces()
    kuadrant: KuadrantRoutes = KuadrantRoutes()
    gateway: GatewaySettings = GatewaySettings()
    dashboard: Dashboard = Dashboard()
    ledger: Ledger = Ledger()
    metrics_schema: SchemaSettings = Field(SchemaSettings(), alias="schema")

    @model_validator(mode="before")
    @classmethod
    def _subscriptions(cls, data: object) -> object:
        """`subscriptions:` is the `tiers:` list under today's name (same model, one copy)."""
        if not isinstance(data, dict):
            return data
        schema = data.get("schema")
        dimension = schema.get("billing_dimension", "tier") if isinstance(schema, dict) else "tier"
        if dimension not in ("tier", "subscription"):
            raise ValueError(
                f"schema.billing_dimension: Input should be 'tier' or 'subscription', "
                f"not {dimension!r}"
            )
        right, wrong = ("subscriptions", "tiers")[:: 1 if dimension == "subscription" else -1]
        if wrong in data:
            raise ValueError(
                f"with schema.billing_dimension {dimension}, list the plans under {right}, "
                f"not {wrong}"
            )
        if dimension != "subscription":
            return data
        if "subscriptions" not in data:
            raise ValueError("subscriptions: required (schema.billing_dimension is subscription)")
        entries = data["subscriptions"]
        if isinstance(entries, list):
            entries = [_per_token_price(e) for e in entries]
        rest = {k: v for k, v in data.items() if k != "subscriptions"}
        return {**rest, "tiers": entries}

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump with the YAML's names (`schema:`, `subscriptions:`), so a dump loads back."""
        data: dict[str, Any] = handler(self)
        if "metrics_schema" in data:
            data["schema"] = data.pop("metrics_schema")
        if self.metrics_schema.billing_dimension == "subscription" and "tiers" in data:
            data = {("subscriptions" if k == "tiers" else k): v for k, v in data.items()}
        return data

    @property
    def contract(self) -> Schema:
        """The metric contract of this config (`contract.Schema`).

        With `source: kuadrant` Limitador produces the metrics: the calls
        counters carry no `model` (labelled before the response names it) and
        none of our gateway's `maas_` series exist.
        """
        schema = self.metrics_schema.contract()
        if self.source == "kuadrant":
            return replace(schema, calls_model=False, gateway_series=False)
        return schema

    @property
    def dimension_name(self) -> str:
        """What the config calls a tier: `tier` or `subscription` (for messages and titles)."""
        return self.metrics_schema.billing_dimension

    def attributes(self, key: ApiKey, matched_group: str | None = None) -> dict[str, str]:
        """The captured attribution labels of `key`.

        Each is the key's own value, else that of the first entry of
        `schema.groups` (in the config's order: list specific groups before
        broad ones) that the key belongs to and that sets it, else (for
        `group`) `matched_group`, the group that chose its tier, else
        `schema.missing_value`. The Kuadrant AuthPolicy applies the same rule.
        """
        schema = self.metrics_schema
        member = set(key.groups)
        out: dict[str, str] = {}
        for label in schema.attribution:
            value = key.attributes.get(label)
            if value is None:
                value = next(
                    (
                        attrs[label]
                        for group, attrs in schema.groups.items()
                        if group in member and label in attrs
                    ),
                    None,
                )
            if value is None and label == GROUP:
                value = matched_group
            out[label] = schema.missing_value if value is None else value
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _unique([t.name for t in self.tiers], "tiers", "name")
        _unique([str(t.level) for t in self.tiers], "tiers", "level")
        _unique([m.name for m in self.models], "models", "name")
        _unique([k.sha256 for k in self.api_keys], "api_keys", "sha256")
        if self.source == "gateway" and self.namespaces.requests == self.namespaces.tokens:
            raise ValueError("namespaces: requests and tokens must differ when source is gateway")
        if self.source == "kuadrant":
            if self.metrics_schema.calls_carry_model:
                raise ValueError(
                    "schema.calls_carry_model: must be false with source kuadrant (Limitador "
                    "labels the calls before the response names the model)"
                )
            for index, tier in enumerate(self.tiers):
                if any(c.per_prompt_token is not None for c in tier.price_changes):
                    raise ValueError(
                        f"tiers[{index}].price_changes: prompt/completion prices need the "
                        "gateway's token-kind counters, which Limitador does not have "
                        "(source kuadrant)"
                    )
            if not self.kuadrant.token_routes:
                raise ValueError(
                    "kuadrant.token_routes: source kuadrant needs the HTTPRoutes "
                    "(namespace/name) whose token counts Limitador publishes"
                )
            for index, tier in enumerate(self.tiers):
                for kind, limit in (
                    ("request_limit", tier.request_limit),
                    ("token_limit", tier.token_limit),
                ):
                    if limit is not None and limit.max > KUADRANT_MAX_LIMIT:
                        raise ValueError(
                            f"tiers[{index}].{kind}.max: {limit.max} is more than Kuadrant "
                            f"accepts (at most {KUADRANT_MAX_LIMIT} with source kuadrant)"
                        )
        if self.gateway.workers.count > 1:
            refusal = workers_refusal(self.storage.url, self.ledger.enabled)
            if refusal is not None:
                raise ValueError(f"gateway.workers.count: {refusal}")
        _one_trust_per_origin(self.models)
        _one_budget_per_user(self.api_keys)
        models = {m.name for m in self.models}
        for tier in self.tiers:
            for change in tier.price_changes:
                if change.model is not None and change.model not in models:
                    raise ValueError(
                        f"tier {tier.name!r} has a price change for unknown model {change.model!r}"
                    )
        return self

    # --- look-ups every part needs -------------------------------------------------

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def model(self, name: str) -> Model | None:
        for model in self.models:
            if model.name == name:
                return model
        return None

    def tier_for_groups(self, groups: list[str] | tuple[str, ...]) -> Tier | None:
        """The highest-level tier whose groups intersect `groups` (as Kuadrant's tier lookup)."""
        member = set(groups)
        matching = [t for t in self.tiers if member.intersection(t.groups)]
        return max(matching, key=lambda t: t.level) if matching else None

    def budget_for(self, user: str, tier: Tier) -> Budget | None:
        """`user`'s monthly budget: an API key's override, else the tier's."""
        for key in self.api_keys:
            if key.user == user and key.budget is not None:
                return key.budget
        return tier.budget

    def tiers_by_level(self) -> list[Tier]:
        return sorted(self.tiers, key=lambda t: t.level)

    def matched_group(self, groups: list[str] | tuple[str, ...], tier: Tier) -> str | None:
        """The first of `tier`'s groups the caller is in (the `group` attribution label)."""
        return next((g for g in tier.groups if g in groups), None)


def _per_token_price(entry: object) -> object:
    """A subscription's `price_per_token` is its `price_per_hit` (token hits are tokens)."""
    if not isinstance(entry, dict) or "price_per_token" not in entry:
        return entry
    if "price_per_hit" in entry:
        raise ValueError("subscriptions: set price_per_token or price_per_hit, not both")
    rest = {k: v for k, v in entry.items() if k != "price_per_token"}
    return {**rest, "price_per_hit": entry["price_per_token"]}


def _one_trust_per_origin(models: list[Model]) -> None:
    """TLS trust belongs to the endpoint: models on one https origin must name the same CA file."""
    trust: dict[str, Path | None] = {}
    for model in models:
        origin = "/".join(model.upstream.split("/", 3)[:3])
        if trust.setdefault(origin, model.ca_file) != model.ca_file:
            raise ValueError(
                f"models on {origin} must all use the same ca_file (model {model.name!r})"
            )


def _one_budget_per_user(keys: list[ApiKey]) -> None:
    """A user's keys share one monthly counter, so they must name the same budget override."""
    seen: dict[str, Budget | None] = {}
    for index, key in enumerate(keys):
        if seen.setdefault(key.user, key.budget) != key.budget:
            raise ValueError(
                f"api_keys[{index}].budget: user {key.user!r} has keys with different budgets "
                "(one monthly counter per user)"
            )
