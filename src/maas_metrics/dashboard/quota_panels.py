"""The catalogue's quota-headroom panel: the ten users closest to their token and request limits.

Hits in the last window of each tier's limit (the window from the config)
over the limit's maximum (`rules.limits.quota`: the limits-as-data rules,
else the gateway's gauge), one query part per policy and limit window.
With recording rules a window of whole minutes is read from the per-user
minute samples (`Counters.window`): at 10,000 users the raw read's exact
increase takes seconds (BENCHMARKS.md, scale), the minutes a fraction of one.
"""

from __future__ import annotations

from collections.abc import Iterable

from maas_metrics import contract
from maas_metrics.dashboard.model import Grid, Panel, Target, Threshold
from maas_metrics.dashboard.panel_context import HITS, USER, USER_FILTER, PanelContext
from maas_metrics.dashboard.promql import (
    NAMESPACE,
    NOT_REQUEST_NAMESPACE,
    REQUEST_NAMESPACE,
    label_filter,
)
from maas_metrics.policies import request_namespaces
from maas_metrics.promql import matcher
from maas_metrics.rules.limits import quota


def quota_headroom(ctx: PanelContext) -> Panel | None:
    """The panel, or None when no tier has a token limit (nor, with a request policy, a request limit)."""
    targets: list[Target] = []
    tokens = _by_window(
        (t.name, t.token_limit.window_seconds)
        for t in ctx.config.tiers_by_level()
        if t.token_limit is not None
    )
    requests = _by_window(
        (t.name, t.request_limit.window_seconds)
        for t in ctx.config.tiers_by_level()
        if t.request_limit is not None and request_namespaces(ctx.config)
    )
    for ref_id, policy, windows in (("A", "tokens", tokens), ("B", "requests", requests)):
        parts = [_quota(ctx, tiers, policy, seconds) for seconds, tiers in windows.items()]
        if parts:
            targets.append(
                Target(
                    ref_id,
                    f"sort_desc(topk(10, {' or '.join(parts)}))",
                    legend=f"{{{{user}}}} ({{{{{ctx.dim}}}}}) {policy}",
                    instant=True,
                    description=f"Share of the {policy} limit used in the current window.",
                )
            )
    if not targets:
        return None
    return Panel(
        id=17,
        key="quota_headroom",
        title="⛽ Quota Headroom",
        description=(
            "The ten users closest to their token and request limits: hits in the last window "
            f"of their {ctx.dim}'s limit (window from the config) over the limit's maximum "
            "(the limits-as-data rules' maas:limit_max, else the gateway's maas_limit_max). "
            "100 % means the next request is limited. Limits count all "
            "models, so the model filter does not apply."
            + (
                " From the recording rules: a window of whole minutes ends at the rules' "
                "latest evaluation, up to a minute ago."
                if ctx.c.recording_rules and ctx.schema.user
                else ""
            )
        ),
        kind="bargauge",
        unit="percentunit",
        decimals=0,
        min_value=0,
        max_value=1,
        targets=tuple(targets),
        grid=Grid(0, 38, 24, 9),
        thresholds=(Threshold("green"), Threshold("orange", 0.8), Threshold("red", 1.0)),
    )


def _by_window(tiers: Iterable[tuple[str, int]]) -> dict[int, list[str]]:
    """Tier names by their limit's window (seconds): one query part per window, not per tier.

    A shorter query, not a faster one: the parts select the same series either
    way (measured: 3.0-3.3 s both ways at 10,000 users, BENCHMARKS.md).
    """
    out: dict[int, list[str]] = {}
    for name, seconds in tiers:
        out.setdefault(seconds, []).append(name)
    return out


def _quota(ctx: PanelContext, tiers: list[str], policy: str, window_seconds: int) -> str:
    """The users of `tiers` (one limit window): hits of the window over the limit's maximum."""
    namespace = REQUEST_NAMESPACE if policy == "requests" else NOT_REQUEST_NAMESPACE
    dim = ctx.dim
    these_tiers = matcher(dim, tiers)
    attribution = tuple(label_filter(x) for x in ctx.schema.attribution)
    matchers = (NAMESPACE, namespace, these_tiers, label_filter(dim), *attribution, USER_FILTER)
    used = ctx.c.window(HITS, matchers, (contract.NAMESPACE, USER, dim), window_seconds)
    limit_max = quota([f'policy="{policy}"', these_tiers], dim)
    return f"({used} / on (limitador_namespace, {dim}) group_left () ({limit_max} > 0))"
