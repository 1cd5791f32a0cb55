"""Alerting rules for SREs: rate limiter down, high limited ratio, users near quota, store partitioned.

Every tier, namespace and window comes from the config, so a tier added to
the YAML file gets its quota alerts without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from maas_metrics.config import Config
from maas_metrics.policies import tier_policies
from maas_metrics.promql import duration, matcher, selector
from maas_metrics.rules.limits import policy_namespaces, quota
from maas_metrics.services import GATEWAY_SERVICE, LIMITADOR_SERVICE

ALERT_GROUP = "maas-metrics-alerts"

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
        "expr": f"limitador_up == 0 or {jobs} == 0 or absent(limitador_up)",
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


def high_limited_ratio(config: Config, settings: AlertSettings) -> Rule:
    """Per tier and policy (namespace), since one request is checked once by each policy."""
    names = [config.namespaces.requests, config.namespaces.tokens]
    ns = matcher("limitador_namespace", names)
    window = settings.limited_ratio_window
    by = "sum by (tier, limitador_namespace)"
    limited = f"{by} (rate({selector('limited_calls', [ns])}[{window}]))"
    allowed = f"{by} (rate({selector('authorized_calls', [ns])}[{window}]))"
    # A tier whose users are only ever limited has no authorized_calls series: count it as 0.
    expr = f"{limited} / ({limited} + ({allowed} or {limited} * 0)) > {settings.limited_ratio:g}"
    return {
        "alert": "MaaSHighLimitedRatio",
        "expr": expr,
        "for": settings.limited_ratio_for,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Many requests of tier {{ $labels.tier }} are rate-limited",
            "description": (
                "{{ $value | humanizePercentage }} of the policy checks in namespace "
                "{{ $labels.limitador_namespace }} for tier {{ $labels.tier }} were limited over the last "
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
    rules: list[Rule] = []
    for tier_name, policies in tier_policies(config).items():
        for policy, limit in (("requests", policies.requests), ("tokens", policies.tokens)):
            if limit is None or limit.max_value == 0:
                continue
            namespaces = policy_namespaces(config, policy)
            if not namespaces:
                continue
            where = [
                matcher("limitador_namespace", list(namespaces)),
                matcher("tier", [tier_name]),
            ]
            used = (
                "sum by (limitador_namespace, tier, user) "
                f"(increase({selector('authorized_hits', where)}[{duration(limit.seconds)}]))"
            )
            limit_max = quota([*where, matcher("policy", [policy])])
            rules.append(
                {
                    "alert": "MaaSUserNearQuota",
                    "expr": (
                        f"{used} >= on (limitador_namespace, tier) group_left () "
                        f"({settings.near_quota:g} * {limit_max})"
                    ),
                    "labels": {
                        "severity": "info",
                        "policy": policy,
                        "limit_name": limit.name,
                    },
                    "annotations": {
                        "summary": "User {{ $labels.user }} is near the "
                        + f"{policy} quota of tier {{{{ $labels.tier }}}}",
                        "description": (
                            "{{ $labels.user }} used {{ $value | humanize }} "
                            + f"{policy} of {limit.max_value} per {limit.seconds}s "
                            + f"(limit {limit.name}, alert at {settings.near_quota:.0%})."
                        ),
                    },
                }
            )
    return rules


def counter_store_partitioned(settings: AlertSettings) -> Rule:
    return {
        "alert": "MaaSCounterStorePartitioned",
        "expr": "datastore_partitioned == 1",
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


def alert_rules(config: Config, settings: AlertSettings | None = None) -> list[Rule]:
    settings = settings or AlertSettings()
    return [
        rate_limiter_down(settings),
        high_limited_ratio(config, settings),
        *near_quota(config, settings),
        counter_store_partitioned(settings),
    ]


def alert_group(config: Config, settings: AlertSettings | None = None) -> dict[str, object]:
    return {"name": ALERT_GROUP, "rules": alert_rules(config, settings)}
