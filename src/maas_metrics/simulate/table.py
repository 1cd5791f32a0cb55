"""The traffic tally as a rich table: per tier requests, 200s, 429s, errors and tokens."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from maas_metrics.simulate.stats import Counts, TrafficStats


def stats_table(
    stats: TrafficStats,
    tiers: Sequence[str],
    elapsed: float,
    target: str,
    final: bool = False,
) -> Table:
    """One row per tier (config order, then any others seen), a total row, rates in the caption."""
    title = "Traffic summary" if final else "Traffic (live)"
    table = Table(title=f"{title}: {target}", title_justify="left")
    table.add_column("tier")
    for column in ("requests", "200 ok", "429 limited", "errors", "streamed", "tokens"):
        table.add_column(column, justify="right")
    names = list(tiers) + sorted(set(stats.tiers) - set(tiers))
    for name in names:
        _row(table, name, stats.tiers.get(name, Counts()))
    table.add_section()
    _row(table, "all", stats.total, style="bold")
    rate = stats.total.requests / elapsed if elapsed > 0 else 0.0
    caption = f"{elapsed:.1f} s, {rate:.1f} requests/s answered"
    if stats.models:
        caption += "; per model: " + ", ".join(
            f"{m} {c.requests}" for m, c in sorted(stats.models.items())
        )
    if stats.unfinished:
        caption += f"; {stats.unfinished} unanswered at the end (not counted)"
    table.caption = caption
    table.caption_justify = "left"
    return table


def _row(table: Table, name: str, counts: Counts, style: str | None = None) -> None:
    table.add_row(
        name,
        f"{counts.requests:,}",
        f"{counts.ok:,}",
        f"{counts.limited:,}",
        f"{counts.errors:,}",
        f"{counts.streamed:,}",
        f"{counts.total_tokens:,}",
        style=style,
    )
