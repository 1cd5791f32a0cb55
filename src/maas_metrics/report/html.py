"""The report as one self-contained HTML file: charts (cost by tier, top users) and the table.

plotly.js is embedded, so the file opens offline and can be mailed to finance.
"""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go

from maas_metrics.config import Config
from maas_metrics.report.formats import count, dollars, percent, period_text
from maas_metrics.report.model import Report, Totals

TOP_USERS = 10


def _tier_order(config: Config, tiers: set[str]) -> list[str]:
    known = [t.name for t in config.tiers_by_level() if t.name in tiers]
    return known + sorted(tiers - set(known))


def _colour(config: Config, tier: str) -> str:
    try:
        return config.tier(tier).colour
    except KeyError:
        return "#999999"


def cost_by_tier_figure(report: Report, config: Config) -> go.Figure:
    dim = config.contract.dimension
    by_tier = report.grouped(dim)
    tiers = _tier_order(config, set(by_tier))
    figure = go.Figure(
        go.Bar(
            x=tiers,
            y=[by_tier[t].cost for t in tiers],
            marker_color=[_colour(config, t) for t in tiers],
            text=[dollars(by_tier[t].cost) for t in tiers],
            textposition="auto",
            hovertemplate="%{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(title=f"💰 Cost by {dim}", yaxis_title="USD", template="plotly_white")
    return figure


def top_users_figure(report: Report, config: Config) -> go.Figure:
    """The users with the highest cost, each bar split by tier (a user may change tier)."""
    users = report.grouped("user")
    top = sorted(users, key=lambda u: (-users[u].cost, -users[u].tokens, u))[:TOP_USERS]
    per: dict[tuple[str, str], Totals] = {}
    dim = config.contract.dimension
    user_i, tier_i = report.detail_labels.index("user"), report.detail_labels.index(dim)
    for key, totals in report.detail.items():
        if key[user_i] in top:
            per.setdefault((key[user_i], key[tier_i]), Totals()).add(totals)
    figure = go.Figure()
    ordered = list(reversed(top))  # horizontal bars draw bottom-up
    for tier in _tier_order(config, {t for _, t in per}):
        figure.add_bar(
            name=tier,
            y=ordered,
            x=[per.get((u, tier), Totals()).cost for u in ordered],
            orientation="h",
            marker_color=_colour(config, tier),
            hovertemplate="%{y} (" + escape(tier) + "): $%{x:.4f}<extra></extra>",
        )
    figure.update_layout(
        title=f"🏆 Top {len(top)} users by cost",
        barmode="stack",
        xaxis_title="USD",
        template="plotly_white",
        height=max(320, 60 + 36 * len(top)),
    )
    return figure


def _table(report: Report) -> str:
    head = "".join(f"<th>{escape(k)}</th>" for k in report.by)
    head += "<th>Tokens</th><th>Allowed calls</th><th>Limited calls</th><th>Success rate</th><th>Cost</th>"
    body = []
    for row in report.rows:
        t = row.totals
        cells = "".join(f"<td>{escape(v)}</td>" for v in row.key)
        cells += (
            f'<td class="n">{count(t.tokens)}</td><td class="n">{count(t.allowed)}</td>'
            f'<td class="n">{count(t.limited)}</td><td class="n">{percent(t.success_rate)}</td>'
            f'<td class="n">{dollars(t.cost)}</td>'
        )
        body.append(f"<tr>{cells}</tr>")
    t = report.total
    foot = (
        f'<tr><th colspan="{len(report.by)}">Total</th><td class="n">{count(t.tokens)}</td>'
        f'<td class="n">{count(t.allowed)}</td><td class="n">{count(t.limited)}</td>'
        f'<td class="n">{percent(t.success_rate)}</td><td class="n">{dollars(t.cost)}</td></tr>'
    )
    return (
        f'<table id="report"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"<tfoot>{foot}</tfoot></table>"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-top: 1rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tfoot { font-weight: bold; background: #f6f6f6; }
.chart { max-width: 1100px; margin-bottom: 1rem; }
"""


def to_html(report: Report, config: Config) -> str:
    """A complete HTML document; requires a report built with `with_users=True`."""
    charts = [cost_by_tier_figure(report, config).to_html(full_html=False, include_plotlyjs=True)]
    if "user" in report.detail_labels:  # not when the schema does not capture `user`
        charts.append(
            top_users_figure(report, config).to_html(full_html=False, include_plotlyjs=False)
        )
    filters = ", ".join(f"{k} = {' | '.join(v)}" for k, v in sorted(report.filters.items()))
    notes = f"<p>Filters: {escape(filters)}</p>" if filters else ""
    if report.unknown_tiers:
        notes += (
            f"<p>Unpriced tiers (not in the config): {escape(', '.join(report.unknown_tiers))}</p>"
        )
    title = f"MaaS usage and cost, {period_text(report)}"
    # One chart under the other: plotly sizes a chart to its box when it is drawn.
    blocks = "".join(f'<div class="chart">{chart}</div>' for chart in charts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<p>Total cost <strong>{dollars(report.total.cost)}</strong> for "
        f"{count(report.total.tokens)} tokens; success rate {percent(report.total.success_rate)}.</p>"
        f"{notes}{blocks}{_table(report)}</body></html>\n"
    )
