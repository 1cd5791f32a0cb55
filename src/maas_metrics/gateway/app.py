"""The metering gateway as an ASGI app: auth, limits, proxying, metrics.

Request order (each step only runs when the previous one passed):
auth (401/403) -> body size (413) -> body checks (every 400) -> model known
(404) -> request policy (429) -> token policy (429) -> upstream (502/504/
upstream status) -> token report (shielded from client disconnects).
Everything before the policies changes no counter and no metric.
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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from maas_metrics.config import Config, tls_context
from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity, KeyTable
from maas_metrics.gateway.background import Background
from maas_metrics.gateway.budgets import Budgets
from maas_metrics.gateway.estimate import answer_chars, estimate_usage, prompt_chars
from maas_metrics.gateway.fastpath import FastPathStarlette
from maas_metrics.gateway.metering import Admission, Meter, Usage, parse_usage
from maas_metrics.gateway.proxy import Upstreams, upstream_error
from maas_metrics.gateway.relay import SSE_HEADERS, RelayResponse
from maas_metrics.gateway.streaming import UsageCapture
from maas_metrics.gateway.timing import RequestTimer, TimedStore
from maas_metrics.gateway.usage import UsageEndpoint
from maas_metrics.gateway.validation import InferenceRequest, parse_request
from maas_metrics.ledger.metrics import families as ledger_families
from maas_metrics.ledger.trace import Trace, open_ledger
from maas_metrics.limiter import CounterStore, InMemoryStore, RateLimiter
from maas_metrics.limiter.redis import RedisStore
from maas_metrics.policies import tier_policies
from maas_metrics.telemetry import CONTENT_TYPE, GatewayMetrics, LatencyMetrics
from maas_metrics.telemetry.exposition import Exposition, accepts_gzip
from maas_metrics.telemetry.latency import OPERATIONS

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0


def create_store(url: str) -> CounterStore:
    """`memory` -> counters in this process; `redis://...` -> counters shared by all replicas."""
    return InMemoryStore() if url == "memory" else RedisStore(url)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=errors.JSON)


class Gateway:
    """Everything a request needs, built once from the config (no config walks per request)."""

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
            TimedStore(create_store(config.storage.url), self.latency), config.storage.on_failure
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

    # --- inference -----------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        return await self._infer(request, "/chat/completions")

    async def completions(self, request: Request) -> Response:
        return await self._infer(request, "/completions")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_body
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise errors.bad_request("Invalid Content-Length header.")
            if int(length) > limit:
                raise errors.too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise errors.too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise errors.bad_request("Client disconnected while sending the body.") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _infer(self, request: Request, path: str) -> Response:
        identity = self.keys.authenticate(request.headers.get("authorization"))
        body = await self._read_body(request)
        checked = parse_request(body, path)  # every 400 before any counter moves
        base = self.models.get(checked.model)
        if base is None:
            raise errors.unknown_model(checked.model)
        timer = RequestTimer(self.latency, checked.model, identity.tier, OPERATIONS[path])
        trace = (
            None
            if self.ledger is None
            else self.ledger.begin(identity, identity.key_id, checked.model, path, checked.stream)
        )
        budget = self.budgets.check_for(identity)  # checked first, in the same round trip
        try:
            admission = await self.meter.admit(identity, checked.model, checked.payload, budget)
            if budget is not None:  # a hard budget's 429, or a soft one's warning
                admission.budget_headers.update(self.budgets.verdict(identity, admission.budget))
        except errors.GatewayError as error:
            if trace is not None:
                trace.failed(error.status, error.type)
            raise
        response: Response | None = None
        try:
            if checked.stream:
                response = await self._stream(
                    identity, checked, base + path, body, admission, trace, timer
                )
            else:
                response = await self._complete(
                    identity, checked, base + path, body, admission, trace, timer
                )
        except errors.GatewayError as error:
            timer.failed(error.status)
            if trace is not None:
                trace.failed(error.status, error.type)
            raise
        except BaseException:  # cancelled or a bug: still one record (finish runs once)
            if trace is not None:
                trace.finish("client_disconnect", 499)
            raise
        finally:
            if admission.holding and not isinstance(response, RelayResponse):
                # Failed before or without a usable answer (a relay settles when its reader ends).
                await asyncio.shield(self.meter.release(admission))
        if response.status_code >= 400:  # the upstream's own error, passed through
            timer.failed(response.status_code, upstream_status=True)
        return response

    async def _account(
        self,
        identity: Identity,
        checked: InferenceRequest,
        usage: Usage | None,
        answer: int,
        admission: Admission,
        trace: Trace | None = None,
    ) -> None:
        """Report an answer's tokens; without usage, count it as `gateway.metering.usage_missing` says."""
        if trace is not None:
            trace.missing = usage is None
        if usage is None:
            self.metrics.usage_missing(identity.token_namespace, identity.labels, checked.model)
            if self.metering.usage_missing == "zero":
                usage = Usage(0, 0, 0)
            else:
                usage = estimate_usage(prompt_chars(checked.payload), answer)
        if trace is not None:  # the ledger holds exactly what the counters got
            trace.usage(
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens,
                usage.cached_tokens,
            )
        report = self.meter.report(identity, checked.model, usage, admission)
        await self.budgets.with_report(
            report, identity, checked.model, usage, together=self.storage_kind != "memory"
        )

    async def _complete(
        self,
        identity: Identity,
        checked: InferenceRequest,
        url: str,
        body: bytes,
        admission: Admission,
        trace: Trace | None,
        timer: RequestTimer,
    ) -> Response:
        reply = await self.upstreams.post(url, body)
        if reply.status >= 400:
            if trace is not None:
                trace.finish("upstream_error", reply.status)
            return upstream_error(reply.status, reply.content)
        if not 200 <= reply.status < 300:
            raise errors.upstream_unreachable(f"unexpected HTTP {reply.status}")
        try:
            answer = orjson.loads(reply.content)
        except orjson.JSONDecodeError:
            raise errors.upstream_unreachable("the answer is not valid JSON") from None
        if not isinstance(answer, dict):
            raise errors.upstream_unreachable("the answer is not a JSON object")
        usage = parse_usage(answer.get("usage"))
        timer.answered(usage, streamed=False)
        chars = 0 if usage is not None else answer_chars(answer)
        account = self._account(identity, checked, usage, chars, admission, trace)
        if self.storage_kind == "memory":
            await account  # in-memory counters never wait: no cancel can land inside the report
        else:  # shielded: a cancel while Redis answers cannot stop the report half-way
            await self.background.shielded(account)
        if trace is not None:
            trace.finish("usage_missing" if trace.missing else "ok", reply.status)
        return Response(
            reply.content,
            status_code=reply.status,
            headers=admission.headers(),
            media_type=reply.content_type,
        )

    async def _stream(
        self,
        identity: Identity,
        checked: InferenceRequest,
        url: str,
        body: bytes,
        admission: Admission,
        trace: Trace | None,
        timer: RequestTimer,
    ) -> Response:
        hide = not checked.include_usage
        if hide:
            options = checked.payload.get("stream_options") or {}
            asked = orjson.dumps(
                {**checked.payload, "stream_options": {**options, "include_usage": True}}
            )
            upstream = await self.upstreams.open_stream(url, asked)
            if upstream.status == 400:
                content = await upstream.read()
                if b"stream_options" not in content:
                    if trace is not None:
                        trace.finish("upstream_error", 400)
                    return upstream_error(400, content)
                # This upstream rejects what the gateway added: ask as the client did, count
                # the answer through the no-usage path.
                hide = False
                upstream = await self.upstreams.open_stream(url, body)
        else:
            upstream = await self.upstreams.open_stream(url, body)
        status = upstream.status
        if status >= 400:
            if trace is not None:
                trace.finish("upstream_error", status)
            return upstream_error(status, await upstream.read())
        content_type = upstream.content_type
        if not 200 <= status < 300 or not content_type.startswith("text/event-stream"):
            await upstream.read()
            raise errors.upstream_unreachable(
                f"expected an event stream, got HTTP {status} {content_type or 'without content type'}"
            )

        async def finish(capture: UsageCapture, error: errors.GatewayError | None) -> None:
            # Runs in the reader task: no client disconnect can cancel it. A stream cut
            # after its usage chunk is counted; one cut before it counts no tokens.
            if error is None:
                timer.answered(capture.usage, streamed=True)
            else:
                timer.failed(error.status)
            if capture.usage is not None or error is None:
                await self._account(
                    identity, checked, capture.usage, capture.answer_chars, admission, trace
                )
            elif admission.holding:  # no usage: give the token reservation back, charge nothing
                await self.meter.release(admission)
            if trace is not None:
                if error is not None:
                    trace.finish("upstream_error", 502)
                elif relay.client_left:
                    trace.finish("client_disconnect", 200)
                else:
                    trace.finish("usage_missing" if trace.missing else "ok", 200)

        def too_large() -> None:
            self.metrics.event_too_large(checked.model)

        relay = RelayResponse(
            upstream,
            UsageCapture(hide, self.metering.max_sse_event_bytes),
            finish,
            {**SSE_HEADERS, **admission.headers()},
            self.background,
            self.config.gateway.upstream_timeout_seconds,
            too_large,
            timer,
        )
        if trace is not None:
            relay.on_first_piece = trace.first_chunk
        return relay

    # --- catalogue, metrics, health -------------------------------------------------

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
        return _json(model)

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
        return _json(
            {
                "status": "ok" if reachable else "degraded",
                "storage": self.storage_kind,
                "store_reachable": reachable,
                "on_failure": self.limiter.on_failure,
                "models": len(self.models),
            }
        )


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
