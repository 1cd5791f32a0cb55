"""The one validated configuration every part of maas-metrics reads.

Tiers, prices, limits, models, API keys and storage are defined here once;
the gateway, the dashboards, the report, the rules and the manifests all
derive from the same `Config` object, so a tier added to the YAML file
appears everywhere without code changes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
import zoneinfo
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from maas_metrics.contract import (
    GROUP,
    MISSING_VALUE,
    AttributionLabel,
    BillingDimension,
    MetricNames,
    Schema,
)
from maas_metrics.durations import (
    KUADRANT_MAX_WINDOW_SECONDS,
    DurationError,
    kuadrant_window_seconds,
)
from maas_metrics.yamlio import YamlFileError, load_file

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


def _encodable(value: str) -> str:
    """Reject lone surrogates: they cannot be written as UTF-8, so /metrics could not show them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
"""A string that becomes a metric label or a PromQL value: non-empty is checked where needed."""


def _unique(values: list[str], where: str, field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: duplicate {field} {value!r}")
        seen.add(value)


class ConfigError(Exception):
    """A config that cannot be used; `str()` is one line naming the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KUADRANT_MAX_LIMIT = 1_000_000_000
"""The largest `max` a Kuadrant limit takes (checked when `source: kuadrant`)."""


class LimitSpec(_Strict):
    """At most `max` hits per fixed window, per user.

    The window is `window_seconds`, or `window` written as Kuadrant writes it
    (`2m`, `1h30m`; validated as the Kuadrant CRDs validate `rates[].window`).
    Either way it must be one the Kuadrant operator accepts, so every limit
    can become a RateLimitPolicy or TokenRateLimitPolicy.
    """

    max: Annotated[int, Field(ge=0)]
    window_seconds: Annotated[int, Field(gt=0, le=KUADRANT_MAX_WINDOW_SECONDS)]

    @model_validator(mode="before")
    @classmethod
    def _window_text(cls, data: object) -> object:
        if not isinstance(data, dict) or "window" not in data:
            return data
        if "window_seconds" in data:
            raise ValueError("set window or window_seconds, not both")
        window = data["window"]
        if not isinstance(window, str):
            raise ValueError(f"window {window!r} must be a duration text like 2m or 1h30m")
        try:
            seconds = kuadrant_window_seconds(window)
        except DurationError as error:
            raise ValueError(f"window {error}") from None
        return {**{k: v for k, v in data.items() if k != "window"}, "window_seconds": seconds}


class TokenLimitSpec(LimitSpec):
    """A token limit and how it is enforced.

    `optimistic` (Limitador's default): reject once the counter is at or over
    `max`, count the real usage after the answer. `reservation` (Kuadrant's
    Reservation mode): hold the request's `max_tokens` plus a prompt estimate,
    at most `max_reservation_fraction` of `max`, admit iff used + outstanding +
    amount <= max, commit the real usage after; a hold expires after
    `reservation_ttl_seconds` (never past the window end) and charges nothing.
    """

    mode: Literal["optimistic", "reservation"] = "optimistic"
    max_reservation_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    reservation_ttl_seconds: Annotated[float, Field(gt=0)] = 60.0


class PriceChange(_Strict):
    """A price in force from `effective_from` on, so a change never rewrites past bills.

    `model` narrows it to one model; the token prices, when set, replace the
    per-hit price for that model's prompt and completion tokens.
    """

    effective_from: date
    per_hit: Annotated[float, Field(ge=0)]
    model: str | None = None
    per_prompt_token: Annotated[float, Field(ge=0)] | None = None
    per_completion_token: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _token_prices_come_in_pairs(self) -> PriceChange:
        if (self.per_prompt_token is None) != (self.per_completion_token is None):
            raise ValueError("per_prompt_token and per_completion_token must be set together")
        return self


def _timezone(value: str) -> str:
    """An IANA time zone name (`UTC`, `Europe/Paris`) that this machine's tz database knows."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)"
        ) from None
    return value


class Budget(_Strict):
    """A monthly budget per user, in dollars (`usd`) or tokens, on calendar months of `timezone`.

    `hard`: once a user's month is at or over `amount`, requests get a 429
    `budget_exceeded` until the month renews. `soft`: they are served with an
    `X-Budget-Warning` header and counted in `maas_budget_overage_calls_total`.
    """

    amount: Annotated[float, Field(gt=0)]
    unit: Literal["usd", "tokens"] = "usd"
    enforcement: Literal["hard", "soft"] = "hard"
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"

    @model_validator(mode="after")
    def _whole_tokens(self) -> Budget:
        if self.unit == "tokens" and self.amount != int(self.amount):
            raise ValueError("amount: a token budget is a whole number of tokens")
        return self


class Tier(_Strict):
    """A service tier: who is in it, what it may use, what it costs and how it looks."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    level: int
    groups: Annotated[list[str], Field(min_length=1)]
    colour: str = "#8AB8FF"
    price_per_hit: Annotated[float, Field(ge=0)]
    price_changes: list[PriceChange] = []
    request_limit: LimitSpec | None = None
    token_limit: TokenLimitSpec | None = None
    budget: Budget | None = None  # each user's monthly budget (an API key's `budget` overrides it)

    def price_per_hit_on(self, day: date, model: str | None = None) -> float:
        """The per-hit price in force on `day` (model-specific changes win over general ones)."""
        change = self.price_change_on(day, model)
        return self.price_per_hit if change is None else change.per_hit

    def price_change_on(self, day: date, model: str | None = None) -> PriceChange | None:
        """The newest price change in force on `day` for `model`, or None for the base price."""
        applicable = [
            c
            for c in self.price_changes
            if c.effective_from <= day and (c.model is None or c.model == model)
        ]
        if not applicable:
            return None
        # A model-specific change beats a general one from the same day or earlier.
        return max(applicable, key=lambda c: (c.model is not None, c.effective_from))


class Model(_Strict):
    """A model served through the gateway and the OpenAI-compatible base URL behind it.

    `ca_file` (PEM, relative to the working directory) replaces the system CAs
    for an `https://` upstream signed by a private CA.
    """

    name: Annotated[Text, Field(min_length=1)]
    upstream: Annotated[str, Field(pattern=r"^https?://")]
    ca_file: Path | None = None

    @field_validator("upstream")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _loadable_ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            tls_context(value)  # the gateway builds the same context: fail here, not there
        return value

    @model_validator(mode="after")
    def _ca_needs_https(self) -> Model:
        if self.ca_file is not None and not self.upstream.startswith("https://"):
            raise ValueError("ca_file is only used with an https:// upstream")
        return self


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context trusting only the CAs in `ca_file`; ValueError saying why it cannot."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError:  # before OSError: it is one
        raise ValueError(f"CA file {str(ca_file)!r} holds no PEM certificate") from None
    except FileNotFoundError:
        raise ValueError(f"CA file {str(ca_file)!r} does not exist") from None
    except OSError as error:
        raise ValueError(f"cannot read CA file {str(ca_file)!r}: {error.strerror}") from None


Attributes = dict[AttributionLabel, Annotated[Text, Field(min_length=1)]]
"""Attribution label -> value (e.g. `cost_center: cc-100`), set per group or per key."""


class ApiKey(_Strict):
    """An API key, stored only as the SHA-256 hex digest of the secret.

    `attributes` (optional) set the key's attribution labels; they win over
    the values of its groups (`schema.groups`).
    """

    user: Annotated[Text, Field(min_length=1)]
    groups: Annotated[list[Text], Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]
    attributes: Attributes = {}
    budget: Budget | None = None  # this user's monthly budget, instead of the tier's


class SchemaSettings(_Strict):
    """The metric schema (`schema:`): which labels the counters carry and which names are read.

    The defaults are the seed's platform (tier, user and model everywhere,
    Limitador's names). Today's platform: `billing_dimension: subscription`,
    `attribution: [organization_id, cost_center]`, `capture_user: false`,
    `calls_carry_model: false`, `metric_names: otel`. See `contract.Schema`.
    """

    billing_dimension: BillingDimension = "tier"
    attribution: list[AttributionLabel] = []
    capture_user: bool = True
    calls_carry_model: bool | None = None
    """None: the source's (true behind our gateway; false on Kuadrant, where it must be)."""
    metric_names: MetricNames = "limitador"
    missing_value: Annotated[Text, Field(min_length=1)] = MISSING_VALUE
    groups: dict[Text, Attributes] = {}
    max_usage_series: Annotated[int, Field(gt=0)] = 100_000
    """The cardinality alert fires above this many series of the usage counters."""

    @model_validator(mode="after")
    def _captured_once(self) -> SchemaSettings:
        _unique(list(self.attribution), "schema.attribution", "label")
        return self

    def contract(self) -> Schema:
        """The `contract.Schema` every producer and consumer asks."""
        return Schema(
            dimension=self.billing_dimension,
            attribution=tuple(self.attribution),
            user=self.capture_user,
            calls_model=self.calls_carry_model is not False,
            names=self.metric_names,
            missing_value=self.missing_value,
        )


class Namespaces(_Strict):
    """The `limitador_namespace` values of our gateway's two policies (source `gateway`).

    They must differ (checked in `Config`), so tokens never mix with requests.
    """

    requests: Annotated[Text, Field(min_length=1)] = "maas/requests"
    tokens: Annotated[Text, Field(min_length=1)] = "maas/tokens"


Source = Literal["gateway", "kuadrant"]
"""Who produces the metrics: our gateway, or Limitador behind a Kuadrant Gateway."""

#: An HTTPRoute as `<namespace>/<name>`: Kuadrant's `limitador_namespace` for every policy on it.
ROUTE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$"
Route = Annotated[str, Field(pattern=ROUTE_PATTERN)]


class KuadrantRoutes(_Strict):
    """Which HTTPRoutes carry which policy when Limitador produces the metrics (source `kuadrant`).

    Kuadrant gives every policy of a route the same `limitador_namespace`,
    the route's `<namespace>/<name>`, and Limitador adds a request policy's
    hits (1 per request) and a token policy's hits (tokens) to the same
    `authorized_hits` series. So a route carries the token policy or the
    request policy, never both: `token_routes` get the TokenRateLimitPolicy,
    `request_routes` (default none: token policy only, as the platform does)
    the RateLimitPolicy.
    """

    token_routes: list[Route] = []
    request_routes: list[Route] = []

    @model_validator(mode="after")
    def _apart(self) -> KuadrantRoutes:
        _unique(self.token_routes, "kuadrant.token_routes", "route")
        _unique(self.request_routes, "kuadrant.request_routes", "route")
        both = sorted(set(self.token_routes) & set(self.request_routes))
        if both:
            raise ValueError(
                f"route {both[0]!r} is in both token_routes and request_routes: Limitador would "
                "add its request hits to the token counts (one namespace per route)"
            )
        return self


def _bind_address(value: str) -> str:
    """An IP address or a host name (what a listener can bind); anything else fails `config check`."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(
            r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*", value
        ):
            raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
    return value


BindHost = Annotated[str, AfterValidator(_bind_address)]
Port = Annotated[int, Field(ge=0, le=65535)]


class OperatorListener(_Strict):
    """Where `/metrics` and `/healthz` are served, apart from the API (as Limitador's http port).

    Only the operator listener shows every user's usage, so it binds where
    Prometheus and the kubelet reach it; `host: null` binds the API's host.
    """

    host: BindHost | None = None
    port: Port = 8081


class ClientBounds(_Strict):
    """How long and how much a client may take in each phase it controls, per connection."""

    header_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    keep_alive_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    max_header_bytes: Annotated[int, Field(ge=1024)] = 65_536
    max_connections: Annotated[int, Field(gt=0)] = 1000


class Metering(_Strict):
    """How the gateway counts what upstreams and scrapers make uncertain (`gateway.metering`).

    - `usage_missing`: an answer without `usage` counts `estimate` tokens
      (ceil(characters / 4) of the prompt text sent and of the answer text
      received) or `zero`; either way `maas_answers_without_usage_total` counts it.
    - `zero_hold_seconds`: a new counter series is scraped at 0 until it has
      been read at 0 and this long has passed; set it to the scrape interval
      when several Prometheus replicas (an HA pair) scrape the gateway.
    - `max_sse_event_bytes`: the largest upstream SSE event relayed; a bigger
      one ends the stream with a 502 error and counts in
      `maas_stream_events_too_large_total`.
    """

    usage_missing: Literal["estimate", "zero"] = "estimate"
    zero_hold_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0
    max_sse_event_bytes: Annotated[int, Field(ge=1024)] = 1_048_576


class UsageSource(_Strict):
    """Where `GET /v1/usage` reads a caller's history (`gateway.usage`).

    `prometheus_url`: the Prometheus that scrapes this gateway's operator
    listener, read with the report's queries at `resolution_seconds` (at most
    the scrape interval). Without it `/v1/usage` still answers live quota and
    budget, and says history needs Prometheus (or a ledger).
    """

    prometheus_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    resolution_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0

    @field_validator("resolution_seconds")
    @classmethod
    def _divides_a_day(cls, value: float) -> float:
        if 86400 % value:
            raise ValueError(f"{value:g} must divide a day (e.g. 1, 5, 15, 30, 60)")
        return value


def workers_refusal(storage_url: str, ledger_enabled: bool) -> str | None:
    """Why more than one worker cannot run with this storage and ledger (None: they can)."""
    if storage_url == "memory":
        return (
            "counters in memory cannot be shared between workers; "
            "set storage.url to a redis:// URL or run one worker"
        )
    if ledger_enabled:
        return "the ledger's writer and spool belong to one process; run one worker with a ledger"
    return None


class Workers(_Strict):
    """Serving with several processes (`gateway.workers`, or `maas-metrics gateway --workers N`).

    With `count` > 1 the counters must live in Redis (`storage.url`), and each
    worker pushes its metric counts to Redis hashes under `metrics_key` every
    `flush_seconds`; the one operator listener renders `/metrics` from them.
    Each gateway (each replica) needs its own `metrics_key`, or replicas would
    show each other's counts; null means `maas-metrics:<host name>:<API port>`.
    """

    count: Annotated[int, Field(ge=1, le=64)] = 1
    flush_seconds: Annotated[float, Field(gt=0, le=10)] = 0.05
    metrics_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class GatewaySettings(_Strict):
    host: BindHost = "127.0.0.1"
    port: Port = 8080
    operator: OperatorListener = OperatorListener()
    connections: ClientBounds = ClientBounds()
    # A 429 whose window resets later than this tells SDKs not to retry (`x-should-retry: false`).
    retry_hint_max_seconds: Annotated[float, Field(ge=0)] = 10.0
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_048_576
    upstream_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    # On SIGTERM/SIGINT keep serving until Prometheus has scraped every count, for at most
    # this long (0: stop at once, as Limitador does, losing what was counted since the last scrape).
    shutdown_scrape_wait_seconds: Annotated[float, Field(ge=0)] = 0.0
    metering: Metering = Metering()
    usage: UsageSource = UsageSource()
    workers: Workers = Workers()

    @model_validator(mode="after")
    def _listeners_apart(self) -> GatewaySettings:
        if self.port != 0 and self.operator.port == self.port:
            raise ValueError("operator.port must differ from port (metrics stay off the API)")
        return self


class Storage(_Strict):
    """Where limit counters live: `memory` (one process) or a `redis://` URL (many replicas)."""

    url: Annotated[str, Field(pattern=r"^(memory|rediss?://.+)$")] = "memory"
    on_failure: Literal["deny", "allow"] = "deny"


class Ledger(_Strict):
    """The durable per-request usage ledger (see `maas_metrics.ledger`); off without `url`.

    `url`: `sqlite:///path/ledger.db` (embedded) or `postgresql://user@host/db`
    (many replicas). Records are written by a background writer every
    `flush_interval_ms` or `batch_rows` records, whichever comes first; at most
    `queue_max` wait in memory, beyond that (or while the database is away)
    they go to the append-only `spool_path` and are replayed in order.
    """

    url: str | None = None
    url_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """Environment variable holding the URL instead (a Kubernetes Secret): wins over `url`."""
    flush_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 200
    batch_rows: Annotated[int, Field(ge=1, le=100_000)] = 500
    queue_max: Annotated[int, Field(ge=1)] = 50_000
    spool_path: str = "maas-ledger.spool"
    retention_days: Annotated[int, Field(ge=1)] | None = None
    retry_seconds: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        return None if value is None else check_ledger_url(value)

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.url_env is not None


def check_ledger_url(value: str) -> str:
    """`value` when its scheme is one the ledger supports; else ValueError naming the scheme only."""
    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"unknown scheme {scheme or '(none)'!r}: use sqlite:///PATH or postgresql://HOST/DB"
        )
    return value


#: What Grafana's JSON and the built-in page both accept: `now-` and a whole number of s/m/h/d/w.
RELATIVE_RANGE_PATTERN = r"^now-[1-9][0-9]{0,5}[smhdw]$"
#: A Grafana refresh interval (`30s`, `1m`, `1h30m`), or empty for none.
REFRESH_PATTERN = r"^(([1-9][0-9]{0,5}(s|m|h|d))+)?$"


class Dashboard(_Strict):
    title: Text = "MaaS Token Metrics"
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "maas-token-metrics"
    refresh: Annotated[str, Field(pattern=REFRESH_PATTERN)] = "30s"
    default_range: Annotated[str, Field(pattern=RELATIVE_RANGE_PATTERN)] = "now-1h"
    # Per-user panels show this many users plus one "others" row (the rest of the total).
    top_users: Annotated[int, Field(ge=1, le=1000)] = 10
    # The built-in web dashboard: Prometheus queries in flight at once (all tabs together), and
    # how long an answer is shared with other tabs asking the same query for the same time.
    web_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    web_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0


class Config(_Strict):
    """The whole config. With `schema.billing_dimension: subscription` the YAML lists
    `subscriptions:` (each shaped like a tier; `price_per_token` may stand for
    `price_per_hit`, as token hits are tokens) instead of `tiers:`; the code
    calls both `tiers`.
    """

    tiers: Annotated[list[Tier], Field(min_length=1)]
    models: Annotated[list[Model], Field(min_length=1)]
    api_keys: list[ApiKey] = []
    storage: Storage = Storage()
    source: Source = "gateway"
    namespaces: Namespaces = Namespaces()
    kuadrant: KuadrantRoutes = KuadrantRoutes()
    gateway: GatewaySettings = GatewaySettings()
    dashboard: Dashboard = Dashboard()
    ledger: Ledger = Ledger()
    metrics_schema: SchemaSettings = Field(SchemaSettings(), alias="schema")

    @model_validator(mode="before")
    @classmethod
    def _subscriptions(cls, data: object) -> object:
        """`subscriptions:` is the `tiers:` list under today's name (same model, one copy)."""
        if not isinstance(data, dict):
            return data
        schema = data.get("schema")
        dimension = schema.get("billing_dimension", "tier") if isinstance(schema, dict) else "tier"
        if dimension not in ("tier", "subscription"):
            raise ValueError(
                f"schema.billing_dimension: Input should be 'tier' or 'subscription', "
                f"not {dimension!r}"
            )
        right, wrong = ("subscriptions", "tiers")[:: 1 if dimension == "subscription" else -1]
        if wrong in data:
            raise ValueError(
                f"with schema.billing_dimension {dimension}, list the plans under {right}, "
                f"not {wrong}"
            )
        if dimension != "subscription":
            return data
        if "subscriptions" not in data:
            raise ValueError("subscriptions: required (schema.billing_dimension is subscription)")
        entries = data["subscriptions"]
        if isinstance(entries, list):
            entries = [_per_token_price(e) for e in entries]
        rest = {k: v for k, v in data.items() if k != "subscriptions"}
        return {**rest, "tiers": entries}

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump with the YAML's names (`schema:`, `subscriptions:`), so a dump loads back."""
        data: dict[str, Any] = handler(self)
        if "metrics_schema" in data:
            data["schema"] = data.pop("metrics_schema")
        if self.metrics_schema.billing_dimension == "subscription" and "tiers" in data:
            data = {("subscriptions" if k == "tiers" else k): v for k, v in data.items()}
        return data

    @property
    def contract(self) -> Schema:
        """The metric contract of this config (`contract.Schema`).

        With `source: kuadrant` Limitador produces the metrics: the calls
        counters carry no `model` (labelled before the response names it) and
        none of our gateway's `maas_` series exist.
        """
        schema = self.metrics_schema.contract()
        if self.source == "kuadrant":
            return replace(schema, calls_model=False, gateway_series=False)
        return schema

    @property
    def dimension_name(self) -> str:
        """What the config calls a tier: `tier` or `subscription` (for messages and titles)."""
        return self.metrics_schema.billing_dimension

    def attributes(self, key: ApiKey, matched_group: str | None = None) -> dict[str, str]:
        """The captured attribution labels of `key`.

        Each is the key's own value, else that of the first entry of
        `schema.groups` (in the config's order: list specific groups before
        broad ones) that the key belongs to and that sets it, else (for
        `group`) `matched_group`, the group that chose its tier, else
        `schema.missing_value`. The Kuadrant AuthPolicy applies the same rule.
        """
        schema = self.metrics_schema
        member = set(key.groups)
        out: dict[str, str] = {}
        for label in schema.attribution:
            value = key.attributes.get(label)
            if value is None:
                value = next(
                    (
                        attrs[label]
                        for group, attrs in schema.groups.items()
                        if group in member and label in attrs
                    ),
                    None,
                )
            if value is None and label == GROUP:
                value = matched_group
            out[label] = schema.missing_value if value is None else value
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _unique([t.name for t in self.tiers], "tiers", "name")
        _unique([str(t.level) for t in self.tiers], "tiers", "level")
        _unique([m.name for m in self.models], "models", "name")
        _unique([k.sha256 for k in self.api_keys], "api_keys", "sha256")
        if self.source == "gateway" and self.namespaces.requests == self.namespaces.tokens:
            raise ValueError("namespaces: requests and tokens must differ when source is gateway")
        if self.source == "kuadrant":
            if self.metrics_schema.calls_carry_model:
                raise ValueError(
                    "schema.calls_carry_model: must be false with source kuadrant (Limitador "
                    "labels the calls before the response names the model)"
                )
            for index, tier in enumerate(self.tiers):
                if any(c.per_prompt_token is not None for c in tier.price_changes):
                    raise ValueError(
                        f"tiers[{index}].price_changes: prompt/completion prices need the "
                        "gateway's token-kind counters, which Limitador does not have "
                        "(source kuadrant)"
                    )
            if not self.kuadrant.token_routes:
                raise ValueError(
                    "kuadrant.token_routes: source kuadrant needs the HTTPRoutes "
                    "(namespace/name) whose token counts Limitador publishes"
                )
            for index, tier in enumerate(self.tiers):
                for kind, limit in (
                    ("request_limit", tier.request_limit),
                    ("token_limit", tier.token_limit),
                ):
                    if limit is not None and limit.max > KUADRANT_MAX_LIMIT:
                        raise ValueError(
                            f"tiers[{index}].{kind}.max: {limit.max} is more than Kuadrant "
                            f"accepts (at most {KUADRANT_MAX_LIMIT} with source kuadrant)"
                        )
        if self.gateway.workers.count > 1:
            refusal = workers_refusal(self.storage.url, self.ledger.enabled)
            if refusal is not None:
                raise ValueError(f"gateway.workers.count: {refusal}")
        _one_trust_per_origin(self.models)
        _one_budget_per_user(self.api_keys)
        models = {m.name for m in self.models}
        for tier in self.tiers:
            for change in tier.price_changes:
                if change.model is not None and change.model not in models:
                    raise ValueError(
                        f"tier {tier.name!r} has a price change for unknown model {change.model!r}"
                    )
        return self

    # --- look-ups every part needs -------------------------------------------------

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def model(self, name: str) -> Model | None:
        for model in self.models:
            if model.name == name:
                return model
        return None

    def tier_for_groups(self, groups: list[str] | tuple[str, ...]) -> Tier | None:
        """The highest-level tier whose groups intersect `groups` (as Kuadrant's tier lookup)."""
        member = set(groups)
        matching = [t for t in self.tiers if member.intersection(t.groups)]
        return max(matching, key=lambda t: t.level) if matching else None

    def budget_for(self, user: str, tier: Tier) -> Budget | None:
        """`user`'s monthly budget: an API key's override, else the tier's."""
        for key in self.api_keys:
            if key.user == user and key.budget is not None:
                return key.budget
        return tier.budget

    def tiers_by_level(self) -> list[Tier]:
        return sorted(self.tiers, key=lambda t: t.level)

    def matched_group(self, groups: list[str] | tuple[str, ...], tier: Tier) -> str | None:
        """The first of `tier`'s groups the caller is in (the `group` attribution label)."""
        return next((g for g in tier.groups if g in groups), None)


def _per_token_price(entry: object) -> object:
    """A subscription's `price_per_token` is its `price_per_hit` (token hits are tokens)."""
    if not isinstance(entry, dict) or "price_per_token" not in entry:
        return entry
    if "price_per_hit" in entry:
        raise ValueError("subscriptions: set price_per_token or price_per_hit, not both")
    rest = {k: v for k, v in entry.items() if k != "price_per_token"}
    return {**rest, "price_per_hit": entry["price_per_token"]}


def _one_trust_per_origin(models: list[Model]) -> None:
    """TLS trust belongs to the endpoint: models on one https origin must name the same CA file."""
    trust: dict[str, Path | None] = {}
    for model in models:
        origin = "/".join(model.upstream.split("/", 3)[:3])
        if trust.setdefault(origin, model.ca_file) != model.ca_file:
            raise ValueError(
                f"models on {origin} must all use the same ca_file (model {model.name!r})"
            )


def _one_budget_per_user(keys: list[ApiKey]) -> None:
    """A user's keys share one monthly counter, so they must name the same budget override."""
    seen: dict[str, Budget | None] = {}
    for index, key in enumerate(keys):
        if seen.setdefault(key.user, key.budget) != key.budget:
            raise ValueError(
                f"api_keys[{index}].budget: user {key.user!r} has keys with different budgets "
                "(one monthly counter per user)"
            )


def mask_secrets(url: str) -> str:
    """`url` fit for a terminal or a log: the user-info password and any `password=` value masked."""
    masked = re.sub(r"(?<=://)([^/?#]*)@", lambda m: _mask_userinfo(m.group(1)) + "@", url)
    return re.sub(r"(?i)((?:^|[?&;])password=)[^&;#]*", r"\1***", masked)


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:***" if colon else "***"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe_validation_error(error: ValidationError) -> str:
    """One line: the first problem's field path and message, plus how many more there are."""
    problems = error.errors()
    first = problems[0]
    loc = tuple(
        p
        for p in first["loc"]
        if not (isinstance(p, str) and (re.match(r"^function-", p) or p == "[key]"))
    )
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    if not loc:  # a whole-config rule: its message names the fields itself
        return f"{message}{more}"
    return f"{_format_location(loc)}: {message}{more}"


def parse_config(data: object) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        message = describe_validation_error(error)
        if _dimension(data) == "subscription" and message.startswith("tiers"):
            message = "subscriptions" + message.removeprefix("tiers")  # the YAML's name
        raise ConfigError(message) from None


def _dimension(data: object) -> object:
    schema = data.get("schema") if isinstance(data, dict) else None
    return schema.get("billing_dimension") if isinstance(schema, dict) else None


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed YAML of a file, or `ConfigError` with one line saying what is wrong and where."""
    try:
        return load_file(path, what)
    except YamlFileError as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config, raising `ConfigError` with a one-line reason."""
    data = read_yaml(path, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
