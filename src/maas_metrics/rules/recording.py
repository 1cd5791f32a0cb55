"""Recording rules that pre-aggregate the counters so dashboards and reports stay fast.

Two minute levels, both recorded every `INTERVAL_SECONDS` as the growth over the
last interval, `increase_exact` (maas_metrics.promql): last value minus the
value at the interval's start, or the last value for a series born in the
interval. That does not depend on where in its interval Prometheus evaluates
the group (a fixed, hash-based offset, not the scrape grid), whereas
`increase(x[1m])` over 30 s scrapes extrapolates one 30 s step x2.
Consecutive samples tile time exactly (each counts the scrapes in (t - 1m,
t]), so `sum_over_time(...[R])` is the growth over R at the rules'
one-minute resolution; an evaluation Prometheus misses is a lost minute.
A counter reset inside one interval falls back to `increase` (extrapolated).

* per user: `namespace_user_tier_model:<counter>:increase1m`, by
  (limitador_namespace, user, tier, model) — `limit_name` and any
  per-instance labels are summed away;
* per tier: `namespace_tier_model:<counter>:increase1m`, by
  (limitador_namespace, tier, model) — a few dozen series, for panels that
  do not look at single users;
* per user and hour: `namespace_user_tier_model:<counter>:increase1h`, the
  sum of the per-user minutes of the clock hour (UTC) just ended, recorded
  at the group's evaluation in each hour's first minute (and at no other).
  A day then costs 24 samples per user and model instead of 1,440: what
  keeps per-user panels and the report fast at 10,000 users over days.
  `rules.reading` reads hours and edge minutes together, exactly.
* per user, hour to date: `namespace_user_tier_model:<counter>:increase1h_to_date`,
  recorded every minute: the per-user minutes of the current clock hour so
  far. Hour samples in a range plus the hour-to-date at its end minus the
  one at its start are the range's minutes, with no arithmetic on the
  range's edges: what Grafana's per-user panel totals read
  (`rules.reading.range_total`).

Those are the seed schema's names; another schema (`contract.Schema`) names
each level after its labels (e.g. `namespace_subscription_organization_id_
cost_center_model`), keeps attribution labels on both levels, drops `model`
from the calls counters' rules when they carry none, and has only the
per-tier level when `user` is not captured.

The per-user minutes are computed from the raw counters; the per-tier
minutes, the hours and the hours to date read the per-user minutes written earlier in the same
group evaluation (rules of a group run in order, each seeing the ones
before), which costs Prometheus one raw-counter pass a minute instead of two
and gives the same numbers (each series's growth, summed). Without `user`
the per-tier level reads the raw counters. A `promtool tsdb
create-blocks-from rules` backfill therefore takes two passes
(`backfill_passes`). The rules do
not depend on the config: every namespace and tier is kept as a label.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.promql import increase_exact, preferred
from maas_metrics.rules.reading import MINUTE, hour_sample_recorded, hour_to_date_recorded

if TYPE_CHECKING:
    from maas_metrics.config import Config

GROUP_NAME: Final = "maas-metrics-recording"
INTERVAL_SECONDS: Final = 60
INTERVAL: Final = "1m"

COUNTERS: Final = (*contract.LIMITADOR_COUNTERS, *contract.TOKEN_KIND_COUNTERS)
"""The counters of the metric contract that get recording rules (by their Limitador names)."""

USER_LABELS: Final = contract.SEED.usage_labels
TIER_LABELS: Final = tuple(x for x in USER_LABELS if x != contract.USER)
"""The seed schema's two levels (`user_labels` / `tier_labels` give any schema's)."""

Rule = dict[str, object]


def _check(counter: str) -> None:
    if counter not in COUNTERS:
        raise ValueError(f"no recording rule for {counter!r}; known: {', '.join(COUNTERS)}")


def user_labels(schema: Schema, counter: str) -> tuple[str, ...]:
    """The per-user level's labels: the counter's own (`Schema.labels_of`) but `limit_name`."""
    _check(counter)
    return tuple(x for x in schema.labels_of(counter) if x != contract.LIMIT_NAME)


def tier_labels(schema: Schema, counter: str) -> tuple[str, ...]:
    """The per-tier level's labels: the per-user level's without `user` (attribution stays)."""
    return tuple(x for x in user_labels(schema, counter) if x != contract.USER)


def _level(labels: tuple[str, ...]) -> str:
    return "_".join("namespace" if x == contract.NAMESPACE else x for x in labels)


def per_user_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user series (`namespace_user_tier_model:<counter>:increase1m` in the seed)."""
    return f"{_level(user_labels(schema, counter))}:{counter}:increase1m"


def per_user_hour_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user hour series (`namespace_user_tier_model:<counter>:increase1h`)."""
    return f"{_level(user_labels(schema, counter))}:{counter}:increase1h"


def per_user_to_date_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user hour-to-date series (`...:<counter>:increase1h_to_date`)."""
    return f"{_level(user_labels(schema, counter))}:{counter}:increase1h_to_date"


def per_tier_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-tier series (`namespace_tier_model:<counter>:increase1m` in the seed)."""
    return f"{_level(tier_labels(schema, counter))}:{counter}:increase1m"


def _increase(schema: Schema, counter: str, labels: tuple[str, ...]) -> str:
    """The counter's increase over one interval by `labels`, under each name the schema reads
    (preferred name first, `or` so both names never add up)."""
    return preferred(
        schema.names_of(counter),
        schema.labels_of(counter),
        lambda name: increase_exact(name, INTERVAL),
        labels,
    )


def recording_rules(schema: Schema = contract.SEED) -> list[Rule]:
    """The rules, per-user ones first, in a stable order (one level when `user` is not captured)."""
    rules: list[Rule] = []
    if schema.user:
        for counter in COUNTERS:
            rules.append(
                {
                    "record": per_user_series(counter, schema),
                    "expr": _increase(schema, counter, user_labels(schema, counter)),
                }
            )
    for counter in COUNTERS:
        if schema.user:  # the per-user minutes just written, summed: the same count, cheaply
            minute = f"last_over_time({per_user_series(counter, schema)}[{MINUTE}])"
            expr = f"sum by ({', '.join(tier_labels(schema, counter))}) ({minute})"
        else:
            expr = _increase(schema, counter, tier_labels(schema, counter))
        rules.append({"record": per_tier_series(counter, schema), "expr": expr})
    if schema.user:
        for counter in COUNTERS:
            rules.append(
                {
                    "record": per_user_hour_series(counter, schema),
                    "expr": hour_sample_recorded(per_user_series(counter, schema)),
                }
            )
        for counter in COUNTERS:
            rules.append(
                {
                    "record": per_user_to_date_series(counter, schema),
                    "expr": hour_to_date_recorded(
                        per_user_series(counter, schema), user_labels(schema, counter)
                    ),
                }
            )
    return rules


def backfill_passes(schema: Schema = contract.SEED) -> list[list[Rule]]:
    """The rules in the order a backfill must evaluate them: from raw counters, then from rules.

    `promtool tsdb create-blocks-from rules` reads every input from the
    server it queries, so the hour level needs the minute level loaded first.
    """
    rules = recording_rules(schema)
    records = {str(r["record"]) for r in rules}

    def reads_rules(rule: Rule) -> bool:
        return any(
            re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", str(rule["expr"])) for n in records
        )

    later = [r for r in rules if reads_rules(r)]
    return [[r for r in rules if r not in later], later] if later else [rules]


def recording_group(schema: Schema = contract.SEED) -> dict[str, Any]:
    """The rule group (for a Prometheus rule file or a PrometheusRule's `spec.groups`)."""
    return {
        "name": GROUP_NAME,
        "interval": INTERVAL,
        "rules": recording_rules(schema),
    }


def recording_groups(config: Config | None = None) -> list[dict[str, Any]]:
    """All recording rule groups (one), for the config's schema (the seed's without a config)."""
    return [recording_group(contract.SEED if config is None else config.contract)]
