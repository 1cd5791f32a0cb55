"""The metering gateway as an ASGI app: the parts, their life cycle, the API and operator apps.

`Gateway` builds everything a request needs once from the config; the request
flow is `gateway/inference.py`, the operator endpoints `gateway/operator.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_metrics.config import Config, Storage, tls_context
from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import KeyTable
from maas_metrics.gateway.background import Background
from maas_metrics.gateway.budgets import Budgets
from maas_metrics.gateway.fastpath import FastPathStarlette
from maas_metrics.gateway.inference import InferenceFlow
from maas_metrics.gateway.metering import Meter
from maas_metrics.gateway.operator import OperatorEndpoints, json_response
from maas_metrics.gateway.proxy import Upstreams
from maas_metrics.gateway.timing import TimedStore
from maas_metrics.gateway.usage import UsageEndpoint
from maas_metrics.ledger.trace import open_ledger
from maas_metrics.limiter import CounterStore, InMemoryStore, RateLimiter
from maas_metrics.limiter.redis import RedisStore
from maas_metrics.policies import tier_policies
from maas_metrics.telemetry import GatewayMetrics, LatencyMetrics
from maas_metrics.telemetry.exposition import Exposition

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0


def create_store(storage: Storage) -> CounterStore:
    """`memory` -> counters in this process; `redis://...` -> counters shared by all replicas."""
    if storage.url == "memory":
        return InMemoryStore()
    return RedisStore(storage.url, max_connections=storage.max_connections)


class Gateway(InferenceFlow, OperatorEndpoints):
    """Everything a request needs, built once from the config (no config walks per request).

    The inference flow is in `gateway/inference.py`, `/metrics` and `/healthz`
    in `gateway/operator.py`; this class builds the parts and runs the life cycle.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        policies = tier_policies(config)
        self.keys = KeyTable(config, policies)
        self.metering = config.gateway.metering
        self.metrics = GatewayMetrics(config.contract, self.metering.zero_hold_seconds)
        self.latency = LatencyMetrics(self.metering.zero_hold_seconds, config.contract.dimension)
        self.background = Background()  # token reports and upstream drains a client cannot cancel
        self.metrics.publish_quotas(policies)
        self.exposition = Exposition(self.metrics.families())
        self.storage_kind = "memory" if config.storage.url == "memory" else "redis"
        self.limiter = RateLimiter(
            TimedStore(create_store(config.storage), self.latency), config.storage.on_failure
        )
        self.meter = Meter(self.limiter, self.metrics, policies)
        self.policies = policies
        self.budgets = Budgets(
            config, self.limiter.store, config.storage.on_failure, self.metering.zero_hold_seconds
        )
        self.upstreams = Upstreams(
            config.gateway.upstream_timeout_seconds,
            {m.upstream: tls_context(m.ca_file) for m in config.models if m.ca_file is not None},
        )
        self.max_body = config.gateway.max_body_bytes
        self.models = {m.name: m.upstream for m in config.models}
        created = int(time.time())
        self._model_objects = {
            m.name: {
                "id": m.name,
                "object": "model",
                "created": created,
                "owned_by": "maas-metrics",
            }
            for m in config.models
        }
        self._model_list = orjson.dumps(
            {"object": "list", "data": list(self._model_objects.values())}
        )
        self._watcher: asyncio.Task[None] | None = None
        self.last_scrape_at = 0.0  # time.monotonic() when the latest /metrics began rendering
        self.ledger = open_ledger(config)  # None without a ledger; raises LedgerError

    # --- life cycle ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        del app
        await self.upstreams.start()
        if self.ledger is not None:
            self.ledger.writer.start()
        if self.storage_kind != "memory":
            self._watcher = asyncio.create_task(self._watch_store())
        try:
            yield
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher
            # Streams whose client left are still being read for their usage: let them report.
            await self.background.drain(self.config.gateway.upstream_timeout_seconds)
            await self.upstreams.aclose()
            await self.limiter.close()
            if self.ledger is not None:  # after the drain: every record is handed over
                await asyncio.to_thread(self.ledger.writer.stop)

    async def _watch_store(self) -> None:
        """Ping the store about once a second so `datastore_partitioned` follows it without traffic."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                await self.limiter.probe()
            except Exception:  # never let the watcher die; the gauge keeps its last value
                log.exception("store probe failed unexpectedly")

    # --- catalogue ------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        """Configured models only; needs a valid key but no policy, so it works with quota exhausted."""
        self.keys.authenticate(request.headers.get("authorization"))
        return Response(self._model_list, media_type=errors.JSON)

    async def get_model(self, request: Request) -> Response:
        self.keys.authenticate(request.headers.get("authorization"))
        name = request.path_params["model"]
        model = self._model_objects.get(name)
        if model is None:
            raise errors.unknown_model(name)
        return json_response(model)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path 404, wrong method 405) as OpenAI-style JSON."""
    del request
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = errors.GatewayError(
            405, "Method not allowed for this path.", code="method_not_allowed", headers=exc.headers
        )
    elif exc.status_code == 404:
        error = errors.GatewayError(404, "Unknown path.", code="not_found")
    else:
        error = errors.GatewayError(exc.status_code, str(exc.detail), headers=exc.headers)
    return error.response()


async def _server_error(request: Request, exc: Exception) -> Response:
    del request
    log.error("unexpected error", exc_info=exc)
    return errors.GatewayError(
        500, "Internal gateway error.", type_="server_error", code="internal_error"
    ).response()


def _exception_handlers(gateway: Gateway) -> dict[Any, Any]:
    return {
        errors.GatewayError: errors.handler(gateway.config.gateway.retry_hint_max_seconds),
        HTTPException: _http_error,
        Exception: _server_error,
    }


def create_app(config: Config) -> Starlette:
    """The gateway's API app for `config`; `app.state.gateway` is its `Gateway`.

    `/metrics` is not here: it lists every user's usage, so only the operator
    app (`create_operator_app`, on its own listener) serves it. No trailing
    slash redirect: a 307 would echo the client's `Host` header.
    """
    gateway = Gateway(config)
    app = FastPathStarlette(
        hot={  # served past Starlette's middleware (gateway/fastpath.py); same errors
            "/v1/chat/completions": gateway.chat_completions,
            "/v1/completions": gateway.completions,
        },
        routes=[
            Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
            Route("/v1/completions", gateway.completions, methods=["POST"]),
            Route("/v1/models", gateway.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", gateway.get_model, methods=["GET"]),
            Route(
                "/v1/usage",
                UsageEndpoint(
                    config,
                    gateway.keys,
                    gateway.limiter,
                    gateway.budgets,
                    None if gateway.ledger is None else gateway.ledger.writer.store.engine,
                ).handle,
                methods=["GET"],
            ),
            Route("/healthz", gateway.healthz, methods=["GET"]),
        ],
        exception_handlers=_exception_handlers(gateway),
        lifespan=gateway.lifespan,
    )
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app


def create_operator_app(gateway: Gateway) -> Starlette:
    """`/metrics` and `/healthz` for Prometheus and the kubelet, served on the operator listener."""
    app = Starlette(
        routes=[
            Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
            Route("/healthz", gateway.healthz, methods=["GET"]),
        ],
        exception_handlers=_exception_handlers(gateway),
    )
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app
