"""Serving the gateway with uvicorn (uvloop + httptools, no per-request logging)."""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn

from maas_metrics.config import Config
from maas_metrics.gateway.app import Gateway, create_app

log = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """uvicorn that, when asked to stop, first waits for Prometheus to scrape the final counts.

    Counters live in this process: whatever was counted after the last scrape
    is lost when it exits. With `gateway.shutdown_scrape_wait_seconds` > 0 the
    first SIGTERM/SIGINT only starts a drain: the gateway keeps serving and
    stops as soon as a /metrics scrape has begun after the signal and after
    the last usage change, or when the wait is over. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, gateway: Gateway, wait_seconds: float) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.wait_seconds = wait_seconds
        self.stop_requested_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.wait_seconds <= 0 or self.stop_requested_at is not None:
            super().handle_exit(sig, frame)
            return
        self.stop_requested_at = time.monotonic()
        log.warning(
            "stopping once Prometheus has scraped the final counts (at most %g s; signal again to stop now)",
            self.wait_seconds,
        )

    async def on_tick(self, counter: int) -> bool:
        since = self.stop_requested_at
        if since is not None and not self.should_exit:
            waited = time.monotonic() - since
            if self.gateway.scraped_everything_since(since) or waited >= self.wait_seconds:
                self.should_exit = True
        return await super().on_tick(counter)


def build_server(config: Config, host: str | None = None, port: int | None = None) -> GatewayServer:
    """A uvicorn server for the gateway; `host`/`port` override `config.gateway`."""
    app = create_app(config)
    settings = uvicorn.Config(
        app,
        host=host if host is not None else config.gateway.host,
        port=port if port is not None else config.gateway.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,  # open streams must not hold a stop (or a pod termination) forever
    )
    return GatewayServer(settings, app.state.gateway, config.gateway.shutdown_scrape_wait_seconds)


async def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve in the running event loop until cancelled (or SIGINT/SIGTERM in the main thread)."""
    server = build_server(config, host, port)
    await server.serve()


def run(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve in a new event loop until SIGINT/SIGTERM (what `maas-metrics gateway` runs)."""
    build_server(config, host, port).run()
