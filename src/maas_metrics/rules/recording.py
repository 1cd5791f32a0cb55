"""Recording rules that pre-aggregate the counters so dashboards and reports stay fast.

Two levels, both recorded every `INTERVAL_SECONDS` as the growth over the
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
  do not look at single users.

Both are computed from the raw counters (not one from the other) so that
`promtool tsdb create-blocks-from rules` can backfill them too. The rules do
not depend on the config: every namespace and tier is kept as a label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from maas_metrics.promql import increase_exact

if TYPE_CHECKING:
    from maas_metrics.config import Config

GROUP_NAME: Final = "maas-metrics-recording"
INTERVAL_SECONDS: Final = 60
INTERVAL: Final = "1m"

COUNTERS: Final = (
    "authorized_hits",
    "authorized_calls",
    "limited_calls",
    "maas_prompt_tokens_total",
    "maas_completion_tokens_total",
)
"""The counters of the metric contract that get recording rules."""

USER_LABELS: Final = ("limitador_namespace", "user", "tier", "model")
TIER_LABELS: Final = ("limitador_namespace", "tier", "model")

Rule = dict[str, object]


def _check(counter: str) -> None:
    if counter not in COUNTERS:
        raise ValueError(f"no recording rule for {counter!r}; known: {', '.join(COUNTERS)}")


def per_user_series(counter: str) -> str:
    """Name of the per-user series: the counter's increase per minute by namespace, user, tier, model."""
    _check(counter)
    return f"namespace_user_tier_model:{counter}:increase1m"


def per_tier_series(counter: str) -> str:
    """Name of the per-tier series: the counter's increase per minute by namespace, tier, model."""
    _check(counter)
    return f"namespace_tier_model:{counter}:increase1m"


def _increase(counter: str, labels: tuple[str, ...]) -> str:
    return f"sum by ({', '.join(labels)}) ({increase_exact(counter, INTERVAL)})"


def recording_rules() -> list[Rule]:
    """The rules, per-user ones first, in a stable order."""
    rules: list[Rule] = []
    for counter in COUNTERS:
        rules.append({"record": per_user_series(counter), "expr": _increase(counter, USER_LABELS)})
    for counter in COUNTERS:
        rules.append({"record": per_tier_series(counter), "expr": _increase(counter, TIER_LABELS)})
    return rules


def recording_group() -> dict[str, Any]:
    """The rule group (for a Prometheus rule file or a PrometheusRule's `spec.groups`)."""
    return {
        "name": GROUP_NAME,
        "interval": INTERVAL,
        "rules": recording_rules(),
    }


def recording_groups(config: Config | None = None) -> list[dict[str, Any]]:
    """All recording rule groups (one today); `config` is accepted for symmetry, the rules need none."""
    del config
    return [recording_group()]
