"""The metric contract: every metric and label name, and which series carry which labels.

Producers (the gateway's telemetry, the Kuadrant TelemetryPolicy) and
consumers (panel catalogue, rules, alerts, report) read names from here and
ask a `Schema`, built from the config's `schema:` section, the questions
that differ between the seed's platform and today's:

* the billing dimension: `tier` (the seed's) or `subscription`;
* the attribution labels captured (`organization_id`, `cost_center`,
  `group`, `tenant_name`), and the value a key without one is counted
  under (`MISSING_VALUE`, never dropped);
* whether `user` is a label (cardinality) and whether the calls counters
  carry `model` (Limitador labels them at request time, before the model
  is known from the response, so today's platform has no `model` there);
* the counter names consumers read: Limitador's suffix-less names, the
  `*_total` names an OpenTelemetry collector writes, or `auto`;
* whether our gateway's own series exist (`gateway_series`): the token-kind
  counters, `maas_limit_max`, the latency histograms and the budget gauges.
  Not on a Kuadrant cluster (config `source: kuadrant`), where only
  Limitador's counters and health gauges are scraped.

This module imports nothing from the project, so anything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# --- metric names ------------------------------------------------------------------------------

HITS: Final = "authorized_hits"
CALLS: Final = "authorized_calls"
LIMITED: Final = "limited_calls"
LIMITADOR_COUNTERS: Final = (HITS, CALLS, LIMITED)
"""Limitador's counters: exposed without `_total` (Limitador's exposition)."""

OTEL_SUFFIX: Final = "_total"
"""What an OpenTelemetry collector appends to a counter's name on its way to Prometheus."""

LIMITADOR_UP: Final = "limitador_up"
DATASTORE_PARTITIONED: Final = "datastore_partitioned"
PROMPT_TOKENS: Final = "maas_prompt_tokens_total"
COMPLETION_TOKENS: Final = "maas_completion_tokens_total"
LIMIT_MAX: Final = "maas_limit_max"
LIMIT_WINDOW: Final = "maas_limit_window_seconds"
TOKEN_KIND_COUNTERS: Final = (PROMPT_TOKENS, COMPLETION_TOKENS)
"""Our own counters: already Prometheus-named, identical on every scrape path."""

# --- label names -------------------------------------------------------------------------------

NAMESPACE: Final = "limitador_namespace"
USER: Final = "user"
MODEL: Final = "model"
LIMIT_NAME: Final = "limit_name"
POLICY: Final = "policy"

TIER: Final = "tier"
SUBSCRIPTION: Final = "subscription"
BillingDimension = Literal["tier", "subscription"]
BILLING_DIMENSIONS: Final = (TIER, SUBSCRIPTION)

ORGANIZATION: Final = "organization_id"
COST_CENTER: Final = "cost_center"
GROUP: Final = "group"
TENANT: Final = "tenant_name"
AttributionLabel = Literal["organization_id", "cost_center", "group", "tenant_name"]
ATTRIBUTION_LABELS: Final = (ORGANIZATION, COST_CENTER, GROUP, TENANT)
"""Today's platform's optional attribution labels, in the order they appear everywhere."""

MISSING_VALUE: Final = "unknown"
"""The value a captured attribution label takes for a key that has none: counted, never dropped."""

MetricNames = Literal["limitador", "otel", "auto"]


@dataclass(frozen=True, slots=True)
class Schema:
    """Which labels the usage series carry and which names consumers read (see the module doc)."""

    dimension: BillingDimension = "tier"
    attribution: tuple[str, ...] = ()
    user: bool = True
    calls_model: bool = True
    names: MetricNames = "limitador"
    missing_value: str = MISSING_VALUE
    gateway_series: bool = True

    def __post_init__(self) -> None:
        unknown = [a for a in self.attribution if a not in ATTRIBUTION_LABELS]
        if unknown:
            raise ValueError(f"unknown attribution label {unknown[0]!r}")
        ordered = tuple(a for a in ATTRIBUTION_LABELS if a in self.attribution)
        object.__setattr__(self, "attribution", ordered)

    # --- producers: what a series carries ----------------------------------------------------

    @property
    def identity_labels(self) -> tuple[str, ...]:
        """The labels the caller's identity gives every usage series: user?, dimension, attribution."""
        return (*((USER,) if self.user else ()), self.dimension, *self.attribution)

    @property
    def usage_labels(self) -> tuple[str, ...]:
        """`authorized_hits` and the token-kind counters."""
        return (NAMESPACE, *self.identity_labels, MODEL)

    @property
    def calls_labels(self) -> tuple[str, ...]:
        """`authorized_calls` (and `limited_calls` before `limit_name`)."""
        return (NAMESPACE, *self.identity_labels, *((MODEL,) if self.calls_model else ()))

    @property
    def limited_labels(self) -> tuple[str, ...]:
        return (*self.calls_labels, LIMIT_NAME)

    @property
    def quota_labels(self) -> tuple[str, ...]:
        """`maas_limit_max` / `maas_limit_window_seconds`: one series per configured limit."""
        return (NAMESPACE, self.dimension, LIMIT_NAME, POLICY)

    def labels_of(self, counter: str) -> tuple[str, ...]:
        """The labels a series of `counter` carries (by its Limitador or `_total` name)."""
        base = counter.removesuffix(OTEL_SUFFIX) if counter not in TOKEN_KIND_COUNTERS else counter
        if base == HITS or counter in TOKEN_KIND_COUNTERS:
            return self.usage_labels
        if base == CALLS:
            return self.calls_labels
        if base == LIMITED:
            return self.limited_labels
        raise KeyError(counter)

    # --- consumers: which names to read ------------------------------------------------------

    def names_of(self, counter: str) -> tuple[str, ...]:
        """The names under which `counter` is read, preferred first.

        Our own `maas_*_total` counters have one name everywhere. Limitador's
        three: `limitador` -> `authorized_hits`; `otel` -> `authorized_hits_total`;
        `auto` -> both, the `_total` one preferred (`promql.preferred`
        reads a series under one of them, never both added up).
        """
        if counter not in LIMITADOR_COUNTERS:
            return (counter,)
        otel = counter + OTEL_SUFFIX
        if self.names == "limitador":
            return (counter,)
        if self.names == "otel":
            return (otel,)
        return (otel, counter)


SEED: Final = Schema()
"""The seed's (October 2025) contract: tier, user and model everywhere, Limitador's names."""


def variable_name(label: str) -> str:
    """The dashboard variable that filters `label` (`limitador_namespace` -> `namespace`)."""
    return "namespace" if label == NAMESPACE else label
