"""The view a URL holds: time range and filters, in Grafana's query-string form.

`?from=now-7d&to=now&var-tier=premium&var-user=alice&var-user=bob` opens the
same view in the built-in dashboard as in Grafana (`from` / `to` are `now`,
`now-6h`, epoch milliseconds or a UTC date and time), so a view can be
shared and revisited. Filters left out mean All.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from maas_metrics import contract

FILTER_NAMES = (
    "namespace",
    contract.TIER,
    contract.SUBSCRIPTION,
    contract.USER,
    contract.MODEL,
    *contract.ATTRIBUTION_LABELS,
)
"""Every filter a schema can have (`var-<name>` in the URL); a catalogue shows its own."""


@dataclass(frozen=True, slots=True)
class View:
    """What the page shows: `start`/`end` as typed (`now-7d`, `now`, a date) and the chosen filters."""

    start: str
    end: str = "now"
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def chosen(self, name: str) -> list[str]:
        return list(self.filters.get(name, ()))

    def query_string(self) -> str:
        """`?from=...&to=...&var-x=...` (filters with nothing chosen left out)."""
        pairs: list[tuple[str, str]] = [("from", self.start), ("to", self.end)]
        for name in FILTER_NAMES:
            pairs += [(f"var-{name}", value) for value in self.filters.get(name, ())]
        return "?" + urlencode(pairs)

    def as_data(self) -> dict[str, Any]:
        """JSON-ready form for a `dcc.Store`."""
        return {
            "from": self.start,
            "to": self.end,
            "filters": {k: list(v) for k, v in self.filters.items()},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> View:
        filters = {k: tuple(str(v) for v in vs) for k, vs in dict(data.get("filters", {})).items()}
        return cls(str(data["from"]), str(data["to"]), filters)


def make_view(start: str, end: str, chosen: dict[str, list[str] | None]) -> View:
    """A view from the page's controls (empty filters dropped)."""
    filters = {name: tuple(chosen[name] or ()) for name in FILTER_NAMES if chosen.get(name)}
    return View(start.strip(), end.strip(), filters)


def parse_query_string(search: str | None, default_from: str) -> View:
    """The view of a URL's query string; what it does not say takes the dashboard's defaults.

    Grafana writes `var-x=All` (or `$__all`) for All; both mean no filter here.
    """
    params = parse_qs((search or "").removeprefix("?"), keep_blank_values=False)
    start = params.get("from", [default_from])[-1]
    end = params.get("to", ["now"])[-1]
    filters: dict[str, tuple[str, ...]] = {}
    for name in FILTER_NAMES:
        values = [v for v in params.get(f"var-{name}", []) if v not in ("All", "$__all")]
        if values:
            filters[name] = tuple(dict.fromkeys(values))
    return View(start, end, filters)
