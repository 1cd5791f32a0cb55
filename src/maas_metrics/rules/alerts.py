"""Alerting rules for SREs: rate limiter down, high limited ratio, users near quota, store
partitioned, too many usage series (cardinality).

Labels and counter names follow the config's schema (`contract.Schema`);
without `user` there is no per-user usage, so no near-quota alert.

Every tier, namespace and window comes from the config, so a tier added to
the YAML file gets its quota alerts without code changes. Growth over a
window is `increase_exact` (maas_metrics.promql), the dashboard's technique,
so a user whose series were born inside the window (a new user, a first 429)
is counted from their first value.
"""

from __future__ import annotations

from dataclasses import dataclass

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.contract import Schema
from maas_metrics.ledger.alerts import alert_rules as ledger_alerts
from maas_metrics.policies import request_namespaces, tier_policies, token_namespaces
from maas_metrics.promql import duration, increase_exact, matcher, preferred, selector
from maas_metrics.rules.limits import policy_namespaces, quota
from maas_metrics.services import GATEWAY_SERVICE, LIMITADOR_SERVICE

ALERT_GROUP = "maas-metrics-alerts"
UP = contract.LIMITADOR_UP

#: Prometheus Operator names a ServiceMonitor's `job` label after the Service it scrapes.
DEFAULT_LIMITER_JOBS = (LIMITADOR_SERVICE, GATEWAY_SERVICE)

Rule = dict[str, object]


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Thresholds of the alerts; the defaults suit the reference tiers."""

    limited_ratio: float = 0.2
    """Alert when more than this fraction of a tier's policy checks are limited."""
    limited_ratio_window: str = "5m"
    limited_ratio_for: str = "10m"
    near_quota: float = 0.9
    """Alert when a user has used this fraction of a limit within its window."""
    down_for: str = "1m"
    partitioned_for: str = "2m"
    series_for: str = "15m"
    """How long the usage series count must stay over `schema.max_usage_series`."""
    limiter_jobs: tuple[str, ...] = DEFAULT_LIMITER_JOBS
    """`job` label values of the scrape targets that run a rate limiter (Limitador or the gateway)."""

    def __post_init__(self) -> None:
        if not 0 < self.limited_ratio < 1:
            raise ValueError(
                f"limited ratio must be between 0 and 1 (exclusive), got {self.limited_ratio}"
            )
        if not 0 < self.near_quota <= 1:
            raise ValueError(f"near-quota fraction must be in (0, 1], got {self.near_quota}")
        if not self.limiter_jobs:
            raise ValueError("at least one rate limiter job is needed")


def rate_limiter_down(settings: AlertSettings) -> Rule:
    jobs = selector("up", [matcher("job", list(settings.limiter_jobs))])
    return {
        "alert": "MaaSRateLimiterDown",
        "expr": f"{UP} == 0 or {jobs} == 0 or absent({UP})",
        "for": settings.down_for,
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "The rate limiter is down: requests are not metered or limited",
            "description": (
                "{{ with $labels.instance }}Target {{ . }}: {{ end }}"
                "limitador_up is 0, the scrape target is down, or no limiter reports at all."
            ),
        },
    }


def _growth(
    schema: Schema, counter: str, by: tuple[str, ...], matchers: list[str], window: str
) -> str:
    """`sum by (by)` of the counter's growth over `window` (`increase_exact`), under each
    name the schema reads (`preferred`)."""
    return preferred(
        schema.names_of(counter),
        schema.labels_of(counter),
        lambda n: increase_exact(selector(n, matchers), window),
        by,
    )


def high_limited_ratio(config: Config, settings: AlertSettings) -> Rule:
    """Per tier and policy (namespace), since one request is checked once by each policy."""
    schema = config.contract
    dim = schema.dimension
    names = [*request_namespaces(config), *token_namespaces(config)]  # the source's
    ns = matcher(contract.NAMESPACE, names)
    window = settings.limited_ratio_window
    by = (dim, contract.NAMESPACE)
    # Growth over the window (not rate): a ratio needs no per-second scale, and
    # increase_exact counts a user's series born inside the window.
    limited = _growth(schema, contract.LIMITED, by, [ns], window)
    allowed = _growth(schema, contract.CALLS, by, [ns], window)
    # A tier whose users are only ever limited has no authorized_calls series: count it as 0.
    expr = f"{limited} / ({limited} + ({allowed} or {limited} * 0)) > {settings.limited_ratio:g}"
    return {
        "alert": "MaaSHighLimitedRatio",
        "expr": expr,
        "for": settings.limited_ratio_for,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": f"Many requests of {dim} {{{{ $labels.{dim} }}}} are rate-limited",
            "description": (
                "{{ $value | humanizePercentage }} of the policy checks in namespace "
                f"{{{{ $labels.limitador_namespace }}}} for {dim} {{{{ $labels.{dim} }}}} were "
                "limited over the last "
                f"{window} (threshold {settings.limited_ratio:.0%})."
            ),
        },
    }


def near_quota(config: Config, settings: AlertSettings) -> list[Rule]:
    """One rule per configured limit: a user's hits within the limit's window against its max.

    The max comes from the limits-as-data rules (`maas:limit_max`, rules/limits.py),
    or the `maas_limit_max` gauge our gateway publishes, so the alert works on a
    Kuadrant-only cluster too; the window is the config's.
    """
    schema = config.contract
    dim = schema.dimension
    if not schema.user:
        return []  # usage per user is not recorded: nothing to compare with a per-user limit
    rules: list[Rule] = []
    for tier_name, policies in tier_policies(config).items():
        for policy, limit in (("requests", policies.requests), ("tokens", policies.tokens)):
            if limit is None or limit.max_value == 0:
                continue
            namespaces = policy_namespaces(config, policy)
            if not namespaces:
                continue
            where = [
                matcher(contract.NAMESPACE, list(namespaces)),
                matcher(dim, [tier_name]),
            ]
            used = _used(schema, where, duration(limit.seconds))
            limit_max = quota([*where, matcher("policy", [policy])], dim)
            rules.append(
                {
                    "alert": "MaaSUserNearQuota",
                    "expr": (
                        f"{used} >= on (limitador_namespace, {dim}) group_left () "
                        f"({settings.near_quota:g} * {limit_max})"
                    ),
                    "labels": {
                        "severity": "info",
                        "policy": policy,
                        "limit_name": limit.name,
                    },
                    "annotations": {
                        "summary": "User {{ $labels.user }} is near the "
                        + f"{policy} quota of {dim} {{{{ $labels.{dim} }}}}",
                        "description": (
                            "{{ $labels.user }} used {{ $value | humanize }} "
                            + f"{policy} of {limit.max_value} per {limit.seconds}s "
                            + f"(limit {limit.name}, alert at {settings.near_quota:.0%})."
                        ),
                    },
                }
            )
    return rules


def _used(schema: Schema, where: list[str], window: str) -> str:
    """Each user's hits within `window` (under each name the schema reads)."""
    dim = schema.dimension
    return preferred(
        schema.names_of(contract.HITS),
        schema.labels_of(contract.HITS),
        lambda n: increase_exact(selector(n, where), window),
        (contract.NAMESPACE, dim, contract.USER),
    )


def counter_store_partitioned(settings: AlertSettings) -> Rule:
    return {
        "alert": "MaaSCounterStorePartitioned",
        "expr": f"{contract.DATASTORE_PARTITIONED} == 1",
        "for": settings.partitioned_for,
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "The rate limiter cannot reach its counter store",
            "description": (
                "{{ with $labels.instance }}{{ . }}: {{ end }}the counter store (Redis) is unreachable; "
                "requests are denied or admitted unmetered, depending on storage.on_failure."
            ),
        },
    }


def usage_series_high(config: Config, settings: AlertSettings) -> Rule:
    """Cardinality: the usage counters' series count over `schema.max_usage_series`.

    Every label value (user, attribution) multiplies the series Prometheus
    keeps; this fires before that hurts, e.g. when `user` capture meets a
    user base far larger than planned.
    """
    schema = config.contract
    counters = (*contract.LIMITADOR_COUNTERS, *contract.TOKEN_KIND_COUNTERS)
    names = sorted({n for c in counters for n in schema.names_of(c)})
    threshold = config.metrics_schema.max_usage_series
    return {
        "alert": "MaaSUsageSeriesHigh",
        "expr": f'count({{__name__=~"{"|".join(names)}"}}) > {threshold}',
        "for": settings.series_for,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "The usage counters have more series than planned",
            "description": (
                "{{ $value }} series of the usage counters (threshold "
                f"{threshold}, schema.max_usage_series). Each captured label value multiplies "
                "them: consider schema.capture_user: false or fewer attribution labels."
            ),
        },
    }


def alert_rules(config: Config, settings: AlertSettings | None = None) -> list[Rule]:
    settings = settings or AlertSettings()
    return [
        rate_limiter_down(settings),
        high_limited_ratio(config, settings),
        *near_quota(config, settings),
        counter_store_partitioned(settings),
        usage_series_high(config, settings),
        *(ledger_alerts() if config.ledger.enabled else []),
    ]


def alert_group(config: Config, settings: AlertSettings | None = None) -> dict[str, object]:
    return {"name": ALERT_GROUP, "rules": alert_rules(config, settings)}
