"""The one validated configuration every part of maas-metrics reads.

Tiers, prices, limits, models, API keys and storage are defined here once;
the gateway, the dashboards, the report, the rules and the manifests all
derive from the same `Config` object, so a tier added to the YAML file
appears everywhere without code changes.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


class ConfigError(Exception):
    """A config that cannot be used; `str()` is one line naming the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSpec(_Strict):
    """At most `max` hits per fixed window of `window_seconds`, per user."""

    max: Annotated[int, Field(ge=0)]
    window_seconds: Annotated[int, Field(gt=0)]


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


class Tier(_Strict):
    """A service tier: who is in it, what it may use, what it costs and how it looks."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    level: int
    groups: Annotated[list[str], Field(min_length=1)]
    colour: str = "#8AB8FF"
    price_per_hit: Annotated[float, Field(ge=0)]
    price_changes: list[PriceChange] = []
    request_limit: LimitSpec | None = None
    token_limit: LimitSpec | None = None

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
    """A model served through the gateway and the OpenAI-compatible base URL behind it."""

    name: Annotated[Text, Field(min_length=1)]
    upstream: Annotated[str, Field(pattern=r"^https?://")]

    @field_validator("upstream")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class ApiKey(_Strict):
    """An API key, stored only as the SHA-256 hex digest of the secret."""

    user: Annotated[Text, Field(min_length=1)]
    groups: Annotated[list[Text], Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]


class Namespaces(_Strict):
    """The `limitador_namespace` values of the two policies (kept apart so tokens never mix with requests)."""

    requests: Annotated[Text, Field(min_length=1)] = "maas/requests"
    tokens: Annotated[Text, Field(min_length=1)] = "maas/tokens"

    @model_validator(mode="after")
    def _distinct(self) -> Namespaces:
        if self.requests == self.tokens:
            raise ValueError("requests and tokens namespaces must differ")
        return self


class GatewaySettings(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_048_576
    upstream_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    # On SIGTERM/SIGINT keep serving until Prometheus has scraped every count, for at most
    # this long (0: stop at once, as Limitador does, losing what was counted since the last scrape).
    shutdown_scrape_wait_seconds: Annotated[float, Field(ge=0)] = 0.0


class Storage(_Strict):
    """Where limit counters live: `memory` (one process) or a `redis://` URL (many replicas)."""

    url: Annotated[str, Field(pattern=r"^(memory|rediss?://.+)$")] = "memory"
    on_failure: Literal["deny", "allow"] = "deny"


class Dashboard(_Strict):
    title: str = "MaaS Token Metrics"
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "maas-token-metrics"
    refresh: str = "30s"
    default_range: str = "now-1h"
    # Per-user panels show this many users plus one "others" row (the rest of the total).
    top_users: Annotated[int, Field(ge=1, le=1000)] = 10
    # The built-in web dashboard: Prometheus queries in flight at once (all tabs together), and
    # how long an answer is shared with other tabs asking the same query for the same time.
    web_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    web_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0


class Config(_Strict):
    tiers: Annotated[list[Tier], Field(min_length=1)]
    models: Annotated[list[Model], Field(min_length=1)]
    api_keys: list[ApiKey] = []
    storage: Storage = Storage()
    namespaces: Namespaces = Namespaces()
    gateway: GatewaySettings = GatewaySettings()
    dashboard: Dashboard = Dashboard()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _unique([t.name for t in self.tiers], "tiers", "name")
        _unique([str(t.level) for t in self.tiers], "tiers", "level")
        _unique([m.name for m in self.models], "models", "name")
        _unique([k.sha256 for k in self.api_keys], "api_keys", "sha256")
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

    def tiers_by_level(self) -> list[Tier]:
        return sorted(self.tiers, key=lambda t: t.level)


def _unique(values: list[str], where: str, field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: duplicate {field} {value!r}")
        seen.add(value)


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
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and re.match(r"^function-", p)))
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{_format_location(loc)}: {message}{more}"


def parse_config(data: object) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed YAML of a file, or `ConfigError` with one line saying what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what}: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config, raising `ConfigError` with a one-line reason."""
    data = read_yaml(path, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
