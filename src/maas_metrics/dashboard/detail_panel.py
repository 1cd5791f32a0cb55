"""The catalogue's detailed table: hits, allowed and limited calls, success rate and cost per row.

A row per namespace, user (when captured), billing dimension, attribution
label and model (when the calls carry it): `detail_labels`, the same key as
the report's finest grouping. The table lists the `DETAIL_USERS` most active
users (the hidden `$table_users` variable); the report exports every row.
"""

from __future__ import annotations

from maas_metrics import contract
from maas_metrics.contract import Schema
from maas_metrics.dashboard.model import Column, Grid, Panel, Target
from maas_metrics.dashboard.panel_context import CALLS, HITS, LIMITED, MODEL, TITLES, PanelContext
from maas_metrics.dashboard.promql import success_ratio

DETAIL_USERS = 100
"""The detailed table lists the rows of this many users: the most active (policy checks) ones."""

TABLE_USERS = 'user=~"$table_users"'


def detail_labels(schema: Schema) -> tuple[str, ...]:
    """The detailed table's row key: namespace, user?, dimension, attribution, model (if on calls)."""
    model = (MODEL,) if schema.calls_model else ()
    return (contract.NAMESPACE, *schema.identity_labels, *model)


DETAIL_LABELS = detail_labels(contract.SEED)
"""The row key of the detailed table (and of the report's finest grouping) in the seed's schema."""


def details(ctx: PanelContext) -> Panel:
    schema = ctx.schema
    keys = detail_labels(schema)
    top = (TABLE_USERS,) if schema.user else ()
    calls_filter = (*ctx.f.calls, *top)
    tokens_filter = (*ctx.f.tokens, *top)
    row = "user, " if schema.user else ""
    row += ", ".join([ctx.dim, *schema.attribution, *(["model"] if schema.calls_model else [])])
    most_active = (
        "Lists the most active users of the selection (hidden variable $table_users); "
        if schema.user
        else ""
    )
    allowed = ctx.c.total(CALLS, calls_filter, keys)
    limited = ctx.c.total(LIMITED, calls_filter, keys)
    return Panel(
        id=9,
        key="details",
        title="📋 Detailed Metrics Table",
        description=(
            f"Per {row} and namespace in the selected range: tokens admitted (token "
            "namespaces only), allowed and limited policy checks, success rate and cost. "
            f"{most_active}`maas-metrics report` exports every row."
        ),
        kind="table",
        unit="short",
        targets=(
            Target(
                "A",
                ctx.c.total(HITS, tokens_filter, keys),
                instant=True,
                table=True,
                description="hits",
            ),
            Target("B", allowed, instant=True, table=True, description="allowed calls"),
            Target("C", limited, instant=True, table=True, description="limited calls"),
            Target(
                "D",
                success_ratio(allowed, limited, ctx.c.checks_total(calls_filter, keys)),
                instant=True,
                table=True,
                description="success rate",
            ),
            Target(
                "E",
                ctx.cost(keys, tokens_filter),
                instant=True,
                table=True,
                description="cost",
            ),
        ),
        columns=(
            *((Column("User", label="user"),) if schema.user else ()),
            Column(ctx.Dim, label=ctx.dim),
            *(Column(TITLES[a], label=a) for a in schema.attribution),
            *((Column("Model", label="model"),) if schema.calls_model else ()),
            Column("Namespace", label=contract.NAMESPACE),
            Column("Hits", ref_id="A", unit="short", decimals=0),
            Column("Allowed calls", ref_id="B", unit="short", decimals=0),
            Column("Limited calls", ref_id="C", unit="short", decimals=0),
            Column("Success rate", ref_id="D", unit="percentunit", decimals=1),
            Column("Cost", ref_id="E", unit="currencyUSD", decimals=4),
        ),
        grid=Grid(0, 47, 24, 12),
        colour_by_tier=True,
    )
