"""Colours as Grafana shows them, so tier colours look the same in both dashboards.

The config names colours the Grafana way (`green`, `blue`, `gold`, `#rrggbb`);
Grafana maps its palette names to its own shades and passes anything else
to the browser as a CSS colour. We do the same.
"""

from __future__ import annotations

# Grafana's classic palette (packages/grafana-data/src/themes/colors: the "main" shades).
_GRAFANA_PALETTE = {
    "green": "#73BF69",
    "semi-dark-green": "#56A64B",
    "dark-green": "#37872D",
    "light-green": "#96D98D",
    "blue": "#5794F2",
    "semi-dark-blue": "#3274D9",
    "dark-blue": "#1F60C4",
    "light-blue": "#8AB8FF",
    "red": "#F2495C",
    "semi-dark-red": "#E02F44",
    "dark-red": "#C4162A",
    "light-red": "#FF7383",
    "orange": "#FF9830",
    "semi-dark-orange": "#FF780A",
    "dark-orange": "#FA6400",
    "light-orange": "#FFB357",
    "yellow": "#FADE2A",
    "semi-dark-yellow": "#F2CC0C",
    "dark-yellow": "#E0B400",
    "light-yellow": "#FFEE52",
    "purple": "#B877D9",
    "semi-dark-purple": "#A352CC",
    "dark-purple": "#8F3BB8",
    "light-purple": "#CA95E5",
}

#: Series without a tier colour cycle through these (Grafana's classic palette order).
SERIES_PALETTE = (
    "#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
    "#705DA0", "#508642", "#CCA300", "#447EBF", "#C15C17", "#890F02", "#0A437C",
)  # fmt: skip

NEUTRAL = "#8AB8FF"


def css_colour(colour: str) -> str:
    """A config / catalogue colour as CSS (Grafana palette names resolved to their shade)."""
    return _GRAFANA_PALETTE.get(colour.strip().lower(), colour.strip())


def series_colour(index: int) -> str:
    return SERIES_PALETTE[index % len(SERIES_PALETTE)]
