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
* per user, all models (`namespace_user_tier:<counter>:...`): the minutes
  (`increase1m`), the minutes signed by clock hour (`increase1m_hour_signed`),
  the hours (`increase1h`) and the hours to date (`increase1h_to_date`,
  recorded every minute: the minutes of the current clock hour so far).
  Hour samples in a range plus the hour-to-date at its end minus the one at
  its start are the range's minutes, with no arithmetic on the range's
  edges: what Grafana's per-user panel totals read
  (`rules.reading.range_total`), a fifth of the series at five models.
  Panels by model or with models chosen read the per-user minutes.

Those are the seed schema's names; another schema (`contract.Schema`) names
each level after its labels (e.g. `namespace_subscription_organization_id_
cost_center_model`), keeps attribution labels on both levels, drops `model`
from the calls counters' rules when they carry none, and has only the
per-tier level when `user` is not captured.

The per-user minutes are computed from the raw counters; the per-tier
minutes and the hours (and, in turn, the all-models levels) read rule
samples written earlier in the same group evaluation (rules of a group run
in order, each seeing the ones before), which costs Prometheus one
raw-counter pass a minute instead of two and gives the same numbers (each
series's growth, summed). Without `user` the per-tier level reads the raw
counters. A `promtool tsdb create-blocks-from rules` backfill therefore
takes four passes (`backfill_passes`). The rules do not depend on the
config: every namespace and tier is kept as a label.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.promql import increase_exact, preferred
from maas_metrics.rules.reading import (
    MINUTE,
    hour_sample_recorded,
    hour_to_date_recorded,
    signed_minute_recorded,
)

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


def all_models_labels(schema: Schema, counter: str) -> tuple[str, ...]:
    """The per-user level's labels without `model`: the per-user hours and hours to date of
    all models together (a fifth of the series at five models; panels by user read them)."""
    return tuple(x for x in user_labels(schema, counter) if x != contract.MODEL)


def all_models_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user minute series of all models (`namespace_user_tier:<counter>:increase1m`);
    the per-user minute series itself when the counter carries no `model`."""
    return f"{_level(all_models_labels(schema, counter))}:{counter}:increase1m"


def signed_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the all-models minutes signed by clock hour (`...:increase1m_hour_signed`)."""
    return f"{_level(all_models_labels(schema, counter))}:{counter}:increase1m_hour_signed"


def per_user_to_date_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user hour-to-date series, all models (`namespace_user_tier:<counter>:increase1h_to_date`)."""
    return f"{_level(all_models_labels(schema, counter))}:{counter}:increase1h_to_date"


def all_models_hour_series(counter: str, schema: Schema = contract.SEED) -> str:
    """Name of the per-user hour series of all models (`namespace_user_tier:<counter>:increase1h`);
    the per-user hour series itself when the counter carries no `model`."""
    return f"{_level(all_models_labels(schema, counter))}:{counter}:increase1h"


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
            rules.extend(_all_models_rules(schema, counter))
    return rules


def _all_models_rules(schema: Schema, counter: str) -> list[Rule]:
    """Per user, all models: minutes, minutes signed by clock hour, hours, hours to date.

    Each from rule samples just written (cheap instant reads); a counter
    without `model` has its per-user minutes and hours as the all-models ones.
    """
    every_model = all_models_labels(schema, counter)
    by_user = f"sum by ({', '.join(every_model)})"
    minutes = all_models_series(counter, schema)
    rules: list[Rule] = []
    if every_model != user_labels(schema, counter):
        latest = f"last_over_time({per_user_series(counter, schema)}[{MINUTE}])"
        rules.append({"record": minutes, "expr": f"{by_user} ({latest})"})
        latest_hour = f"last_over_time({per_user_hour_series(counter, schema)}[{MINUTE}])"
        rules.append(
            {
                "record": all_models_hour_series(counter, schema),
                "expr": f"{by_user} ({latest_hour})",
            }
        )
    signed = signed_series(counter, schema)
    rules.append({"record": signed, "expr": signed_minute_recorded(minutes)})
    rules.append(
        {
            "record": per_user_to_date_series(counter, schema),
            "expr": hour_to_date_recorded(minutes, signed),
        }
    )
    return rules


def backfill_passes(schema: Schema = contract.SEED) -> list[list[Rule]]:
    """The rules in the order a backfill must evaluate them: each pass reads only earlier passes.

    `promtool tsdb create-blocks-from rules` reads every input from the
    server it queries, so the minute levels come from the raw counters
    first, then the hours and hours to date from the minutes, then the
    all-models hours from the hours.
    """
    return rule_passes(recording_rules(schema))


def rule_passes(rules: list[Rule]) -> list[list[Rule]]:
    """`rules` in passes: a rule goes in the first pass after every rule whose output it reads."""
    records = {str(r["record"]) for r in rules}

    def reads(rule: Rule) -> set[str]:
        expr = str(rule["expr"])
        return {n for n in records if re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", expr)}

    passes: list[list[Rule]] = []
    done: set[str] = set()
    left = list(rules)
    while left:
        ready = [r for r in left if reads(r) <= done]
        if not ready:
            raise ValueError("recording rules that read each other in a cycle")
        passes.append(ready)
        done |= {str(r["record"]) for r in ready}
        left = [r for r in left if r not in ready]
    return passes


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
