"""How the Grafana and built-in dashboards look and query."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
)

from maas_metrics.config.base import Text, _Strict

RELATIVE_RANGE_PATTERN = r"^now-[1-9][0-9]{0,5}[smhdw]$"
#: A Grafana refresh interval (`30s`, `1m`, `1h30m`), or empty for none.
REFRESH_PATTERN = r"^(([1-9][0-9]{0,5}(s|m|h|d))+)?$"


class Dashboard(_Strict):
    title: Text = "MaaS Token Metrics"
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "maas-token-metrics"
    refresh: Annotated[str, Field(pattern=REFRESH_PATTERN)] = "30s"
    default_range: Annotated[str, Field(pattern=RELATIVE_RANGE_PATTERN)] = "now-1h"
    # Per-user panels show this many users plus one "others" row (the rest of the total).
    top_users: Annotated[int, Field(ge=1, le=1000)] = 10
    # The built-in web dashboard: Prometheus queries in flight at once (all tabs together), and
    # how long an answer is shared with other tabs asking the same query for the same time.
    web_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    web_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
