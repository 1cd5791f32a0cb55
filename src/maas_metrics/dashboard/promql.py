"""PromQL building blocks of the catalogue: filters, totals, rates, success ratio, top N.

Every panel query is assembled from these, so the query rules live in one
place: totals are the counters' growth over `$__range`, rates their growth
over `$__rate_interval` per second, the success ratio keeps users who were
only limited (cost multiplies hits by `dashboard.prices`' vectors).

`Counters` hides where the numbers come from: the raw counters, or (with
recording rules) the pre-aggregated one-minute increases of
`maas_metrics.rules.recording`. Growth is always `increase_exact`
(`maas_metrics.promql`, shared with the rules, alerts and report), not bare
`increase()` / `rate()`: a series born inside the range (a new user, a first
429, a series re-created after a Limitador restart, a single sample) counts
its first value, and no result depends on where the window's edges fall
between scrapes; that function's docstring weighs the alternatives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from maas_metrics import contract
from maas_metrics.contract import Schema, variable_name
from maas_metrics.promql import growth, increase_exact, preferred, string_literal
from maas_metrics.rules import reading, recording

#: A label no series carries. `ABSENT_LABEL!~"$user"` holds exactly when specific users are
#: chosen (the absent label is "", which the All value `.*` matches), and `user=~"$user"` on a
#: series without a `user` label holds exactly when All is chosen. Recording-rule queries use
#: the pair to read the small per-tier series for All and the per-user series otherwise.
ABSENT_LABEL = "maas_no_such_label"


def re2_escape(value: str) -> str:
    """`value` as an RE2 regex matching it literally (the text before PromQL string escaping)."""
    return re.sub(r"[\\.+*?()|\[\]{}^$]", lambda m: "\\" + m.group(0), value)


def selector(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    """`sum by (a, b)` or plain `sum` for no labels."""
    return f"sum by ({', '.join(labels)})" if labels else "sum"


# --- filters -----------------------------------------------------------------------------------

NAMESPACE = 'limitador_namespace=~"$namespace"'
NOT_REQUEST_NAMESPACE = 'limitador_namespace!~"$request_namespace"'
REQUEST_NAMESPACE = 'limitador_namespace=~"$request_namespace"'


def label_filter(label: str) -> str:
    """`label=~"$variable"`: the filter of a label by its dashboard variable (All = `.*`)."""
    return f'{label}=~"${variable_name(label)}"'


TIER = label_filter(contract.TIER)
USER = label_filter(contract.USER)
MODEL = label_filter(contract.MODEL)


@dataclass(frozen=True, slots=True)
class Filters:
    """The matchers each kind of panel applies, for one schema.

    `tokens`: token, hits and cost panels (never the request policy's
    namespace: its hits count requests). `calls`: rate-limit panels, calls of
    both policies; without `model` when the calls counters carry none (those
    panels then cover every model and say so). Both filter the billing
    dimension, `user` when captured and every captured attribution label.
    """

    schema: Schema

    @property
    def identity(self) -> tuple[str, ...]:
        """Dimension, user (when captured), attribution: the seed's `tier`, `user` order."""
        schema = self.schema
        user = (contract.USER,) if schema.user else ()
        return tuple(label_filter(x) for x in (schema.dimension, *user, *schema.attribution))

    @property
    def tokens(self) -> tuple[str, ...]:
        return (NAMESPACE, NOT_REQUEST_NAMESPACE, *self.identity, MODEL)

    @property
    def calls(self) -> tuple[str, ...]:
        model = (MODEL,) if self.schema.calls_model else ()
        return (NAMESPACE, *self.identity, *model)


CALL_FILTER: tuple[str, ...] = Filters(contract.SEED).calls
"""Rate-limit panels of the seed's schema: calls of both policies (request and token namespaces)."""

TOKEN_FILTER: tuple[str, ...] = Filters(contract.SEED).tokens
"""Token, hits and cost panels of the seed's schema: never the request policy's namespace."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Totals and rates of counters, from raw series or from the recording rules.

    Every method returns an expression aggregated with `sum by (labels)`.
    Several counters are summed as one (`checks_*`: allowed + limited calls)
    by a union of their series, so each is read once. A counter is read under
    the names the schema gives it (`Schema.names_of`); with two (`auto`), the
    aggregates are joined with `or`, so each key takes the preferred name's
    value and falls back to the other's, never the sum of both.
    """

    recording_rules: bool = False
    schema: Schema = contract.SEED

    def total(self, counter: str, matchers: Sequence[str], labels: Sequence[str]) -> str:
        """The increase of `counter` over `$__range`, summed by `labels`.

        From the rules: per user, the hour samples of the range and the
        hour-to-date samples at its two ends (`rules.reading.range_total`,
        about 24 samples a day per series); per tier, the minute samples.
        """
        return self._sum(
            (counter,), matchers, labels, _increase("$__range"), _sum_over("$__range"), RANGE
        )

    def window(
        self, counter: str, matchers: Sequence[str], labels: Sequence[str], seconds: int
    ) -> str:
        """The increase of `counter` over the last `seconds` (a limit's window), by `labels`.

        From the rules, when `seconds` is whole minutes and the rules keep
        `user`: the minute samples in the last `seconds` (left-open), i.e. the
        window ending at the rules' latest evaluation, up to a minute behind
        the raw read. Otherwise the raw counters (a window under a minute, or
        off the minute grid, has no rule samples that tile it).
        """
        minutes = seconds % recording.INTERVAL_SECONDS == 0
        if self.recording_rules and not (minutes and self.schema.user):
            return replace(self, recording_rules=False).window(counter, matchers, labels, seconds)
        return self._sum(
            (counter,),
            matchers,
            labels,
            _increase(f"{seconds}s"),
            lambda series: f"sum_over_time({series}[{reading.left_open(seconds)}])",
        )

    def hourly(self, counter: str, matchers: Sequence[str], labels: Sequence[str]) -> str:
        """Growth per clock hour, for a range query at a 1 h step (Grafana aligns it to hours).

        The point at an hour's start holds that hour (`offset -1h` looks ahead),
        clipped to the dashboard's range: the first hour counts from
        `$__from`, the last (the current hour, partial) up to `$__to`, so the
        bars add up to the range's total. Time conditions pick one of the
        four (start, end) forms at each step (`growth`, the `increase_exact` technique).
        With recording rules, per user: the hour samples, and the minutes of the
        clipped first and last hours (`rules.reading.hourly_points`).
        """
        schema = self.schema
        if self.recording_rules and schema.user and contract.USER in labels:
            return _sum_union(
                (counter,),
                labels,
                lambda c: (
                    f"{by(labels)} ("
                    + reading.hourly_points(
                        *_user_levels(c, schema, matchers), RANGE_FROM, RANGE_TO
                    )
                    + ")"
                ),
            )

        def per_series(name: str) -> str:
            series = selector(name, matchers)
            ahead = f"{series}[1h] offset -1h"
            up_to_end = f"{series}[1h] @ {RANGE_TO}"
            now = "vector(time())"
            # The first hour starts at $__from; what grew before it is taken off `increase()`.
            starts = (
                (series, f"{now} >= {RANGE_FROM}", None),
                (
                    f"{series} @ {RANGE_FROM}",
                    f"{now} < {RANGE_FROM}",
                    f"{series} @ {RANGE_FROM} - {series}",
                ),
            )
            parts = []
            for start, when_start, before in starts:
                middle = growth(ahead, start, f"last_over_time({ahead})", before)
                # The last hour ends at $__to: its samples are read up to there (a past range has
                # data after it). That window also holds the hour before; it is used only when
                # no counter reset happened in the hour before (else the hour ahead is read).
                end = f"last_over_time({up_to_end})"
                last = (
                    f"({growth(up_to_end, start, end)}) and (resets({series}[1h]) == 0)"
                    f" or ({growth(ahead, start, end, before)})"
                )
                parts.append(
                    f"(({middle}) and on () ({when_start}) and on () ({now} <= {RANGE_TO} - 3600))"
                )
                # (a point exactly at $__to, when it falls on an hour, holds an empty hour: none)
                in_last_hour = f"{now} > {RANGE_TO} - 3600 and {now} < {RANGE_TO}"
                parts.append(f"(({last}) and on () ({when_start}) and on () ({in_last_hour}))")
            return " or ".join(parts)

        return preferred(schema.names_of(counter), schema.labels_of(counter), per_series, labels)

    def rate(self, counter: str, matchers: Sequence[str], labels: Sequence[str]) -> str:
        """The per-second rate of `counter` over `$__rate_interval`, summed by `labels`."""
        return self._per_second((counter,), matchers, labels)

    def checks_total(self, matchers: Sequence[str], labels: Sequence[str]) -> str:
        """Policy checks (allowed + limited calls) over `$__range`, summed by `labels`."""
        return self._sum(
            CHECKS, matchers, labels, _increase("$__range"), _sum_over("$__range"), RANGE
        )

    def checks_rate(self, matchers: Sequence[str], labels: Sequence[str]) -> str:
        """Policy checks (allowed + limited calls) per second, summed by `labels`."""
        return self._per_second(CHECKS, matchers, labels)

    def _per_second(
        self, counters: Sequence[str], matchers: Sequence[str], labels: Sequence[str]
    ) -> str:
        if self.recording_rules:
            return self._sum(counters, matchers, labels, _rate, _per_second)
        return f"{self._sum(counters, matchers, labels, _rate, _per_second)} / {RATE_SECONDS}"

    def _sum(
        self,
        counters: Sequence[str],
        matchers: Sequence[str],
        labels: Sequence[str],
        raw: Callable[[str], str],
        rule: Callable[[str], str],
        user_window: str = "",
    ) -> str:
        """`raw` reads a raw counter selector; `rule` a minute-level rule selector.

        `user_window`: the per-user level is read over that window from its hour
        and hour-to-date samples (`rules.reading.range_total`) instead of `rule`.
        """
        schema = self.schema
        if not self.recording_rules:

            def read_raw(counter: str) -> str:
                return preferred(
                    schema.names_of(counter),
                    schema.labels_of(counter),
                    lambda n: raw(selector(n, matchers)),
                    labels,
                )

            return _sum_union(counters, labels, read_raw)
        kept = recording.user_labels(schema, counters[0])
        if not set(labels) <= set(kept):
            raise ValueError(f"the recording rules keep only {kept}, not {labels}")

        def minutes(c: str, chosen: Sequence[str]) -> str:
            return f"{by(labels)} ({rule(selector(recording.per_user_series(c, schema), chosen))})"

        def per_user(c: str, chosen: Sequence[str]) -> str:
            # Without `user`, one level: the minutes. By model: the minutes too.
            if not (user_window and schema.user and contract.MODEL not in labels):
                return minutes(c, chosen)
            hours = selector(recording.all_models_hour_series(c, schema), chosen)
            to_date = selector(recording.per_user_to_date_series(c, schema), chosen)
            total = f"{by(labels)} ({reading.range_total(hours, to_date, user_window, by(labels))})"
            if contract.MODEL not in recording.user_labels(schema, c):
                return total
            # All models: the all-models level (no `model` label, so `model=~".*"` matches it);
            # chosen models: the per-model minutes (the absent label differs from the names).
            return f"({total} or {minutes(c, [*chosen, f'{ABSENT_LABEL}!~{MODEL_CHOICE}'])})"

        if contract.USER in labels or not schema.user:
            return _sum_union(counters, labels, lambda c: per_user(c, matchers))
        # All users: the per-tier series (no `user` label, so `user=~".*"` matches them);
        # chosen users: the per-user series (the absent label differs from the chosen names).
        chosen = [*matchers, f'{ABSENT_LABEL}!~"$user"']
        per_tier = _sum_union(
            counters,
            labels,
            lambda c: (
                f"{by(labels)} ({rule(selector(recording.per_tier_series(c, schema), matchers))})"
            ),
        )
        users = _sum_union(counters, labels, lambda c: per_user(c, chosen))
        return f"({per_tier} or {users})"


CHECKS = (contract.CALLS, contract.LIMITED)

RANGE = "$__range"
MODEL_CHOICE = '"$model"'
"""The model filter's value, for the absent-label switch between the all-models and per-model levels."""
RANGE_FROM = "${__from:date:seconds}"
RANGE_TO = "${__to:date:seconds}"
"""The dashboard range's edges in unix seconds (Grafana's global variables), for `@`."""

RATE_SECONDS = "($__rate_interval_ms / 1000)"
"""`$__rate_interval` in seconds: raw rates are the exact growth over it, divided by it."""


def _sum_union(counters: Sequence[str], labels: Sequence[str], read: Callable[[str], str]) -> str:
    """`sum by (labels)` of one counter, or of several added up key by key.

    `read(counter)` gives one counter's aggregate by `labels`; the parts are
    put side by side (each later one marked with a `maas_counter` label so
    `or` keeps it) and summed: a key that only one counter has still counts.
    """
    parts = [read(c) for c in counters]
    if len(parts) == 1:
        return parts[0]
    marked = [parts[0]]
    marked += [
        f'label_replace({p}, "maas_counter", "{c}", "", "")'
        for p, c in zip(parts[1:], counters[1:], strict=True)
    ]
    return f"{by(labels)} ({' or '.join(marked)})"


def _user_levels(counter: str, schema: Schema, matchers: Sequence[str]) -> tuple[str, str]:
    """Selectors of the per-user minute and hour series of `counter`."""
    return (
        selector(recording.per_user_series(counter, schema), matchers),
        selector(recording.per_user_hour_series(counter, schema), matchers),
    )


def _increase(window: str) -> Callable[[str], str]:
    return lambda series: increase_exact(series, window)


def _sum_over(window: str) -> Callable[[str], str]:
    return lambda series: f"sum_over_time({series}[{window}])"


def _rate(series: str) -> str:
    """The growth over `$__rate_interval` (`Counters._per_second` divides the sum by its length)."""
    return increase_exact(series, "$__rate_interval")


def _per_second(series: str) -> str:
    """The last rule sample per second, only if it is from the last interval.

    `[59s]`: ranges are closed, so 60 s could hold two evaluations; a bare
    selector would repeat a stopped series' last minute (a restart, a quiet
    user) for Prometheus' 5 min lookback.
    """
    window = f"{recording.INTERVAL_SECONDS - 1}s"
    return f"sum_over_time({series}[{window}]) / {recording.INTERVAL_SECONDS}"


def set_label(expr: str, label: str, value: str) -> str:
    """`expr` with `label` set to the literal `value` on every element."""
    # label_replace's replacement expands `$1`; `$$` is a literal dollar.
    return f'label_replace({expr}, "{label}", {string_literal(value.replace("$", "$$"))}, "", "")'


def or_zero(expr: str) -> str:
    """A single-value expression that shows 0 instead of "No data" when nothing matched."""
    return f"({expr}) or vector(0)"


def success_ratio(allowed: str, limited: str, checks: str) -> str:
    """allowed / (allowed + limited), keeping keys that only one side has (only limited -> 0).

    `checks` is allowed + limited (`Counters.checks_*`); all three must be
    aggregated by the same labels. Keys with no calls at all in the window
    are dropped rather than shown as 0/0.
    """
    return f"({allowed}) / (({checks}) > 0) or 0 * (({limited}) > 0)"


# --- top N users plus "others" ------------------------------------------------------------------

#: The `user` value of the row that sums every user outside the top N.
OTHERS = "others"
#: Marks that row, so it never merges with a real user who happens to be called "others".
OTHERS_LABEL = "maas_others"


def top_and_others(top: str, everyone: str, label: str = "user") -> str:
    """The rows of `top` plus one `label="others"` row: the sum of every row of `everyone` whose
    `label` is not among `top`'s.

    `top` must be `everyone` narrowed to the chosen users (same counters, same
    aggregation), so the rows add up to the panel's total whatever the ranking
    did with ties. The rest is summed from the other users' rows rather than
    subtracted from the total, so it is exactly absent (not a rounding error)
    when the top holds everyone, and left out when it is 0. Works per step in
    range queries.
    """
    rest = f"sum(({everyone}) unless on ({label}) ({top})) > 0"
    return f"({top}) or {set_label(set_label(rest, label, OTHERS), OTHERS_LABEL, 'true')}"
