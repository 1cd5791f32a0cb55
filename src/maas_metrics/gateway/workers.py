"""`maas-metrics gateway --workers N`: N API processes, one operator listener, counts in Redis.

Design (issue 16, item 4). The supervisor process binds the API socket once
and starts N worker processes (multiprocessing `spawn`) that all accept on
it, as uvicorn's own `--workers` does. Each worker is a whole gateway
(limits in Redis, as replicas share them) whose metric counts are pushed to
Redis hashes every `gateway.workers.flush_seconds` (`telemetry.shared`).
The supervisor serves the one operator listener: `/metrics` renders the
totals read from Redis, so Prometheus sees one coherent set of Limitador
series without a per-worker label, and a worker that dies (and is started
again) or a gateway restart never makes a counter go back. Per-process
registries summed at scrape time (prometheus_client's multiprocess mode)
would lose a dead worker's counts or need a pid label; here the totals
are Redis's.

What a SIGKILL of a worker loses at most: the counts it made since its last
push (flush_seconds of its traffic); its limit counters are Redis's and
lose nothing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import time
from multiprocessing.context import SpawnProcess
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_metrics.config import Config
from maas_metrics.gateway import errors
from maas_metrics.gateway.app import create_app
from maas_metrics.gateway.server import STARTUP_FAILURE, api_config, operator_config
from maas_metrics.policies import tier_policies
from maas_metrics.telemetry import CONTENT_TYPE, GatewayMetrics
from maas_metrics.telemetry.exposition import Exposition, accepts_gzip
from maas_metrics.telemetry.shared import CounterPusher, SharedCounters, metrics_key

log = logging.getLogger(__name__)

multiprocessing.allow_connection_pickling()
_spawn = multiprocessing.get_context("spawn")

#: How long a stopping worker may take (its open streams and token reports) before SIGKILL.
WORKER_STOP_SECONDS = 30.0


class WorkerServer(uvicorn.Server):
    """One worker: the API app on the shared socket, pushing its counts while it serves."""

    def __init__(self, config: uvicorn.Config, pusher: CounterPusher, supervisor: int) -> None:
        super().__init__(config)
        self.pusher = pusher
        self.parent = supervisor  # its pid, passed in: it may be gone before this process runs

    async def on_tick(self, counter: int) -> bool:
        """Stop (cleanly, pushing the last counts) if the supervisor is gone."""
        if os.getppid() != self.parent:
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.pusher.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Finish the requests (and their token reports), then push the last counts."""
        await super().shutdown(sockets)
        await self.pusher.stop()


def worker_main(config: Config, sock: socket.socket, prefix: str, supervisor: int) -> None:
    """A worker process's entry point (spawned: it builds its own app from the config)."""
    logging.basicConfig(level=logging.WARNING)
    app = create_app(config)
    settings = config.gateway
    pusher = CounterPusher(
        app.state.gateway.metrics, config.storage.url, prefix, settings.workers.flush_seconds
    )
    host, port = sock.getsockname()[:2]
    WorkerServer(api_config(app, settings, host, port), pusher, supervisor).run(sockets=[sock])


class Supervisor(uvicorn.Server):
    """Runs the operator listener and keeps `count` workers alive on the API socket."""

    def __init__(
        self,
        config: Config,
        operator: uvicorn.Config,
        api_socket: socket.socket,
        endpoints: SharedMetricsEndpoints,
    ) -> None:
        super().__init__(operator)
        self.gateway_config = config
        self.api_socket = api_socket
        self.endpoints = endpoints
        self.prefix = endpoints.shared.prefix
        self.count = config.gateway.workers.count
        self.workers: list[SpawnProcess] = []
        self.started_at: list[float] = []
        self.restarts = 0

    def _spawn(self) -> SpawnProcess:
        process = _spawn.Process(
            target=worker_main,
            args=(self.gateway_config, self.api_socket, self.prefix, os.getpid()),
            name="maas-metrics-worker",
        )
        process.start()
        return process

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind the operator listener, read the totals of earlier runs, then start the workers.

        Totals already in Redis before any worker starts are shown at once
        (they were born at zero by the run that counted them); every series
        the workers create from here on is born at zero.
        """
        await super().startup(sockets)
        if not self.started:
            return
        await self.endpoints.shared.refresh()
        self.workers = [self._spawn() for _ in range(self.count)]
        self.started_at = [time.monotonic()] * self.count

    async def on_tick(self, counter: int) -> bool:
        """Start a new worker for each one that died (a crash or a SIGKILL), at most one a second."""
        if not self.should_exit:
            now = time.monotonic()
            for index, process in enumerate(self.workers):
                if not process.is_alive() and now - self.started_at[index] >= 1.0:
                    log.warning(
                        "worker %s exited with code %s; starting a new one",
                        process.pid,
                        process.exitcode,
                    )
                    process.close()
                    self.workers[index] = self._spawn()
                    self.started_at[index] = now
                    self.restarts += 1
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop the workers (each finishes its requests and pushes its counts), then the listener."""
        for process in self.workers:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + WORKER_STOP_SECONDS
        loop = asyncio.get_running_loop()
        for process in self.workers:
            await loop.run_in_executor(None, process.join, max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join)
        self.api_socket.close()
        await super().shutdown(sockets)
        await self.endpoints.shared.close()

    def alive(self) -> list[int]:
        return [p.pid for p in self.workers if p.pid is not None and p.is_alive()]


class SharedMetricsEndpoints:
    """`/metrics` and `/healthz` of the operator listener when workers share counts through Redis."""

    def __init__(self, config: Config, prefix: str) -> None:
        self.config = config
        self.metrics = GatewayMetrics(config.contract, config.gateway.metering.zero_hold_seconds)
        self.metrics.publish_quotas(tier_policies(config))
        self.shared = SharedCounters(self.metrics, config.storage.url, prefix)
        self.exposition = Exposition(self.metrics.families())
        self.supervisor: Supervisor | None = None
        self._lock = asyncio.Lock()  # one read-and-render at a time: scrapes see totals in order

    async def metrics_endpoint(self, request: Request) -> Response:
        gzip = accepts_gzip(request.headers.get("accept-encoding"))
        async with self._lock:
            reachable = await self.shared.refresh()
            self.metrics.set_partitioned(not reachable)
            body = self.exposition.scrape(gzip=gzip)
        headers = {"content-type": CONTENT_TYPE, "vary": "Accept-Encoding"}
        if gzip:
            headers["content-encoding"] = "gzip"
        return Response(body, headers=headers)

    async def healthz(self, request: Request) -> Response:
        del request
        reachable = await self.shared.reachable()
        supervisor = self.supervisor
        body = {
            "status": "ok" if reachable else "degraded",
            "storage": "redis",
            "store_reachable": reachable,
            "on_failure": self.config.storage.on_failure,
            "models": len(self.config.models),
            "workers": supervisor.alive() if supervisor is not None else [],
            "worker_restarts": supervisor.restarts if supervisor is not None else 0,
        }
        return Response(orjson.dumps(body), media_type=errors.JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    del request
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return errors.GatewayError(404, "Unknown path.", code="not_found").response()
    return errors.GatewayError(
        exc.status_code, str(exc.detail), code="method_not_allowed", headers=exc.headers
    ).response()


def _operator_app(endpoints: SharedMetricsEndpoints) -> Starlette:
    app = Starlette(
        routes=[
            Route("/metrics", endpoints.metrics_endpoint, methods=["GET"]),
            Route("/healthz", endpoints.healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.router.redirect_slashes = False
    return app


def bind_api(host: str, port: int) -> socket.socket:
    """The API socket every worker accepts on (bound here once, as uvicorn does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        log.error("API listener %s:%d: %s", host, port, error.strerror)
        raise SystemExit(STARTUP_FAILURE) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_supervisor(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    operator_port: int | None = None,
) -> Supervisor:
    """The supervisor for `config.gateway.workers.count` workers; arguments override the config."""
    settings = config.gateway
    if settings.workers.count > 1 and config.storage.url == "memory":
        raise ValueError("workers need storage.url redis://: counters in memory cannot be shared")
    api_host = host if host is not None else settings.host
    sock = bind_api(api_host, port if port is not None else settings.port)
    prefix = metrics_key(settings.workers.metrics_key, sock.getsockname()[1])
    endpoints = SharedMetricsEndpoints(config, prefix)
    operator: Any = operator_config(
        _operator_app(endpoints),
        settings,
        api_host,
        operator_port if operator_port is not None else settings.operator.port,
    )
    supervisor = Supervisor(config, operator, sock, endpoints)
    endpoints.supervisor = supervisor
    log.info(
        "supervisor %d: %d workers, shared counts under %s", os.getpid(), supervisor.count, prefix
    )
    return supervisor
