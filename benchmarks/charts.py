"""Charts for BENCHMARKS.md: a plotly HTML page and a PNG of it taken with Debian's Chromium.

kaleido (plotly's own PNG export) downloads a browser; instead the figure is
written as a self-contained HTML file and screenshotted by playwright driving
/usr/bin/chromium, which the project already uses for its browser tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COLOURS = {
    "direct (mock)": "#7f7f7f",
    "maas-metrics memory": "#1f77b4",
    "maas-metrics redis": "#17becf",
    "LiteLLM memory": "#d62728",
    "LiteLLM redis": "#ff9896",
}


def overhead_figure(points: list[tuple[str, int, float, float, float]]) -> go.Figure:
    """points: (target, concurrency, req/s, p50 ms, p99 ms)."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("requests/s (log)", "p50 latency, ms (log)", "p99 latency, ms (log)"),
    )
    targets = list(dict.fromkeys(p[0] for p in points))
    for target in targets:
        mine = [p for p in points if p[0] == target]
        xs = [f"c={p[1]}" for p in mine]
        for col, idx in ((1, 2), (2, 3), (3, 4)):
            fig.add_trace(
                go.Bar(
                    name=target,
                    x=xs,
                    y=[p[idx] for p in mine],
                    marker_color=COLOURS.get(target),
                    showlegend=col == 1,
                    legendgroup=target,
                    text=[f"{p[idx]:,.0f}" if idx == 2 else f"{p[idx]:.2f}" for p in mine],
                    textposition="outside",
                    textfont={"size": 9},
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(type="log")
    fig.update_layout(
        title="Gateway overhead on one mock model: direct vs maas-metrics vs LiteLLM (2 cores)",
        barmode="group",
        width=1500,
        height=560,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()


def overhead_charts(points: list[tuple[str, int, float, float, float]], stem: Path) -> str:
    """Write `stem`.html (plotly from its CDN) and `stem`.png; return the Markdown that shows them."""
    fig = overhead_figure(points)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="cdn")
    png = stem.with_suffix(".png")
    note = f"Interactive chart: [`{html.name}`](benchmarks/results/{html.name})."
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inline = Path(tmp) / "chart.html"
            fig.write_html(inline, include_plotlyjs=True)
            screenshot(inline, png, 1500, 560)
        note = f"![gateway overhead chart](benchmarks/results/{png.name})\n\n" + note
    except Exception as error:  # a missing browser must not lose the measured figures
        note += f" (PNG not written: {error})"
    return note
