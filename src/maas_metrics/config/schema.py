"""The metric schema and who produces the metrics (gateway namespaces or Kuadrant routes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from maas_metrics.config.base import Attributes, Text, _Strict, _unique
from maas_metrics.contract import (
    MISSING_VALUE,
    AttributionLabel,
    BillingDimension,
    MetricNames,
    Schema,
)


class SchemaSettings(_Strict):
    """The metric schema (`schema:`): which labels the counters carry and which names are read.

    The defaults are the seed's platform (tier, user and model everywhere,
    Limitador's names). Today's platform: `billing_dimension: subscription`,
    `attribution: [organization_id, cost_center]`, `capture_user: false`,
    `calls_carry_model: false`, `metric_names: otel`. See `contract.Schema`.
    """

    billing_dimension: BillingDimension = "tier"
    attribution: list[AttributionLabel] = []
    capture_user: bool = True
    calls_carry_model: bool | None = None
    """None: the source's (true behind our gateway; false on Kuadrant, where it must be)."""
    metric_names: MetricNames = "limitador"
    missing_value: Annotated[Text, Field(min_length=1)] = MISSING_VALUE
    groups: dict[Text, Attributes] = {}
    max_usage_series: Annotated[int, Field(gt=0)] = 100_000
    """The cardinality alert fires above this many series of the usage counters."""

    @model_validator(mode="after")
    def _captured_once(self) -> SchemaSettings:
        _unique(list(self.attribution), "schema.attribution", "label")
        return self

    def contract(self) -> Schema:
        """The `contract.Schema` every producer and consumer asks."""
        return Schema(
            dimension=self.billing_dimension,
            attribution=tuple(self.attribution),
            user=self.capture_user,
            calls_model=self.calls_carry_model is not False,
            names=self.metric_names,
            missing_value=self.missing_value,
        )


class Namespaces(_Strict):
    """The `limitador_namespace` values of our gateway's two policies (source `gateway`).

    They must differ (checked in `Config`), so tokens never mix with requests.
    """

    requests: Annotated[Text, Field(min_length=1)] = "maas/requests"
    tokens: Annotated[Text, Field(min_length=1)] = "maas/tokens"


Source = Literal["gateway", "kuadrant"]
"""Who produces the metrics: our gateway, or Limitador behind a Kuadrant Gateway."""

#: An HTTPRoute as `<namespace>/<name>`: Kuadrant's `limitador_namespace` for every policy on it.
ROUTE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$"
Route = Annotated[str, Field(pattern=ROUTE_PATTERN)]


class KuadrantRoutes(_Strict):
    """Which HTTPRoutes carry which policy when Limitador produces the metrics (source `kuadrant`).

    Kuadrant gives every policy of a route the same `limitador_namespace`,
    the route's `<namespace>/<name>`, and Limitador adds a request policy's
    hits (1 per request) and a token policy's hits (tokens) to the same
    `authorized_hits` series. So a route carries the token policy or the
    request policy, never both: `token_routes` get the TokenRateLimitPolicy,
    `request_routes` (default none: token policy only, as the platform does)
    the RateLimitPolicy.
    """

    token_routes: list[Route] = []
    request_routes: list[Route] = []

    @model_validator(mode="after")
    def _apart(self) -> KuadrantRoutes:
        _unique(self.token_routes, "kuadrant.token_routes", "route")
        _unique(self.request_routes, "kuadrant.request_routes", "route")
        both = sorted(set(self.token_routes) & set(self.request_routes))
        if both:
            raise ValueError(
                f"route {both[0]!r} is in both token_routes and request_routes: Limitador would "
                "add its request hits to the token counts (one namespace per route)"
            )
        return self
