"""Numbers formatted with Grafana's units (`short`, `percentunit`, `currencyUSD`, `reqps`)."""

from __future__ import annotations

import math

_SHORT_SUFFIXES = ((1e12, " Tri"), (1e9, " Bil"), (1e6, " Mil"), (1e3, " K"))


def _trim(number: float, decimals: int | None) -> str:
    if decimals is not None:
        return f"{number:,.{decimals}f}"
    if number == int(number):
        return f"{int(number):,}"
    digits = 2 if abs(number) >= 1 else 3
    return f"{number:,.{digits}f}".rstrip("0").rstrip(".")


def _short(value: float, decimals: int | None) -> str:
    for size, suffix in _SHORT_SUFFIXES:
        if abs(value) >= size:
            return _trim(value / size, decimals) + suffix
    return _trim(value, decimals)


def format_value(value: float | None, unit: str, decimals: int | None = None) -> str:
    """`value` as Grafana would print it in a panel with this unit; `—` for no value."""
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if unit == "percentunit":
        return _trim(value * 100, 1 if decimals is None else decimals) + "%"
    if unit == "percent":
        return _trim(value, 1 if decimals is None else decimals) + "%"
    if unit == "currencyUSD":
        places = 2 if decimals is None else decimals
        if abs(value) >= 1e6:
            return "$" + _short(value, places)
        return ("-$" if value < 0 else "$") + f"{abs(value):,.{places}f}"
    if unit == "reqps":
        return _short(value, decimals) + " req/s"
    if unit in ("short", ""):
        return _short(value, decimals)
    return _trim(value, decimals)
