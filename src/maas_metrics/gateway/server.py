"""Serving the gateway with uvicorn (uvloop + httptools, no per-request logging).

Two listeners share one process and one `Gateway`: the API listener
(`/v1/...`, `/healthz`) and the operator listener (`/metrics`, `/healthz`),
as Limitador serves its metrics apart from its RLS port. Both use the
guarded protocol of `gateway.guard`, each with its own connection cap, so a
flood of API connections never blocks a scrape or a probe.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import FrameType

import uvicorn
from uvicorn.server import ServerState

from maas_metrics.config import Config
from maas_metrics.gateway.app import Gateway, create_app, create_operator_app
from maas_metrics.gateway.guard import GuardedConfig

STARTUP_FAILURE = 3

log = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """uvicorn that, when asked to stop, first waits for Prometheus to scrape the final counts.

    Counters live in this process: whatever was counted after the last scrape
    is lost when it exits. With `gateway.shutdown_scrape_wait_seconds` > 0 the
    first SIGTERM/SIGINT only starts a drain: the gateway keeps serving and
    stops as soon as a /metrics scrape has begun after the signal and after
    the last usage change, or when the wait is over. A second signal stops at once.
    """

    def __init__(
        self, config: GuardedConfig, operator: GuardedConfig, gateway: Gateway, wait_seconds: float
    ) -> None:
        super().__init__(config)
        self.operator_config = operator
        self.gateway = gateway
        self.wait_seconds = wait_seconds
        self.stop_requested_at: float | None = None
        self.operator_state = ServerState()
        self._operator: asyncio.AbstractServer | None = None
        self.port: int | None = None  # bound ports, known once started (config may say 0)
        self.operator_port: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind the operator listener, then start the API (uvicorn); either failing stops both.

        The operator listener is bound first so both ports are known once
        `started` is true, and a taken port fails before the app starts.
        """
        operator = self.operator_config
        if not operator.loaded:
            operator.load()
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return operator.http_protocol_class(  # type: ignore[call-arg]
                config=operator, server_state=self.operator_state, app_state={}, _loop=loop
            )

        try:
            self._operator = await loop.create_server(
                protocol, host=operator.host, port=operator.port, backlog=operator.backlog
            )
        except OSError as error:
            log.error("operator listener %s:%d: %s", operator.host, operator.port, error.strerror)
            raise SystemExit(STARTUP_FAILURE) from None
        self.operator_port = self._operator.sockets[0].getsockname()[1]
        try:
            await super().startup(sockets)
        except BaseException:
            self._close_operator()
            raise
        if self.started:
            self.port = self.servers[0].sockets[0].getsockname()[1]

    def _close_operator(self) -> None:
        if self._operator is not None:
            self._operator.close()
            for connection in list(self.operator_state.connections):
                connection.transport.close()
            self._operator = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the API first (Prometheus may still scrape meanwhile), then the operator listener."""
        await super().shutdown(sockets)
        self._close_operator()

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


#: The operator listener serves Prometheus and the kubelet only: a few connections suffice.
OPERATOR_MAX_CONNECTIONS = 64


def build_server(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    operator_port: int | None = None,
) -> GatewayServer:
    """A uvicorn server for the gateway; `host`/`port`/`operator_port` override `config.gateway`."""
    settings = config.gateway
    app = create_app(config)
    gateway: Gateway = app.state.gateway
    common = {
        "loop": "uvloop",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,  # open streams must not hold a stop forever
    }
    api = GuardedConfig(
        app,
        settings.connections,
        host=host if host is not None else settings.host,
        port=port if port is not None else settings.port,
        lifespan="on",
        **common,
    )
    bounds = settings.connections
    operator = GuardedConfig(
        create_operator_app(gateway),
        bounds.model_copy(
            update={"max_connections": min(bounds.max_connections, OPERATOR_MAX_CONNECTIONS)}
        ),
        host=settings.operator.host if settings.operator.host is not None else api.host,
        port=operator_port if operator_port is not None else settings.operator.port,
        lifespan="off",
        **common,
    )
    return GatewayServer(api, operator, gateway, settings.shutdown_scrape_wait_seconds)


async def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve in the running event loop until cancelled (or SIGINT/SIGTERM in the main thread)."""
    server = build_server(config, host, port)
    await server.serve()


def run(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    operator_port: int | None = None,
) -> None:
    """Serve in a new event loop until SIGINT/SIGTERM (what `maas-metrics gateway` runs)."""
    build_server(config, host, port, operator_port).run()
