"""The alert thresholds `rules` and `manifests` share (both render the PrometheusRule)."""

from __future__ import annotations

from typing import Annotated

import typer

from maas_metrics.cli.common import fail
from maas_metrics.rules.alerts import DEFAULT_LIMITER_JOBS, AlertSettings

LimitedRatioOption = Annotated[
    float,
    typer.Option(
        "--limited-ratio",
        help="MaaSHighLimitedRatio fires when more than this fraction of a tier's policy checks "
        "are limited for 10 minutes.",
    ),
]
NearQuotaOption = Annotated[
    float,
    typer.Option(
        "--near-quota",
        help="MaaSUserNearQuota fires when a user has used this fraction of a limit within its window.",
    ),
]
LimiterJobOption = Annotated[
    list[str] | None,
    typer.Option(
        "--limiter-job",
        help="`job` label of a rate limiter scrape target, for MaaSRateLimiterDown; repeat for "
        "several (default: limitador-limitador and maas-gateway, the ServiceMonitors' jobs).",
    ),
]


def alert_settings(
    limited_ratio: float, near_quota: float, jobs: list[str] | None
) -> AlertSettings:
    """The options as validated settings, or one line naming the bad option."""
    try:
        return AlertSettings(
            limited_ratio=limited_ratio,
            near_quota=near_quota,
            limiter_jobs=tuple(jobs) if jobs else DEFAULT_LIMITER_JOBS,
        )
    except ValueError as error:
        fail(str(error))
