"""The gateway's metrics: Limitador's set, named and labelled as Limitador names them.

| family                    | kind    | labels                                              |
|---------------------------|---------|-----------------------------------------------------|
| authorized_hits           | counter | limitador_namespace, model, tier, user              |
| authorized_calls          | counter | limitador_namespace, model, tier, user              |
| limited_calls             | counter | limit_name, limitador_namespace, model, tier, user  |
| limitador_up              | gauge   |                                                     |
| datastore_partitioned     | gauge   |                                                     |
| maas_prompt_tokens_total  | counter | limitador_namespace, model, tier, user              |
| maas_completion_tokens_total | counter | limitador_namespace, model, tier, user              |
| maas_limit_max            | gauge   | limit_name, limitador_namespace, policy, tier       |
| maas_limit_window_seconds | gauge   | limit_name, limitador_namespace, policy, tier       |
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

from maas_metrics.policies import TierPolicies
from maas_metrics.telemetry.exposition import label_text

USAGE_LABELS = ("limitador_namespace", "user", "tier", "model")
LIMITED_LABELS = ("limitador_namespace", "user", "tier", "model", "limit_name")
QUOTA_LABELS = ("limitador_namespace", "tier", "limit_name", "policy")


class Family:
    """One metric family: its series keyed by label values, each with a pre-escaped label string."""

    def __init__(
        self, name: str, help: str, kind: Literal["counter", "gauge"], labels: tuple[str, ...]
    ) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}
        self._texts: dict[tuple[str, ...], str] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1) -> None:
        values = self._values
        if key in values:
            values[key] += amount
        else:
            self._texts[key] = label_text(self.labels, key)
            values[key] = amount

    def set(self, key: tuple[str, ...], value: float) -> None:
        if key not in self._values:
            self._texts[key] = label_text(self.labels, key)
        self._values[key] = value

    def get(self, key: tuple[str, ...] = ()) -> float:
        return self._values.get(key, 0)

    def samples(self) -> Iterator[tuple[str, float]]:
        texts = self._texts
        for key, value in list(self._values.items()):
            yield texts[key], value

    def __len__(self) -> int:
        return len(self._values)


class GatewayMetrics:
    """Counters for policy decisions and token usage, plus health and quota gauges."""

    def __init__(self) -> None:
        self.authorized_hits = Family("authorized_hits", "Authorized hits", "counter", USAGE_LABELS)
        self.authorized_calls = Family(
            "authorized_calls", "Authorized calls", "counter", USAGE_LABELS
        )
        self.limited_calls = Family("limited_calls", "Limited calls", "counter", LIMITED_LABELS)
        self.limitador_up = Family("limitador_up", "Limitador is running", "gauge", ())
        self.limitador_up.set((), 1)
        self.datastore_partitioned = Family(
            "datastore_partitioned",
            "Limitador is partitioned from backing datastore",
            "gauge",
            (),
        )
        self.datastore_partitioned.set((), 0)
        self.prompt_tokens = Family(
            "maas_prompt_tokens_total",
            "Prompt (input) tokens of admitted requests, from the response usage",
            "counter",
            USAGE_LABELS,
        )
        self.completion_tokens = Family(
            "maas_completion_tokens_total",
            "Completion (output) tokens of admitted requests, from the response usage",
            "counter",
            USAGE_LABELS,
        )
        self.limit_max = Family(
            "maas_limit_max",
            "Configured maximum hits per window of each limit",
            "gauge",
            QUOTA_LABELS,
        )
        self.changed_at = (
            0.0  # time.monotonic() of the last usage change, for scrape-aware shutdown
        )
        self.limit_window = Family(
            "maas_limit_window_seconds",
            "Configured window length in seconds of each limit",
            "gauge",
            QUOTA_LABELS,
        )

        self.reservations = Family(
            "maas_token_reservations_outstanding",
            "Token reservations this process holds for requests in flight (reservation mode)",
            "gauge",
            ("tier",),
        )
        self.reserved_tokens = Family(
            "maas_token_reservations_outstanding_tokens",
            "Tokens held by the outstanding token reservations of this process",
            "gauge",
            ("tier",),
        )

    def families(self) -> list[Family]:
        return [
            self.authorized_hits,
            self.authorized_calls,
            self.limited_calls,
            self.limitador_up,
            self.datastore_partitioned,
            self.prompt_tokens,
            self.completion_tokens,
            self.limit_max,
            self.limit_window,
            self.reservations,
            self.reserved_tokens,
        ]

    # --- what the gateway reports --------------------------------------------------

    def authorized(self, namespace: str, user: str, tier: str, model: str, hits: int) -> None:
        """A policy check admitted a request (hits: 1 for a request policy, 0 for a token pre-check)."""
        key = (namespace, user, tier, model)
        self.authorized_calls.inc(key)
        self.authorized_hits.inc(key, hits)
        self.changed_at = time.monotonic()

    def limited(self, namespace: str, user: str, tier: str, model: str, limit_name: str) -> None:
        self.limited_calls.inc((namespace, user, tier, model, limit_name))
        self.changed_at = time.monotonic()

    def reported(
        self,
        namespace: str,
        user: str,
        tier: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        total_tokens: int,
    ) -> None:
        """A token policy report after the response: hits += total tokens."""
        key = (namespace, user, tier, model)
        self.authorized_hits.inc(key, total_tokens)
        self.prompt_tokens.inc(key, prompt_tokens)
        self.completion_tokens.inc(key, completion_tokens)
        self.changed_at = time.monotonic()

    def publish_quotas(self, policies: dict[str, TierPolicies]) -> None:
        for tier, tier_policies in policies.items():
            for policy, limit in (
                ("requests", tier_policies.requests),
                ("tokens", tier_policies.tokens),
            ):
                if limit is None:
                    continue
                key = (limit.namespace, tier, limit.name, policy)
                self.limit_max.set(key, limit.max_value)
                self.limit_window.set(key, limit.seconds)

    def set_partitioned(self, partitioned: bool) -> None:
        self.datastore_partitioned.set((), 1 if partitioned else 0)

    def set_reservations(self, outstanding: dict[str, tuple[int, int]]) -> None:
        """Per tier (reservations, tokens) from `Meter.reservations_outstanding()`."""
        for tier, (count, tokens) in outstanding.items():
            self.reservations.set((tier,), count)
            self.reserved_tokens.set((tier,), tokens)
