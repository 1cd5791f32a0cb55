"""What to send: tiers, users and models drawn evenly, prompts of varied length, some streamed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from maas_metrics.simulate.keys import SimUser

Endpoint = Literal["chat", "completions"]
T = TypeVar("T")

_WORDS_TEXT = """
explain summarise translate compare list describe why how what when the a of to and quota token
model cluster latency request tier price limit window user gateway metric kubernetes inference
service deploy scale replica memory budget invoice report chart please briefly detail example
python yaml prometheus grafana alert dashboard cost
"""
_WORDS = _WORDS_TEXT.split()


class _Bag(Generic[T]):
    """Draws every item once in a shuffled order, then reshuffles: even coverage, no pattern."""

    def __init__(self, items: Sequence[T], rng: random.Random) -> None:
        self._items = list(items)
        self._rng = rng
        self._left: list[T] = []

    def draw(self) -> T:
        if not self._left:
            self._left = self._items.copy()
            self._rng.shuffle(self._left)
        return self._left.pop()


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    user: SimUser
    model: str
    endpoint: Endpoint
    stream: bool
    body: dict[str, Any]


class RequestPlanner:
    """The deterministic (given a seed) sequence of requests to send."""

    def __init__(
        self,
        users: Sequence[SimUser],
        models: Sequence[str],
        stream_fraction: float,
        completions_fraction: float,
        rng: random.Random,
    ) -> None:
        self._rng = rng
        by_tier: dict[str, list[SimUser]] = {}
        for user in users:
            by_tier.setdefault(user.tier, []).append(user)
        self._by_tier = by_tier
        self._tiers = _Bag(list(by_tier), rng)
        self._models = _Bag(list(models), rng)
        self._stream_fraction = stream_fraction
        self._completions_fraction = completions_fraction

    def _prompt(self) -> str:
        # Mostly short questions, some paragraphs, a few long documents.
        kind = self._rng.random()
        if kind < 0.55:
            count = self._rng.randint(3, 20)
        elif kind < 0.9:
            count = self._rng.randint(20, 120)
        else:
            count = self._rng.randint(120, 600)
        return " ".join(self._rng.choices(_WORDS, k=count))

    def next(self) -> PlannedRequest:
        user = self._rng.choice(self._by_tier[self._tiers.draw()])
        model = self._models.draw()
        stream = self._rng.random() < self._stream_fraction
        endpoint: Endpoint = (
            "completions" if self._rng.random() < self._completions_fraction else "chat"
        )
        body: dict[str, Any] = {"model": model}
        if endpoint == "chat":
            messages = [{"role": "user", "content": self._prompt()}]
            if self._rng.random() < 0.3:
                messages.insert(0, {"role": "system", "content": "You are a concise assistant."})
            body["messages"] = messages
        else:
            body["prompt"] = self._prompt()
        if self._rng.random() < 0.3:
            body["max_tokens"] = self._rng.randint(8, 128)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return PlannedRequest(user, model, endpoint, stream, body)
