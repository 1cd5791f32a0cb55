"""Shared by the ledger's gateway tests: configs with a ledger, a mixed openai scenario, its truth."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from sqlalchemy import select

from maas_metrics.config import Config, Ledger, parse_config
from maas_metrics.ledger import LedgerStore
from maas_metrics.ledger.schema import records
from maas_metrics.prometheus import PrometheusAPI
from maas_metrics.simulate.answers import compute_usage
from tests.gateway_harness import TIER_OF, make_config, secret
from tests.postgres_server import wait_until
from tests.servers import free_port, wait_for_port

REQ_NS, TOK_NS = "maas/requests", "maas/tokens"
BROKEN = "broken-model"  # its upstream port has nobody listening: 502
SLOW = "slow-model"  # the mock with latency: a stream a client can walk away from


def ledger_config(
    upstream: str, slow_upstream: str, url: str, spool: Path, **ledger: Any
) -> Config:
    config = make_config(
        upstream,
        extra_models={BROKEN: f"http://127.0.0.1:{free_port()}/v1", SLOW: slow_upstream},
    )
    settings = Ledger.model_validate(
        {
            "url": url,
            "flush_interval_ms": 50,
            "retry_seconds": 0.2,
            "spool_path": str(spool),
            **ledger,
        }
    )
    return config.model_copy(update={"ledger": settings})


@dataclass(frozen=True)
class Outcome:
    """What the client saw: the ledger must hold exactly this."""

    user: str
    model: str
    outcome: str  # ok | requests | tokens | upstream_error | client_disconnect
    prompt: int = 0
    completion: int = 0
    total: int = 0


def _client(base: str, user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=secret(user), max_retries=0, timeout=30)


def call(base: str, user: str, model: str, stream: bool, prompt: str = "hi") -> Outcome:
    api = _client(base, user)
    try:
        if stream:
            chunks = list(
                api.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=3,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            usage = chunks[-1].usage
        else:
            usage = api.completions.create(model=model, prompt=prompt, max_tokens=3).usage
    except openai.RateLimitError as error:
        assert isinstance(error.body, dict)
        return Outcome(user, model, str(error.body["type"]))
    except openai.APIStatusError as error:
        assert error.status_code in (502, 504), error
        return Outcome(user, model, "upstream_error")
    assert usage is not None
    return Outcome(
        user, model, "ok", usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
    )


def walk_away(base: str, user: str) -> Outcome:
    """Start a slow stream, read its first bytes, hang up.

    The gateway keeps reading the upstream for its usage and charges it (the answer was
    produced): the tokens are the mock's deterministic usage for this body.
    """
    body = {
        "model": SLOW,
        "messages": [{"role": "user", "content": "a long story please"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {secret(user)}"}
    url = f"{base}/v1/chat/completions"
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", url, json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        next(r.iter_raw())
    usage = compute_usage(body)
    return Outcome(
        user,
        SLOW,
        "client_disconnect",
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
    )


LONG = "tokens " * 60


def mixed_scenario(base: str) -> list[Outcome]:
    """Streamed and not, 429s of both policies, upstream errors, walk-away clients.

    Run twice within a minute, the second run touches exactly the counter series of
    the first (alice and bob only get 429s then), so none is born inside a range.
    """
    out = [
        call(base, "alice", "granite-8b", False),
        call(base, "alice", "granite-8b", True),
        call(base, "alice", "llama-3-8b", False),
        call(base, "alice", "llama-3-8b", True),
        call(base, "alice", "granite-8b", False),
        call(base, "alice", "granite-8b", False),  # 6th in 2 min: requests 429
        call(base, "alice", "llama-3-8b", True),  # 429
        call(base, "bob", "mistral-7b", False, LONG),  # overshoots 100 tokens (then: tokens 429)
        call(base, "bob", "mistral-7b", True),  # tokens 429
        call(base, "dave", BROKEN, False),
        call(base, "dave", BROKEN, True),
        call(base, "dave", "llama-3-8b", True),
        call(base, "frank", "mistral-7b", False),
        call(base, "frank", "granite-8b", True),
        walk_away(base, "frank"),
        walk_away(base, "dave"),
    ]
    return out


def expected_rows(outcomes: list[Outcome]) -> Counter[tuple[Any, ...]]:
    names = {"requests": "rate_limited", "tokens": "rate_limited"}
    return Counter(
        (o.user, o.model, names.get(o.outcome, o.outcome), o.prompt, o.completion, o.total)
        for o in outcomes
    )


def expected_counts(outcomes: list[Outcome]) -> dict[tuple[str, str, str], list[int]]:
    """(user, model, namespace) -> [tokens, allowed, limited] by Limitador's rules, from the clients."""
    out: dict[tuple[str, str, str], list[int]] = {}

    def add(ns: str, index: int, amount: int, o: Outcome) -> None:
        out.setdefault((o.user, o.model, ns), [0, 0, 0])[index] += amount

    for o in outcomes:
        if o.outcome == "requests":
            add(REQ_NS, 2, 1, o)
            continue
        add(REQ_NS, 1, 1, o)
        if o.outcome == "tokens":
            add(TOK_NS, 2, 1, o)
            continue
        add(TOK_NS, 1, 1, o)
        if o.total:
            add(TOK_NS, 0, o.total, o)
    assert all(o.user in TIER_OF for o in outcomes)
    return out


def ledger_rows(url: str) -> list[dict[str, Any]]:
    store = LedgerStore(url)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(records)).mappings()]
    store.close()
    return rows


def wait_for_rows(url: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal rows
        rows = ledger_rows(url)
        return len(rows) >= count

    wait_until(enough, timeout, f"{count} ledger rows")
    time.sleep(0.2)  # nothing more may arrive
    return ledger_rows(url)


def last_scrape(api: PrometheusAPI, job: str = "gateway") -> float:
    samples = api.query(f'timestamp(up{{job="{job}"}}) and up{{job="{job}"}} == 1')
    return samples[0].value if samples else 0.0


def scrape_after(api: PrometheusAPI, moment: float) -> None:
    wait_until(lambda: last_scrape(api) > moment, 30, "a scrape of the gateway")


# --- load through gateway processes -------------------------------------------------------

LOAD_USERS = tuple(f"load{i}" for i in range(8))


def roomy_config(upstream: str, url: str, spool: Path, **ledger: Any) -> Config:
    """Enterprise users `load0..7` with limits no load test reaches, and a ledger."""
    extra = {u: (["enterprise-users"], f"sk-load-{u}") for u in LOAD_USERS}
    data = make_config(upstream, extra_users=extra).model_dump(mode="json")
    for tier in data["tiers"]:
        if tier["name"] == "enterprise":
            tier["request_limit"] = {"max": 10_000_000, "window_seconds": 3600}
            tier["token_limit"] = {"max": 10_000_000_000, "window_seconds": 3600}
    data["ledger"] = {"url": url, "spool_path": str(spool), "retry_seconds": 0.2, **ledger}
    return parse_config(data)


class GatewayProcess:
    """`maas-metrics gateway` as its own process that a test can SIGKILL and start again."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path = config_path
        self.port = free_port()
        self.operator_port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def operator(self) -> str:
        """Where /metrics is served."""
        return f"http://127.0.0.1:{self.operator_port}"

    def start(self) -> None:
        command = [
            str(Path(sys.executable).parent / "maas-metrics"),
            "gateway",
            "-c",
            str(self.config_path),
            "--port",
            str(self.port),
            "--operator-port",
            str(self.operator_port),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass(frozen=True)
class Reply:
    user: str
    status: int  # 0: no answer (connection failed)
    tokens: int
    completed: float  # time.time() when the whole answer had arrived


def load(
    bases: list[str],
    stop: threading.Event,
    replies: list[Reply],
    per_user: int = 10_000,
    users: int = len(LOAD_USERS),
) -> list[threading.Thread]:
    """One thread per load user, each sending sequential completions to `bases` in turn."""

    def worker(index: int, user: str) -> None:
        base = bases[index % len(bases)]
        headers = {"Authorization": f"Bearer sk-load-{user}"}
        body = {"model": "granite-8b", "prompt": f"hello from {user}", "max_tokens": 4}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for _ in range(per_user):
                if stop.is_set():
                    return
                try:
                    r = client.post("/v1/completions", json=body)
                    tokens = r.json()["usage"]["total_tokens"] if r.status_code == 200 else 0
                    replies.append(Reply(user, r.status_code, tokens, time.time()))
                except (httpx.HTTPError, ValueError):
                    replies.append(Reply(user, 0, 0, time.time()))
                    time.sleep(0.05)

    threads = [
        threading.Thread(target=worker, args=(i, u), daemon=True)
        for i, u in enumerate(LOAD_USERS[:users])
    ]
    for t in threads:
        t.start()
    return threads
