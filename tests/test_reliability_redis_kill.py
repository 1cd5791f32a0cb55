"""Redis killed (SIGKILL) under concurrent load and brought back, with the gateway as its own process.

While four clients keep sending requests, the counter store dies and comes
back empty. The configured failure mode must hold for every request during
the outage (deny: 503, allow: 200), the gateway must never drop a
connection or answer any other 5xx, the process must live on and keep
serving, and afterwards counting must resume in the new Redis (a fresh free
user is limited after exactly its 5 requests). Throughout, the token
metrics must equal what the clients received.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as redis_client

from maas_metrics.config import Config, parse_config
from tests.fixtures import api_keys, gateway_command, secret, tier
from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    Series,
    parse_metrics,
    running_mock,
    usage_key,
    write_config,
)
from tests.servers import RedisServer, free_port

LOAD_USERS = tuple(f"load-{i}" for i in range(4))
MODEL = "granite-8b"
PARTITIONED: Series = ("datastore_partitioned", frozenset())


@dataclass(frozen=True)
class Reply:
    user: str
    sent: float
    received: float
    status: int  # 0: the connection failed
    tokens: int


def config(upstream: str, storage: str, on_failure: str) -> Config:
    return parse_config(
        {
            "tiers": [
                tier("free", 0, price_per_hit=0.005, requests=(5, 120), tokens=(100_000, 60)),
                tier("bulk", 1, price_per_hit=0.01, requests=(10**9, 120), tokens=(10**12, 60)),
            ],
            "models": [{"name": MODEL, "upstream": upstream}],
            "api_keys": api_keys("bulk", LOAD_USERS) + api_keys("free", ["fresh"]),
            "storage": {"url": storage, "on_failure": on_failure},
        }
    )


def chat(client: httpx.Client, key: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "count me"}],
            "max_tokens": 8,
        },
        headers={"Authorization": f"Bearer {key}"},
    )


def load(base_url: str, user: str, stop: threading.Event, replies: list[Reply]) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = chat(client, secret(user))
                status = response.status_code
                tokens = response.json()["usage"]["total_tokens"] if status == 200 else 0
            except httpx.HTTPError:
                status, tokens = 0, 0
            replies.append(Reply(user, sent, time.monotonic(), status, tokens))


def metrics(operator_url: str) -> dict[Series, float]:
    """The gateway's /metrics, served on its operator listener."""
    return parse_metrics(httpx.get(f"{operator_url}/metrics", timeout=10).text)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill(server: RedisServer) -> None:
    """SIGKILL: no shutdown, no goodbye to the clients, as when a node dies."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=10)
    server.process = None


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_redis_killed_under_load_and_restarted(
    mode: str, redis: RedisServer, tmp_path: Path
) -> None:
    port, operator_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    operator = f"http://127.0.0.1:{operator_port}"
    log = tmp_path / "gateway.log"
    with running_mock() as mock:
        path = write_config(config(mock.url, redis.url, mode), tmp_path / "maas.yaml")
        with log.open("wb") as out:
            gateway = subprocess.Popen(
                gateway_command(path, port, operator_port),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: _healthy(base), "the gateway to start")
            stop = threading.Event()
            replies: list[Reply] = []
            threads = [
                threading.Thread(target=load, args=(base, u, stop, replies), daemon=True)
                for u in LOAD_USERS
            ]
            for thread in threads:
                thread.start()
            try:
                time.sleep(1.5)
                killed = time.monotonic()
                kill(redis)
                time.sleep(2.0)
                during = metrics(operator)
                health_during = httpx.get(f"{base}/healthz", timeout=10)
                back = time.monotonic()
                redis.start()  # same port, empty: no persistence
                wait_until(
                    lambda: metrics(operator)[PARTITIONED] == 0, "datastore_partitioned to clear"
                )
                recovered = time.monotonic()
                time.sleep(1.5)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=15)

            # Counting resumes in the new Redis: the free user gets exactly its 5 requests.
            with httpx.Client(base_url=base, timeout=10) as client:
                fresh = [chat(client, secret("fresh")).status_code for _ in range(7)]
            assert fresh == [200] * 5 + [429] * 2
            stored = redis_client.Redis.from_url(redis.url).keys("maas:*")
            assert len(stored) >= 2  # the fresh user's request and token counters at least
            after = metrics(operator)
            assert gateway.poll() is None, "the gateway process died"
            assert _healthy(base)
        finally:
            gateway.terminate()
            gateway.wait(timeout=15)

    # The failure mode held for every request sent and answered inside the outage.
    expected = 503 if mode == "deny" else 200
    outage = [r for r in replies if r.sent > killed + 0.1 and r.received < back]
    assert len(outage) >= 20, "too little traffic during the outage to judge"
    assert {r.status for r in outage} == {expected}
    # Nothing but 200 and the failure mode's answer, and never a dropped connection.
    assert {r.status for r in replies} <= {200, expected}
    before_kill = [r for r in replies if r.received < killed]
    after_back = [r for r in replies if r.sent > recovered]
    assert before_kill and all(r.status == 200 for r in before_kill)
    bad = [(r.status, round(r.sent - recovered, 3)) for r in after_back if r.status != 200]
    assert len(after_back) >= 20 and not bad, bad

    assert during[PARTITIONED] == 1
    assert health_during.status_code == 200
    assert health_during.json()["store_reachable"] is False
    assert after[PARTITIONED] == 0
    assert b"Traceback" not in log.read_bytes()

    # The metrics equal what the clients got: every 200 passed the token policy and
    # reported its tokens; a 503 (deny) left the token metrics alone.
    ok = [r for r in replies if r.status == 200]
    denied = [r for r in replies if r.status == 503]
    token_calls = sum(
        after.get(usage_key("authorized_calls", TOKENS_NS, u, MODEL, "bulk"), 0) for u in LOAD_USERS
    )
    token_hits = sum(
        after.get(usage_key("authorized_hits", TOKENS_NS, u, MODEL, "bulk"), 0) for u in LOAD_USERS
    )
    request_calls = sum(
        after.get(usage_key("authorized_calls", REQUESTS_NS, u, MODEL, "bulk"), 0)
        for u in LOAD_USERS
    )
    assert token_calls == len(ok)
    assert token_hits == sum(r.tokens for r in ok)
    # A request whose request-policy check passed just before the kill and whose token
    # check then failed is counted by the request policy only (as Limitador does).
    assert len(ok) <= request_calls <= len(ok) + len(denied)
    limited_any = [k for k in after if k[0] == "limited_calls" and dict(k[1])["user"] != "fresh"]
    assert limited_any == []


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
