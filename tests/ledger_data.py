"""Ledger test data and a truth computed per record, independently of the store's roll-ups."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime

from maas_metrics.ledger import RequestRecord, new_id

REQ_NS = "maas/requests"
TOK_NS = "maas/tokens"
USERS = {"alice": "free", "bob": "free", "dave": "premium", "frank": "enterprise"}
MODELS = ("granite-8b", "llama-3-8b")
T0 = datetime(2026, 11, 3, 21, 17, 5, tzinfo=UTC).timestamp()


def random_records(count: int, seed: int, span_seconds: float = 2 * 86400) -> list[RequestRecord]:
    """Records of every outcome, ending anywhere in [T0, T0 + span], some exactly on hour edges."""
    rng = random.Random(seed)
    out: list[RequestRecord] = []
    for i in range(count):
        user = rng.choice(list(USERS))
        ended = T0 + rng.random() * span_seconds
        if i % 17 == 0:
            ended = (int(ended) // 3600) * 3600.0  # exactly on an hour edge
        outcome = rng.choice(
            ["ok"] * 5 + ["rate_limited", "upstream_error", "client_disconnect", "usage_missing"]
        )
        limited_ns = None
        limit_name = None
        tokens_ns: str | None = TOK_NS
        if outcome == "rate_limited":
            limited_ns = rng.choice([REQ_NS, TOK_NS])
            limit_name = f"{USERS[user]}-{'requests' if limited_ns == REQ_NS else 'tokens'}"
            if limited_ns == REQ_NS:
                tokens_ns = None  # the token policy was never checked
        prompt = completion = cached = 0
        if outcome == "ok":
            prompt, completion = rng.randint(1, 50), rng.randint(0, 80)
            cached = rng.randint(0, prompt)
        out.append(
            RequestRecord(
                id=new_id(),
                started=ended - rng.random() * 3,
                ended=ended,
                user=user,
                key_id="0123456789ab",
                tier=USERS[user],
                model=rng.choice(MODELS),
                endpoint="/chat/completions",
                stream=rng.random() < 0.5,
                outcome=outcome,  # type: ignore[arg-type]
                status={"ok": 200, "rate_limited": 429, "upstream_error": 502}.get(outcome, 200),
                requests_namespace=REQ_NS,
                tokens_namespace=tokens_ns,
                usage_namespace=TOK_NS,
                limited_namespace=limited_ns,
                limit_name=limit_name,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=cached,
                total_tokens=prompt + completion,
                latency_ms=12.5,
            )
        )
    return out


def truth(
    recs: list[RequestRecord], start: float, end: float, by: tuple[str, ...]
) -> dict[tuple[str, ...], list[int]]:
    """key -> [tokens, allowed, limited] for records with start < ended <= end, per namespace."""
    out: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in recs:
        ms = round(r.ended * 1000)
        if not round(start * 1000) < ms <= round(end * 1000):
            continue
        for ns in (REQ_NS, TOK_NS):
            values = {"user": r.user, "tier": r.tier, "model": r.model, "namespace": ns}
            key = tuple(values[k] for k in by)
            if ns == TOK_NS:
                out[key][0] += r.total_tokens
            checked = ns == r.requests_namespace or ns == r.tokens_namespace
            if r.limited_namespace == ns:
                out[key][2] += 1
            elif checked:
                out[key][1] += 1
    return {k: v for k, v in out.items() if any(v)}
