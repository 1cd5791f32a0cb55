"""The catalogue's quota-headroom panel: the ten users closest to their token and request limits.

Hits in the last window of each tier's limit (the window from the config)
over the limit's maximum (`rules.limits.quota`: the limits-as-data rules,
else the gateway's gauge), one query part per tier and policy.
"""

from __future__ import annotations

from maas_metrics import contract
from maas_metrics.config import Tier
from maas_metrics.dashboard.model import Grid, Panel, Target, Threshold
from maas_metrics.dashboard.panel_context import HITS, USER, USER_FILTER, PanelContext
from maas_metrics.dashboard.promql import (
    NAMESPACE,
    NOT_REQUEST_NAMESPACE,
    REQUEST_NAMESPACE,
    label_filter,
    selector,
)
from maas_metrics.policies import request_namespaces
from maas_metrics.promql import increase_exact, preferred, string_literal
from maas_metrics.rules.limits import quota


def quota_headroom(ctx: PanelContext) -> Panel | None:
    """The panel, or None when no tier has a token limit (nor, with a request policy, a request limit)."""
    targets: list[Target] = []
    tokens = [
        _quota(ctx, t, "tokens", t.token_limit.window_seconds)
        for t in ctx.config.tiers_by_level()
        if t.token_limit is not None
    ]
    requests = [
        _quota(ctx, t, "requests", t.request_limit.window_seconds)
        for t in ctx.config.tiers_by_level()
        if t.request_limit is not None and request_namespaces(ctx.config)
    ]
    for ref_id, policy, parts in (("A", "tokens", tokens), ("B", "requests", requests)):
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


def _quota(ctx: PanelContext, tier: Tier, policy: str, window_seconds: int) -> str:
    """One tier's users: hits of the window over the limit's maximum, per namespace."""
    namespace = REQUEST_NAMESPACE if policy == "requests" else NOT_REQUEST_NAMESPACE
    dim = ctx.dim
    this_tier = f"{dim}={string_literal(tier.name)}"
    attribution = tuple(label_filter(x) for x in ctx.schema.attribution)
    matchers = (NAMESPACE, namespace, this_tier, label_filter(dim), *attribution, USER_FILTER)
    used = preferred(
        ctx.schema.names_of(HITS),
        ctx.schema.labels_of(HITS),
        lambda name: increase_exact(selector(name, matchers), f"{window_seconds}s"),
        (contract.NAMESPACE, USER, dim),
    )
    limit_max = quota([f'policy="{policy}"', this_tier], dim)
    return f"({used} / on (limitador_namespace, {dim}) group_left () ({limit_max} > 0))"
