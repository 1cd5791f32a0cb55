"""`WebDashboard`: what the page's callbacks ask of the server, one request of one tab at a time.

A refresh is a `request` (generation, the tab's clock, the view): every
panel of it is evaluated at the same time, rounded down to the scrape
interval, so identical panels of other tabs are identical queries and
`SharedQueries` answers them once.
"""

from __future__ import annotations

import math
import time
from typing import Any

from maas_metrics import contract
from maas_metrics.dashboard.model import Catalogue, Panel
from maas_metrics.dashboard.variables import ALL as ALL_VALUES
from maas_metrics.dashboard.variables import Selection
from maas_metrics.prometheus import PrometheusError
from maas_metrics.web.data import DashboardData, PanelData, QueryAPI, Window
from maas_metrics.web.timerange import resolve_range
from maas_metrics.web.urlstate import FILTER_NAMES, View

#: At most this many users are offered by the user filter at once (search for the others).
USER_OPTIONS = 100
#: How far a tab's clock may be from the server's before the server's is used.
CLOCK_SKEW_SECONDS = 300


def selection_of(view: View) -> Selection:
    """The view's filters as a Selection: nothing chosen means All, as in Grafana."""

    def choice(name: str) -> Any:
        return view.chosen(name) or ALL_VALUES

    return Selection(**{name: choice(name) for name in FILTER_NAMES})


class WebDashboard:
    """The app's state: catalogue, data layer and time settings (one per served dashboard)."""

    def __init__(self, catalogue: Catalogue, api: QueryAPI, scrape_interval_seconds: float) -> None:
        self.catalogue = catalogue
        self.api = api
        self.data = DashboardData(catalogue, api)
        self.scrape_interval_seconds = scrape_interval_seconds
        self.tier_colours = dict(catalogue.tier_colours)

    def window(self, view: View, now: float) -> Window:
        """The query window of `view` at the tab's clock `now` (rounded down to the scrape interval).

        The tab's clock keeps every panel of a refresh at one time; a clock
        that is off by more than `CLOCK_SKEW_SECONDS` is replaced by the server's.
        """
        server = time.time()
        if not math.isfinite(now) or abs(now - server) > CLOCK_SKEW_SECONDS:
            now = server
        step = max(self.scrape_interval_seconds, 1.0)
        rounded = math.floor(now / step) * step
        start, end = resolve_range(view.start, view.end, rounded)
        return Window(end, end - start, self.scrape_interval_seconds)

    def banner(self, window: Window) -> tuple[str, str]:
        """(message, kind): kind `error` (unreachable), `info` (no data yet) or `ok` (no message)."""
        try:
            namespaces = self.data.options("namespace", Selection(), window)
        except PrometheusError as error:
            reason = str(error)
            return (
                f"⚠ {reason[:1].upper()}{reason[1:]}. The dashboard retries on every refresh.",
                "error",
            )
        if not namespaces:
            return (
                f"⏳ Prometheus at {self.api.url} has no MaaS metrics yet (authorized_calls, "
                "limited_calls). Is it scraping the gateway's /metrics? Panels fill in as soon as "
                "the first scrape with traffic arrives.",
                "info",
            )
        return "", "ok"

    def panel(self, panel: Panel, view: View, window: Window) -> PanelData:
        return self.data.panel(panel, selection_of(view), window)

    def options(
        self, name: str, view: View, window: Window, search: str | None = None
    ) -> list[str]:
        """The filter's choices: narrowed by the other filters, chosen values kept.

        The user filter offers at most `USER_OPTIONS` users matching `search`
        (case-insensitive substring), so 10,000 users never reach the page.
        """
        values = self.data.options(name, selection_of(view), window)
        if name in contract.BILLING_DIMENSIONS:  # configured tiers in level order first
            order = {t.name: i for i, t in enumerate(self.catalogue.tiers)}
            values = sorted(values, key=lambda v: (order.get(v, len(order)), v))
        if name == "user":
            needle = (search or "").casefold()
            values = [v for v in values if needle in v.casefold()][:USER_OPTIONS]
        # Keep chosen values selectable even when the range (or the search) leaves them out.
        return values + [v for v in view.chosen(name) if v not in values]
