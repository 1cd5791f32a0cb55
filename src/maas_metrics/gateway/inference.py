"""The inference flow of the gateway: read, check, admit, forward, account.

Request order (each step only runs when the previous one passed):
auth (401/403) -> body size (413) -> body checks (every 400) -> model known
(404) -> request policy (429) -> token policy (429) -> upstream (502/504/
upstream status) -> token report (shielded from client disconnects).
Everything before the policies changes no counter and no metric.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from maas_metrics.config import Config, Metering
from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity, KeyTable
from maas_metrics.gateway.background import Background
from maas_metrics.gateway.budgets import Budgets
from maas_metrics.gateway.estimate import answer_chars, estimate_usage, prompt_chars
from maas_metrics.gateway.metering import Admission, Meter, Usage, parse_usage
from maas_metrics.gateway.proxy import Upstreams, upstream_error
from maas_metrics.gateway.relay import SSE_HEADERS, RelayResponse
from maas_metrics.gateway.streaming import UsageCapture
from maas_metrics.gateway.timing import RequestTimer
from maas_metrics.gateway.validation import InferenceRequest, parse_request
from maas_metrics.ledger.trace import LedgerHook, Trace
from maas_metrics.telemetry import GatewayMetrics, LatencyMetrics
from maas_metrics.telemetry.latency import OPERATIONS


@dataclass(frozen=True, slots=True)
class Call:
    """One admitted request on its way upstream: what `_complete` and `_stream` both need."""

    identity: Identity
    checked: InferenceRequest
    url: str
    body: bytes
    admission: Admission
    trace: Trace | None
    timer: RequestTimer


class InferenceFlow:
    """`/v1/chat/completions` and `/v1/completions`, mixed into `Gateway` (which sets the parts)."""

    config: Config
    keys: KeyTable
    metering: Metering
    metrics: GatewayMetrics
    latency: LatencyMetrics
    background: Background
    storage_kind: str
    meter: Meter
    budgets: Budgets
    upstreams: Upstreams
    max_body: int
    models: dict[str, str]
    ledger: LedgerHook | None

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
            call = Call(identity, checked, base + path, body, admission, trace, timer)
            response = await (self._stream(call) if checked.stream else self._complete(call))
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

    async def _complete(self, call: Call) -> Response:
        reply = await self.upstreams.post(call.url, call.body)
        if reply.status >= 400:
            if call.trace is not None:
                call.trace.finish("upstream_error", reply.status)
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
        call.timer.answered(usage, streamed=False)
        chars = 0 if usage is not None else answer_chars(answer)
        account = self._account(
            call.identity, call.checked, usage, chars, call.admission, call.trace
        )
        if self.storage_kind == "memory":
            await account  # in-memory counters never wait: no cancel can land inside the report
        else:  # shielded: a cancel while Redis answers cannot stop the report half-way
            await self.background.shielded(account)
        if call.trace is not None:
            call.trace.finish("usage_missing" if call.trace.missing else "ok", reply.status)
        return Response(
            reply.content,
            status_code=reply.status,
            headers=call.admission.headers(),
            media_type=reply.content_type,
        )

    async def _stream(self, call: Call) -> Response:
        hide = not call.checked.include_usage
        if hide:
            options = call.checked.payload.get("stream_options") or {}
            asked = orjson.dumps(
                {**call.checked.payload, "stream_options": {**options, "include_usage": True}}
            )
            upstream = await self.upstreams.open_stream(call.url, asked)
            if upstream.status == 400:
                content = await upstream.read()
                if b"stream_options" not in content:
                    if call.trace is not None:
                        call.trace.finish("upstream_error", 400)
                    return upstream_error(400, content)
                # This upstream rejects what the gateway added: ask as the client did, count
                # the answer through the no-usage path.
                hide = False
                upstream = await self.upstreams.open_stream(call.url, call.body)
        else:
            upstream = await self.upstreams.open_stream(call.url, call.body)
        status = upstream.status
        if status >= 400:
            if call.trace is not None:
                call.trace.finish("upstream_error", status)
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
                call.timer.answered(capture.usage, streamed=True)
            else:
                call.timer.failed(error.status)
            if capture.usage is not None or error is None:
                await self._account(
                    call.identity,
                    call.checked,
                    capture.usage,
                    capture.answer_chars,
                    call.admission,
                    call.trace,
                )
            elif (
                call.admission.holding
            ):  # no usage: give the token reservation back, charge nothing
                await self.meter.release(call.admission)
            if call.trace is not None:
                if error is not None:
                    call.trace.finish("upstream_error", 502)
                elif relay.client_left:
                    call.trace.finish("client_disconnect", 200)
                else:
                    call.trace.finish("usage_missing" if call.trace.missing else "ok", 200)

        def too_large() -> None:
            self.metrics.event_too_large(call.checked.model)

        relay = RelayResponse(
            upstream,
            UsageCapture(hide, self.metering.max_sse_event_bytes),
            finish,
            {**SSE_HEADERS, **call.admission.headers()},
            self.background,
            self.config.gateway.upstream_timeout_seconds,
            too_large,
            call.timer,
        )
        if call.trace is not None:
            relay.on_first_piece = call.trace.first_chunk
        return relay
