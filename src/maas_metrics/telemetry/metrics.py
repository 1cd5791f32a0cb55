"""The gateway's metrics: Limitador's set, named and labelled as Limitador names them.

Names and labels come from `maas_metrics.contract`; with the seed's schema
(the default) the families are:

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

Another schema renames `tier` (e.g. `subscription`), adds attribution
labels, drops `user`, or drops `model` from the calls counters
(`contract.Schema.usage_labels` / `calls_labels` / `limited_labels`).
A usage key is (namespace, *identity labels, model): the identity's values
come from `gateway.auth.Identity.labels`, in `Schema.identity_labels` order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.policies import TierPolicies
from maas_metrics.telemetry.exposition import label_text


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

    def __init__(self, schema: Schema = contract.SEED) -> None:
        usage = schema.usage_labels
        self._calls_model = schema.calls_model
        self.authorized_hits = Family(contract.HITS, "Authorized hits", "counter", usage)
        self.authorized_calls = Family(
            contract.CALLS, "Authorized calls", "counter", schema.calls_labels
        )
        self.limited_calls = Family(
            contract.LIMITED, "Limited calls", "counter", schema.limited_labels
        )
        self.limitador_up = Family(contract.LIMITADOR_UP, "Limitador is running", "gauge", ())
        self.limitador_up.set((), 1)
        self.datastore_partitioned = Family(
            contract.DATASTORE_PARTITIONED,
            "Limitador is partitioned from backing datastore",
            "gauge",
            (),
        )
        self.datastore_partitioned.set((), 0)
        self.prompt_tokens = Family(
            contract.PROMPT_TOKENS,
            "Prompt (input) tokens of admitted requests, from the response usage",
            "counter",
            usage,
        )
        self.completion_tokens = Family(
            contract.COMPLETION_TOKENS,
            "Completion (output) tokens of admitted requests, from the response usage",
            "counter",
            usage,
        )
        self.limit_max = Family(
            contract.LIMIT_MAX,
            "Configured maximum hits per window of each limit",
            "gauge",
            schema.quota_labels,
        )
        self.changed_at = (
            0.0  # time.monotonic() of the last usage change, for scrape-aware shutdown
        )
        self.limit_window = Family(
            contract.LIMIT_WINDOW,
            "Configured window length in seconds of each limit",
            "gauge",
            schema.quota_labels,
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
        ]

    # --- what the gateway reports --------------------------------------------------

    def _calls_key(self, namespace: str, identity: tuple[str, ...], model: str) -> tuple[str, ...]:
        """The calls counters' key: `model` only when the schema puts it on calls."""
        if self._calls_model:
            return (namespace, *identity, model)
        return (namespace, *identity)

    def authorized(self, namespace: str, identity: tuple[str, ...], model: str, hits: int) -> None:
        """A policy check admitted a request (hits: 1 for a request policy, 0 for a token pre-check).

        `identity`: the caller's label values (`Identity.labels`).
        """
        self.authorized_calls.inc(self._calls_key(namespace, identity, model))
        self.authorized_hits.inc((namespace, *identity, model), hits)
        self.changed_at = time.monotonic()

    def limited(
        self, namespace: str, identity: tuple[str, ...], model: str, limit_name: str
    ) -> None:
        self.limited_calls.inc((*self._calls_key(namespace, identity, model), limit_name))
        self.changed_at = time.monotonic()

    def reported(
        self,
        namespace: str,
        identity: tuple[str, ...],
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        total_tokens: int,
    ) -> None:
        """A token policy report after the response: hits += total tokens."""
        key = (namespace, *identity, model)
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
