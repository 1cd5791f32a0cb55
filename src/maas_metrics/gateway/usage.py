"""`GET /v1/usage`: the caller's own usage, cost, remaining quota and budget; nobody else's.

The key alone says whose numbers these are: there is no user parameter, so
a key can never read another user's data. Remaining quota and reset times
are read from the limiter's counters (not estimated). History (today, this
month, `?from=&to=`) comes from the ledger when one is configured (its exact
`build_ledger_report`), else from Prometheus through the report's own
`build_report`, so `/v1/usage` and `maas-metrics report` give the same
numbers; with neither the answer says so and still carries the live quota
and budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from maas_metrics.config import Config
from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity, KeyTable
from maas_metrics.gateway.budgets import Budgets, renews_at
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.limiter import Limit, RateLimiter, StoreUnavailable
from maas_metrics.limiter.budget import day_start, month_of
from maas_metrics.prometheus import PrometheusAPI, PrometheusError
from maas_metrics.report import Report, ReportRequest, TimeInputError, TimeRange, build_report
from maas_metrics.report.timerange import parse_time

log = logging.getLogger(__name__)

MAX_RANGE_DAYS = 92
"""Longest `?from=&to=` range: each day is a few Prometheus queries, run for one caller."""

NO_HISTORY = (
    "Usage history needs a ledger or Prometheus: set gateway.usage.prometheus_url to the "
    "Prometheus that scrapes this gateway. Quota and budget below are live."
)


def _iso(moment: datetime) -> str:
    """UTC ISO 8601 to the millisecond (the ledger's resolution), `Z` for UTC."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").replace(".000Z", "Z")


def _to_ms(moment: datetime) -> datetime:
    """`moment` cut to whole milliseconds, so the range shown is the range read."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _quota(policy: str, limit: Limit, value: int, reserved: int, ttl_ms: int) -> dict[str, Any]:
    """One policy's current window as its counter holds it."""
    # A window starts at its first hit: an untouched counter has no reset time yet.
    started = value > 0 or reserved > 0 or ttl_ms < limit.seconds * 1000
    reset = max(ttl_ms, 0) / 1000 if started else None
    return {
        "policy": policy,
        "limit_name": limit.name,
        "limit": limit.max_value,
        "window_seconds": limit.seconds,
        "used": value,
        "reserved": reserved,
        "remaining": max(limit.max_value - value - reserved, 0),
        "reset_seconds": reset,
        "resets_at": None if reset is None else _iso(datetime.now(UTC) + timedelta(seconds=reset)),
    }


def _totals(report: Report) -> dict[str, Any]:
    index = report.detail_labels.index("model")
    by_model: dict[str, dict[str, float]] = {}
    for key, totals in report.detail.items():
        entry = by_model.setdefault(key[index], {"tokens": 0.0, "cost": 0.0})
        entry["tokens"] += totals.tokens
        entry["cost"] += totals.cost
    used = {m: v for m, v in sorted(by_model.items()) if v["tokens"] or v["cost"]}
    return {
        "from": _iso(report.start),
        "to": _iso(report.end),
        "tokens": report.total.tokens,
        "allowed_calls": report.total.allowed,
        "limited_calls": report.total.limited,
        "cost": report.total.cost,
        "by_model": used,
    }


class UsageEndpoint:
    """The handler, built once from the gateway's parts (config, keys, limiter, budgets)."""

    def __init__(
        self,
        config: Config,
        keys: KeyTable,
        limiter: RateLimiter,
        budgets: Budgets,
        ledger: Engine | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.limiter = limiter
        self.budgets = budgets
        self.source = config.gateway.usage
        self.ledger = ledger  # the ledger's database: exact history, preferred to Prometheus

    def _timezone(self, user: str) -> str:
        user_budget = self.budgets.of(user)
        return "UTC" if user_budget is None else user_budget.budget.timezone

    def _ranges(
        self, query: Mapping[str, str], timezone: str, now: datetime
    ) -> dict[str, tuple[datetime, datetime]]:
        """today, month and (if asked) range as (start, end); 400 naming the bad parameter."""
        unknown = sorted(set(query) - {"from", "to"})
        if unknown:
            raise errors.bad_request(f"Unknown query parameter {unknown[0]!r}: use from and to.")
        now = _to_ms(now)
        ranges = {
            "today": (day_start(now, timezone), now),
            "month": (month_of(now, timezone).start, now),
        }
        start_text, end_text = query.get("from"), query.get("to")
        if end_text is not None and start_text is None:
            raise errors.bad_request("Parameter 'to' needs 'from'.")
        if start_text is not None:
            try:
                start = parse_time(start_text, "from", now)
                end = parse_time(end_text, "to", now) if end_text is not None else now
            except TimeInputError as error:
                raise errors.bad_request(f"Parameter {error}.") from None
            if end <= start:
                raise errors.bad_request("Parameter 'to' must be after 'from'.")
            if end - start > timedelta(days=MAX_RANGE_DAYS):
                raise errors.bad_request(
                    f"Parameters 'from' and 'to' span more than {MAX_RANGE_DAYS} days; "
                    "ask for a shorter range (or use maas-metrics report)."
                )
            ranges["range"] = (_to_ms(start), min(_to_ms(end), now))
        return ranges

    def _ledger_history(
        self, user: str, ranges: dict[str, tuple[datetime, datetime]]
    ) -> dict[str, Any]:
        """The ledger's exact report for each range, restricted to `user` (in a worker thread)."""
        assert self.ledger is not None
        return {
            name: _totals(
                build_ledger_report(
                    self.ledger, self.config, start, end, ("user",), {"user": (user,)}
                )
            )
            for name, (start, end) in ranges.items()
        }

    def _history(self, user: str, ranges: dict[str, tuple[datetime, datetime]]) -> dict[str, Any]:
        """The report for each range, restricted to `user` (runs in a worker thread)."""
        assert self.source.prometheus_url is not None
        resolution = self.source.resolution_seconds
        out: dict[str, Any] = {}
        with PrometheusAPI(self.source.prometheus_url, timeout=30.0) as api:
            for name, (start, end) in ranges.items():
                ts_start, ts_end = start.timestamp(), end.timestamp()
                grid_start = datetime.fromtimestamp(ts_start - ts_start % resolution, tz=UTC)
                grid_end = datetime.fromtimestamp(ts_end - ts_end % resolution, tz=UTC)
                if grid_end <= grid_start:
                    out[name] = {
                        "from": _iso(grid_start),
                        "to": _iso(grid_end),
                        "tokens": 0.0,
                        "allowed_calls": 0.0,
                        "limited_calls": 0.0,
                        "cost": 0.0,
                        "by_model": {},
                    }
                    continue
                request = ReportRequest(
                    range=TimeRange(grid_start, grid_end),
                    by=("user",),
                    filters={"user": (user,)},
                    resolution=resolution,
                )
                out[name] = _totals(build_report(api, self.config, request))
        return out

    async def _quotas(self, identity: Identity) -> list[dict[str, Any]] | None:
        """Each limit's current window, read from the counters (None: the store did not answer)."""
        store = self.limiter.store
        out: list[dict[str, Any]] = []
        try:
            if identity.requests is not None:
                limit = identity.requests
                state = await store.check(
                    limit.counter_key(identity.user), limit.max_value, limit.seconds * 1000
                )
                out.append(_quota("requests", limit, state.value, 0, state.ttl_ms))
            if identity.tokens is not None:
                limit = identity.tokens
                # A settle of 0 reads the counter and its live reservations, changing nothing.
                tokens = await store.settle(
                    limit.counter_key(identity.user), limit.seconds * 1000, 0
                )
                out.append(_quota("tokens", limit, tokens.value, tokens.outstanding, tokens.ttl_ms))
        except StoreUnavailable:
            return None
        return out

    async def _budget(self, identity: Identity) -> dict[str, Any] | None:
        user_budget = self.budgets.of(identity.user)
        if user_budget is None:
            return None
        budget = user_budget.budget
        described: dict[str, Any] = {
            "unit": budget.unit,
            "limit": budget.amount,
            "enforcement": budget.enforcement,
            "timezone": budget.timezone,
        }
        try:
            state = await self.budgets.read(identity)
        except StoreUnavailable:
            return {**described, "used": None, "note": "the counter store did not answer"}
        assert state is not None
        return {
            **described,
            "month": state.month.label,
            "used": user_budget.display(state.used),
            "remaining": max(user_budget.display(state.limit - state.used), 0.0),
            "fraction_used": state.used / state.limit,
            "exhausted": state.exhausted,
            "renews_at": renews_at(state),
        }

    async def handle(self, request: Request) -> Response:
        identity = self.keys.authenticate(request.headers.get("authorization"))
        now = datetime.now(UTC)
        timezone = self._timezone(identity.user)
        ranges = self._ranges(request.query_params, timezone, now)
        body: dict[str, Any] = {
            "object": "usage",
            "user": identity.user,
            "tier": identity.tier,
            "timezone": timezone,
            "quota": await self._quotas(identity),
            "budget": await self._budget(identity),
        }
        if self.ledger is not None:
            body["source"] = "ledger"
            try:
                body["history"] = await asyncio.to_thread(
                    self._ledger_history, identity.user, ranges
                )
            except SQLAlchemyError as error:
                log.warning("usage history unavailable: %s", type(error).__name__)
                body["history"] = None
                body["note"] = "Usage history is unavailable: the ledger did not answer."
        elif self.source.prometheus_url is None:
            body.update(source=None, history=None, note=NO_HISTORY)
        else:
            body["source"] = "prometheus"
            try:
                body["history"] = await asyncio.to_thread(self._history, identity.user, ranges)
            except PrometheusError as error:
                log.warning("usage history unavailable: %s", error)
                body["history"] = None
                body["note"] = "Usage history is unavailable: Prometheus did not answer."
        return Response(
            orjson.dumps(body),
            media_type=errors.JSON,
            headers={"Cache-Control": "no-store"},
        )
