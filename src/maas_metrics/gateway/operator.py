"""The operator endpoints of the gateway: `/metrics` for Prometheus, `/healthz` for the kubelet."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from maas_metrics.gateway import errors
from maas_metrics.gateway.budgets import Budgets
from maas_metrics.gateway.metering import Meter
from maas_metrics.ledger.metrics import families as ledger_families
from maas_metrics.ledger.trace import LedgerHook
from maas_metrics.limiter import RateLimiter
from maas_metrics.telemetry import CONTENT_TYPE, GatewayMetrics, LatencyMetrics
from maas_metrics.telemetry.exposition import Exposition, accepts_gzip


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=errors.JSON)


class OperatorEndpoints:
    """`/metrics` and `/healthz`, mixed into `Gateway` (which sets the parts)."""

    metrics: GatewayMetrics
    latency: LatencyMetrics
    limiter: RateLimiter
    meter: Meter
    budgets: Budgets
    exposition: Exposition
    ledger: LedgerHook | None
    storage_kind: str
    models: dict[str, str]
    last_scrape_at: float

    def scraped_everything_since(self, moment: float) -> bool:
        """True once a /metrics scrape that showed every count began after `moment` and the last change."""
        return self.last_scrape_at >= max(moment, self.metrics.changed_at)

    async def metrics_endpoint(self, request: Request) -> Response:
        began = time.monotonic()
        self.metrics.set_partitioned(self.limiter.partitioned)
        self.metrics.set_reservations(self.meter.reservations_outstanding())
        gzip = accepts_gzip(request.headers.get("accept-encoding"))
        # The usage counters are cached (only changed series re-formatted); the latency
        # histograms, budgets and ledger health are few series, rendered anew each scrape.
        budget_families = self.budgets.families()
        extra = [*self.latency.families(), *budget_families]
        if self.ledger is not None:
            extra += ledger_families(self.ledger.writer)
        body = self.exposition.scrape(gzip=gzip, extra=extra)
        held = self.metrics.held() or self.latency.held() or any(f.held() for f in budget_families)
        if not held:  # no new series still shown at 0: this scrape read every count
            self.last_scrape_at = began
        headers = {"content-type": CONTENT_TYPE, "vary": "Accept-Encoding"}
        if gzip:
            headers["content-encoding"] = "gzip"
        return Response(body, headers=headers)

    async def healthz(self, request: Request) -> Response:
        """Always 200 while the process serves; says whether the counter store is reachable."""
        del request
        reachable = await self.limiter.probe()
        return json_response(
            {
                "status": "ok" if reachable else "degraded",
                "storage": self.storage_kind,
                "store_reachable": reachable,
                "on_failure": self.limiter.on_failure,
                "models": len(self.models),
            }
        )
