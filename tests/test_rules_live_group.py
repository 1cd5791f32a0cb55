"""The recording group evaluated by Prometheus's own rule manager: later rules see earlier ones.

The per-tier minutes sum the per-user minutes written earlier in the same
group evaluation (`rules.recording`); that relies on Prometheus evaluating
a group's rules in order and each seeing the samples the ones before it
wrote at the same timestamp. Backfills evaluate rule by rule, so only a live
rule manager proves it: a real Prometheus scrapes a live exposition (three
users, two tiers, counters growing every scrape, one series born late)
and evaluates the real group (its interval shortened to 2 s, the rules
unchanged); every per-tier sample must equal the sum of the per-user
samples at its timestamp, and none may be missing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from maas_metrics.prometheus import PrometheusProcess
from maas_metrics.prometheus.process import ScrapeTarget
from maas_metrics.rules.recording import per_tier_series, per_user_series, recording_group

USERS = {"alice": "free", "bob": "free", "carol": "premium"}


class Exposition:
    """Limitador-shaped counters that grow at every scrape; carol's series is born at scrape 5."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.lock = threading.Lock()

    def text(self) -> bytes:
        with self.lock:
            self.scrapes += 1
            n = self.scrapes
        lines = []
        for i, (user, tier) in enumerate(USERS.items()):
            if user == "carol" and n < 5:
                continue
            labels = f'limitador_namespace="maas/tokens",model="m",tier="{tier}",user="{user}"'
            lines.append(f"authorized_hits{{{labels}}} {n * (10 + i)}\n")
        return "".join(lines).encode()


@pytest.fixture(scope="module")
def exposition() -> Iterator[str]:
    state = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def stored(
    url: str, series: str, end: float
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Every sample of `series` recorded in the last 30 s (a range selector, as stored)."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": f"{series}[30s]", "time": end})
    return [
        (r["metric"], [(float(t), float(v)) for t, v in r["values"]])
        for r in answer.json()["data"]["result"]
    ]


def test_per_tier_minutes_equal_the_per_user_minutes_at_every_evaluation(
    exposition: str, tmp_path: Path
) -> None:
    group = recording_group()
    group["interval"] = "2s"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    prometheus = PrometheusProcess(
        tmp_path / "prometheus",
        targets=[ScrapeTarget("limitador", exposition)],
        scrape_interval="1s",
        rule_files=[rules],
    )
    prometheus.start()
    try:
        time.sleep(20)
        end = time.time()
        users = stored(prometheus.url, per_user_series("authorized_hits"), end)
        tiers = stored(prometheus.url, per_tier_series("authorized_hits"), end)
    finally:
        prometheus.stop()
    per_user: dict[tuple[str, float], float] = defaultdict(float)
    stamps_of_users: set[float] = set()
    for labels, points in users:
        for t, v in points:
            per_user[(USERS[labels["user"]], t)] += v
            stamps_of_users.add(t)
    per_tier = {(labels["tier"], t): v for labels, points in tiers for t, v in points}
    assert len(stamps_of_users) >= 5, "the rule manager evaluated the group several times"
    assert per_tier == dict(per_user)
    assert any(v > 0 for (tier, _), v in per_tier.items() if tier == "premium")
