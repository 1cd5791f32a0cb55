"""What came back: one `Result` per request, tallied overall and per tier, model and user."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from maas_metrics.simulate.planner import Endpoint

Outcome = Literal["ok", "limited", "error"]


@dataclass(frozen=True, slots=True)
class Result:
    """What one request got back. `status` is 0 when no HTTP response arrived; `body` was sent."""

    user: str
    tier: str
    model: str
    endpoint: Endpoint
    stream: bool
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    error: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def outcome(self) -> Outcome:
        if 200 <= self.status < 300:
            return "ok"
        return "limited" if self.status == 429 else "error"


@dataclass(slots=True)
class Counts:
    """Tallies of results: `requests == ok + limited + errors`."""

    requests: int = 0
    ok: int = 0
    limited: int = 0
    errors: int = 0
    streamed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, result: Result) -> None:
        self.requests += 1
        outcome = result.outcome
        if outcome == "ok":
            self.ok += 1
        elif outcome == "limited":
            self.limited += 1
        else:
            self.errors += 1
        self.streamed += result.stream
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens


@dataclass
class TrafficStats:
    """Live and final tallies, overall and per tier, model and user."""

    total: Counts = field(default_factory=Counts)
    tiers: dict[str, Counts] = field(default_factory=dict)
    models: dict[str, Counts] = field(default_factory=dict)
    users: dict[str, Counts] = field(default_factory=dict)
    elapsed: float = 0.0
    unfinished: int = 0  # requests still unanswered when the run ended (cancelled, not counted)

    def add(self, result: Result) -> None:
        self.total.add(result)
        for table, name in (
            (self.tiers, result.tier),
            (self.models, result.model),
            (self.users, result.user),
        ):
            table.setdefault(name, Counts()).add(result)
