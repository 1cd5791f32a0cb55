"""Serving the gateway with uvicorn (uvloop + httptools, no per-request logging)."""

from __future__ import annotations

import uvicorn

from maas_metrics.config import Config
from maas_metrics.gateway.app import create_app


def build_server(config: Config, host: str | None = None, port: int | None = None) -> uvicorn.Server:
    """A uvicorn server for the gateway; `host`/`port` override `config.gateway`."""
    settings = uvicorn.Config(
        create_app(config),
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
    return uvicorn.Server(settings)


async def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve in the running event loop until cancelled (or SIGINT/SIGTERM in the main thread)."""
    server = build_server(config, host, port)
    await server.serve()


def run(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve in a new event loop until SIGINT/SIGTERM (what `maas-metrics gateway` runs)."""
    build_server(config, host, port).run()
