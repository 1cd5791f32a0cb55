"""The catalogue's dashboard variables: datasource, the filters, and the hidden top-user lists.

Filters are multi-select with All = `.*`: namespace, the billing dimension,
user (narrowed by namespace and dimension, only-limited users included),
model, then one per captured attribution label. Hidden: `request_namespace`
(a constant, the request policy's namespaces that token panels exclude),
`table_users` and `top_users` (`top` variables: resolve them with
`variables.top_values`).
"""

from __future__ import annotations

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.contract import Schema
from maas_metrics.dashboard.model import Variable
from maas_metrics.dashboard.panel_context import (
    CALLS,
    DIMENSION_WORDS,
    HITS,
    LIMITED,
    TITLES,
    USER,
)
from maas_metrics.dashboard.promql import NAMESPACE, Counters, Filters, label_filter, re2_escape
from maas_metrics.dashboard.variables import ALL_VALUE
from maas_metrics.policies import request_namespaces


def _names(schema: Schema, counters: tuple[str, ...]) -> str:
    """`__name__=~"a|b"`: every name the schema reads the counters under."""
    names = [n for c in counters for n in schema.names_of(c)]
    return f'__name__=~"{"|".join(names)}"'


def variables(config: Config) -> tuple[Variable, ...]:
    """The datasource, the filters (multi-select, All = `.*`) and the request-namespace constant."""
    schema = config.contract
    dim = schema.dimension
    calls = _names(schema, (CALLS, LIMITED))

    def usage(*matchers: str, names: str = calls) -> str:
        return "{" + ", ".join((names, *matchers)) + "}"

    def filter_variable(name: str, label: str, label_name: str, match: str, why: str) -> Variable:
        return Variable(
            name=name,
            label=label,
            kind="query",
            description=why,
            label_name=label_name,
            match=match,
            multi=True,
            include_all=True,
            all_value=ALL_VALUE,
        )

    user: tuple[Variable, ...] = ()
    if schema.user:
        user = (
            filter_variable(
                "user",
                "User",
                "user",
                usage(NAMESPACE, label_filter(dim)),
                f"Users seen in the chosen namespaces and {dim}s, including users who were only "
                "limited.",
            ),
        )
    # `model` from the hits when the calls counters carry none.
    model_names = calls if schema.calls_model else _names(schema, (HITS,))
    attribution = tuple(
        filter_variable(
            contract.variable_name(label),
            TITLES[label],
            label,
            usage(NAMESPACE),
            f"The callers' {label} (attribution label; `{schema.missing_value}` for keys "
            "without one).",
        )
        for label in schema.attribution
    )
    return (
        Variable(
            name="datasource",
            label="Data source",
            kind="datasource",
            description="The Prometheus that scrapes Limitador (or the maas-metrics gateway).",
            value="prometheus",
        ),
        filter_variable(
            "namespace",
            "Namespace",
            "limitador_namespace",
            usage(),
            "limitador_namespace: one per policy (gateway) or per HTTPRoute (Kuadrant). Token "
            "panels never count the request policy's namespaces, whatever is chosen here.",
        ),
        filter_variable(
            dim, TITLES[dim], dim, usage(NAMESPACE), f"The users' {DIMENSION_WORDS[dim]}."
        ),
        *user,
        filter_variable(
            "model", "Model", "model", usage(NAMESPACE, names=model_names), "The model requested."
        ),
        *attribution,
        Variable(
            name="request_namespace",
            label="Request-policy namespace",
            kind="constant",
            description=(
                "Regex of the request policy's limitador_namespaces, excluded from token panels "
                "(empty: no request policy, as on a Kuadrant cluster with token routes only)."
            ),
            value="|".join(re2_escape(n) for n in request_namespaces(config)),
            hidden=True,
        ),
    )


def table_users_variable(
    counters: Counters, limit: int, schema: Schema = contract.SEED
) -> Variable:
    """The `limit` users with the most policy checks (allowed + limited) in the range and filters."""
    if limit < 1:
        raise ValueError("the detailed table needs at least one user")
    return Variable(
        name="table_users",
        label="Most active users",
        kind="top",
        description=f"The {limit} users with the most allowed + limited calls: the detailed table's rows.",
        label_name="user",
        expr=counters.checks_total(Filters(schema).calls, ("user",)),
        limit=limit,
        hidden=True,
    )


def top_users_variable(counters: Counters, limit: int, schema: Schema = contract.SEED) -> Variable:
    """The `limit` users with the most hits in the range and filters: the per-user panels' rows."""
    return Variable(
        name="top_users",
        label="Top users",
        kind="top",
        description=f"The {limit} users with the most hits; per-user panels sum the rest as others.",
        label_name="user",
        expr=counters.total(HITS, Filters(schema).tokens, (USER,)),
        limit=limit,
        hidden=True,
    )
