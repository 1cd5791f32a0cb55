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
| maas_completion_tokens_total | counter | limitador_namespace, model, tier, user           |
| maas_answers_without_usage_total | counter | limitador_namespace, model, tier, user       |
| maas_stream_events_too_large_total | counter | model                                    |
| maas_limit_max            | gauge   | limit_name, limitador_namespace, policy, tier       |
| maas_limit_window_seconds | gauge   | limit_name, limitador_namespace, policy, tier       |

Another schema renames `tier` (e.g. `subscription`), adds attribution
labels, drops `user`, or drops `model` from the calls counters
(`contract.Schema.usage_labels` / `calls_labels` / `limited_labels`).
A usage key is (namespace, *identity labels, model): the identity's values
come from `gateway.auth.Identity.labels`, in `Schema.identity_labels` order.

Every counter series is born at zero (see `Family`), so Prometheus's
`increase()` and `rate()` see its first increment.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from typing import Literal

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.policies import TierPolicies
from maas_metrics.telemetry.exposition import label_text

BILLING_DIMENSION = contract.TIER
"""The seed schema's billing dimension (a default for `telemetry.latency`; `contract.Schema` has
the configured one)."""


class Family:
    """One metric family: its series keyed by label values, each with a pre-escaped label string.

    A counter series is born at zero: a new series first lives in `_fresh`,
    where scrapes read it as 0 until it has been read at 0 and `hold_seconds`
    have passed since that first zero; from the next scrape on it shows its
    real value. So Prometheus always stores a 0 before the first count and
    `increase()` loses nothing, after a restart too. `hold_seconds` >= the
    scrape interval makes every scraper of an HA pair read that 0. Gauges
    show their value at once.
    """

    def __init__(
        self,
        name: str,
        help: str,
        kind: Literal["counter", "gauge"],
        labels: tuple[str, ...],
        hold_seconds: float = 0.0,
    ) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self.hold_seconds = hold_seconds
        self._values: dict[tuple[str, ...], float] = {}  # series every scraper has read at 0
        self._texts: dict[tuple[str, ...], str] = {}  # every series, in order of creation
        # Counter series not yet shown above 0: key -> [value, monotonic time first shown at 0 or -1].
        self._fresh: dict[tuple[str, ...], list[float]] = {}
        # For the render cache (`telemetry.exposition.Exposition`): series created and
        # series whose shown value changed since the last `take_changes`.
        self._new: list[tuple[str, ...]] = []
        self._dirty: set[tuple[str, ...]] = set()

    def inc(self, key: tuple[str, ...], amount: float = 1) -> None:
        values = self._values
        if key in values:
            values[key] += amount
            self._dirty.add(key)
            return
        fresh = self._fresh.get(key)
        if fresh is not None:
            fresh[0] += amount  # still shown at 0: its line does not change
            return
        self._texts[key] = label_text(self.labels, key)
        self._new.append(key)
        if self.kind == "counter":
            self._fresh[key] = [amount, -1.0]
        else:
            values[key] = amount

    def set(self, key: tuple[str, ...], value: float) -> None:
        old = self._values.get(key)
        if old is None:
            self._texts[key] = label_text(self.labels, key)
            self._new.append(key)
        elif old != value:
            self._dirty.add(key)
        self._values[key] = value

    def get(self, key: tuple[str, ...] = ()) -> float:
        """The true value (also of a series still shown at 0)."""
        fresh = self._fresh.get(key)
        return fresh[0] if fresh is not None else self._values.get(key, 0)

    def held(self) -> int:
        """How many series scrapes still read at 0."""
        return len(self._fresh)

    def _advance(self, now: float | None) -> list[tuple[str, ...]]:
        """One scrape's born-at-zero step: mark new series as read at 0, ripen held ones.

        Returns the series that ripened (their shown value jumps from 0 to their count).
        """
        if not self._fresh:
            return []
        now = time.monotonic() if now is None else now
        ripe: list[tuple[str, ...]] = []
        for key, state in self._fresh.items():
            first_zero = state[1]
            if first_zero < 0:
                state[1] = now
            elif now - first_zero >= self.hold_seconds:
                ripe.append(key)
        for key in ripe:
            self._values[key] = self._fresh.pop(key)[0]
        return ripe

    def shown(self, key: tuple[str, ...]) -> float:
        """The value scrapes show now: 0 while a counter series is held."""
        value = self._values.get(key)
        return 0 if value is None else value

    def text(self, key: tuple[str, ...]) -> str:
        """The series' pre-escaped label string."""
        return self._texts[key]

    def samples(self, now: float | None = None) -> Iterator[tuple[str, float]]:
        """The series for one scrape, in order of creation; advances born-at-zero series.

        Call once per scrape, and render a family either through this or
        through one `Exposition` cache (`take_changes`), not both.
        """
        self._advance(now)
        values = self._values
        for key, text in list(self._texts.items()):
            value = values.get(key)
            yield text, 0 if value is None else value

    def take_all(self) -> list[tuple[str, ...]]:
        """Every series in order of creation; changes are tracked from here on (for a new cache)."""
        self._new, self._dirty = [], set()
        return list(self._texts)

    def take_changes(
        self, now: float | None = None
    ) -> tuple[list[tuple[str, ...]], builtins.set[tuple[str, ...]]]:
        """One scrape for a render cache: (series created, series whose shown value changed).

        Applies the same born-at-zero step as `samples`, so a cached render
        shows exactly what an uncached one would.
        """
        ripe = self._advance(now)
        new, dirty = self._new, self._dirty
        self._new, self._dirty = [], set()
        dirty.update(ripe)
        return new, dirty

    def __len__(self) -> int:
        return len(self._values) + len(self._fresh)


class GatewayMetrics:
    """Counters for policy decisions and token usage, plus health and quota gauges."""

    def __init__(self, schema: Schema = contract.SEED, hold_seconds: float = 0.0) -> None:
        usage = schema.usage_labels
        self._calls_model = schema.calls_model

        def counter(name: str, help: str, labels: tuple[str, ...] = usage) -> Family:
            return Family(name, help, "counter", labels, hold_seconds)

        self.authorized_hits = counter(contract.HITS, "Authorized hits")
        self.authorized_calls = counter(contract.CALLS, "Authorized calls", schema.calls_labels)
        self.limited_calls = counter(contract.LIMITED, "Limited calls", schema.limited_labels)
        self.limitador_up = Family(contract.LIMITADOR_UP, "Limitador is running", "gauge", ())
        self.limitador_up.set((), 1)
        self.datastore_partitioned = Family(
            contract.DATASTORE_PARTITIONED,
            "Limitador is partitioned from backing datastore",
            "gauge",
            (),
        )
        self.datastore_partitioned.set((), 0)
        self.prompt_tokens = counter(
            contract.PROMPT_TOKENS,
            "Prompt (input) tokens of admitted requests, from the response usage",
        )
        self.completion_tokens = counter(
            contract.COMPLETION_TOKENS,
            "Completion (output) tokens of admitted requests, from the response usage",
        )
        self.answers_without_usage = counter(
            "maas_answers_without_usage_total",
            "Answers whose upstream reported no usage (counted as gateway.usage_missing says)",
        )
        self.events_too_large = counter(
            "maas_stream_events_too_large_total",
            "Upstream SSE events over gateway.max_sse_event_bytes (the stream ended with a 502)",
            ("model",),
        )
        self.limit_max = Family(
            contract.LIMIT_MAX,
            "Configured maximum hits per window of each limit",
            "gauge",
            schema.quota_labels,
        )
        self.limit_window = Family(
            contract.LIMIT_WINDOW,
            "Configured window length in seconds of each limit",
            "gauge",
            schema.quota_labels,
        )
        self.changed_at = 0.0  # time.monotonic() of the last usage change (scrape-aware shutdown)

        self.reservations = Family(
            "maas_token_reservations_outstanding",
            "Token reservations this process holds for requests in flight (reservation mode)",
            "gauge",
            (schema.dimension,),
        )
        self.reserved_tokens = Family(
            "maas_token_reservations_outstanding_tokens",
            "Tokens held by the outstanding token reservations of this process",
            "gauge",
            (schema.dimension,),
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
            self.answers_without_usage,
            self.events_too_large,
            self.limit_max,
            self.limit_window,
            self.reservations,
            self.reserved_tokens,
        ]

    def held(self) -> int:
        """Counter series that scrapes still read at 0 (their counts are not scraped yet)."""
        return sum(family.held() for family in self.families())

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

    def usage_missing(self, namespace: str, identity: tuple[str, ...], model: str) -> None:
        """An answer came without usage (its tokens were estimated or counted as 0)."""
        self.answers_without_usage.inc((namespace, *identity, model))
        self.changed_at = time.monotonic()

    def event_too_large(self, model: str) -> None:
        self.events_too_large.inc((model,))
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
