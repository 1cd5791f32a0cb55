"""The gateway restarted mid-traffic: dashboard and report totals stay within 1% of the truth.

A real Prometheus scrapes the gateway (its own process) every second while
three clients send traffic across users, tiers and models, some of it over
its limit (429s). Half-way the gateway is killed and started again on the same port (its
counters, Limitador-style, start again from zero). The truth is what the
clients received. The dashboard's 🎯 Total Authorized Hits and 📋 Detailed
Metrics Table queries (from the panel catalogue, expanded with
`dashboard.variables.expand` exactly as Grafana would) and the usage report
(`report.build_report`) must each be within 1% of it. Reading the raw
counters instead would lose everything before the restart.

How the edges are kept honest:

* every series exists before the measured range starts (one priming
  request per user and model, and a 429 for the capped user), so no
  increase hides in a series' first sample;
* the range runs from a scrape after the priming to a scrape after the last
  reply, so Prometheus has nothing to extrapolate. The report's range is on
  its `--resolution` grid, so it reads on a grid of 1/1024 s: on whole
  seconds, its range would start up to 1 s before the first scrape, and a
  series whose count after the restart outgrew its count before it (which
  `increase_exact` hands to `increase()`, its documented fallback) would be
  extrapolated by that second, several percent of this short range;
* Prometheus pulls, so hits served after the last scrape of a dying process
  are lost with it (up to one scrape interval of traffic, for any
  Limitador-style exporter). The process is therefore killed right after a
  scrape has landed (SIGKILL, as a crash or an OOM kill: nothing flushed),
  which leaves only the few milliseconds between that scrape and the kill
  unseen. A graceful SIGTERM is not used: uvicorn keeps serving for up to
  its 100 ms shutdown tick after the signal, and the ~1% of traffic served
  then could never be scraped, which measures the pull model, not the queries.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from maas_metrics.config import Config, parse_config
from maas_metrics.dashboard import Selection, build_catalogue, expand
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.report import ReportRequest, TimeRange, build_report
from tests.fixtures import api_keys, gateway_command, secret, tier
from tests.gateway_harness import running_mock, write_config
from tests.servers import free_port

STANDARD_USERS = ("ana", "ben", "chen", "dana")
CAPPED_USER = "capped"  # free tier: 3 requests per 10 minutes, limited most of the time
MODELS = ("granite-8b", "llama-3-8b")
REQUESTS_NS, TOKENS_NS = "maas/requests", "maas/tokens"
TRAFFIC_SECONDS = 5.0  # before the restart, and again after it
TOLERANCE = 0.01
REPORT_GRID = 2**-10  # seconds: divides a day exactly in binary floating point


@dataclass(frozen=True)
class Reply:
    user: str
    model: str
    status: int  # 0: no answer (the gateway was restarting)
    tokens: int


def make_config(upstream: str) -> Config:
    return parse_config(
        {
            "tiers": [
                tier("free", 0, price_per_hit=0.005, requests=(3, 600), tokens=(10**9, 600)),
                tier(
                    "standard", 1, price_per_hit=0.008, requests=(10**9, 600), tokens=(10**12, 600)
                ),
            ],
            "models": [{"name": m, "upstream": upstream} for m in MODELS],
            "api_keys": api_keys("standard", STANDARD_USERS) + api_keys("free", [CAPPED_USER]),
            "namespaces": {"requests": REQUESTS_NS, "tokens": TOKENS_NS},
        }
    )


def send(client: httpx.Client, user: str, model: str, n: int) -> Reply:
    try:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": f"request {n} of {user}"}],
                "max_tokens": 4 + n % 13,
            },
            headers={"Authorization": f"Bearer {secret(user)}"},
        )
    except httpx.HTTPError:
        time.sleep(0.01)  # the gateway is restarting: do not spin
        return Reply(user, model, 0, 0)
    tokens = response.json()["usage"]["total_tokens"] if response.status_code == 200 else 0
    return Reply(user, model, response.status_code, tokens)


def clients(base: str, worker: int, stop: threading.Event, replies: list[Reply]) -> None:
    users = itertools.cycle((*STANDARD_USERS, CAPPED_USER))
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in itertools.count(worker * 1_000_000):
            if stop.is_set():
                return
            replies.append(send(client, next(users), MODELS[n % len(MODELS)], n))


class Gateway:
    """`maas-metrics gateway` as its own process on a fixed port, restartable."""

    def __init__(self, config_path: Path, port: int, operator_port: int, log: Path) -> None:
        self.argv = gateway_command(config_path, port, operator_port)
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self.healthy, "the gateway to serve")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: nothing is flushed, nothing is drained."""
        assert self.process is not None
        self.process.kill()
        assert self.process.wait(timeout=15) == -9
        self.process = None

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code, None if it was not running."""
        if self.process is None:
            return None
        self.process.terminate()
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def last_scrape(api: PrometheusAPI) -> float:
    """Timestamp (unix s) of the latest successful scrape of the gateway, 0 if none yet."""
    # timestamp() gives the sample's time only when applied to a selector itself.
    samples = api.query('timestamp(up{job="gateway"}) and up{job="gateway"} == 1')
    return samples[0].value if samples else 0.0


def scrape_after(api: PrometheusAPI, moment: float) -> float:
    """Wait for a successful scrape that started after unix time `moment`; return its timestamp."""
    found = 0.0

    def landed() -> bool:
        nonlocal found
        found = last_scrape(api)
        return found > moment

    wait_until(landed, "a scrape of the gateway")
    return found


def scrapes(api: PrometheusAPI, count: int) -> list[float]:
    """Timestamps of the next `count` successful scrapes."""
    out = [last_scrape(api)]
    for _ in range(count):
        out.append(scrape_after(api, out[-1]))
    return out[1:]


def aligned_pair(before: list[float], after: list[float]) -> tuple[float, float]:
    """The (start, end) scrape pair whose distance is closest to whole seconds.

    Grafana's `$__range` is whole seconds; with both range edges on a scrape
    `increase` has nothing to extrapolate. Scrape times jitter by a few ms
    under load, so the best of several pairs is taken.
    """
    start, end = min(
        itertools.product(before, after), key=lambda p: abs(p[1] - p[0] - round(p[1] - p[0]))
    )
    assert abs(end - start - round(end - start)) < 0.005, (before, after)
    return start, end


def within(measured: float, truth: float) -> bool:
    return abs(measured - truth) <= TOLERANCE * truth


def test_restart_mid_traffic_keeps_dashboard_and_report_totals(tmp_path: Path) -> None:
    port, operator_port = free_port(), free_port()
    with running_mock() as mock:
        config = make_config(mock.url)
        gateway = Gateway(
            write_config(config, tmp_path / "maas.yaml"), port, operator_port, tmp_path / "gw.log"
        )
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            targets=[ScrapeTarget("gateway", f"127.0.0.1:{operator_port}")],
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        with prometheus, PrometheusAPI(prometheus.url) as api:
            gateway.start()
            try:
                # Priming: every series the traffic will touch exists before the range starts.
                with httpx.Client(base_url=gateway.base, timeout=10) as client:
                    for user, model in itertools.product(STANDARD_USERS, MODELS):
                        assert send(client, user, model, 0).status == 200
                    for model in MODELS:
                        statuses = [send(client, CAPPED_USER, model, n).status for n in range(4)]
                        assert 429 in statuses
                primed = time.time()
                scrape_after(api, primed)  # its predecessor may predate the priming
                before = scrapes(api, 3)  # quiet scrapes: candidates for the range start

                stop = threading.Event()
                replies: list[Reply] = []
                workers = [
                    threading.Thread(target=clients, args=(gateway.base, w, stop, replies))
                    for w in range(3)
                ]
                for worker in workers:
                    worker.start()
                try:
                    time.sleep(TRAFFIC_SECONDS)
                    # Kill right after a scrape has landed (see the module docstring).
                    scrape_after(api, last_scrape(api))
                    gateway.kill()
                    restarted = len(replies)
                    gateway.start()
                    time.sleep(TRAFFIC_SECONDS)
                finally:
                    stop.set()
                    for worker in workers:
                        worker.join(timeout=15)
                scrape_after(api, time.time())
                after = scrapes(api, 3)  # quiet scrapes: candidates for the range end
                start, end = aligned_pair(before, after)
                range_seconds = round(end - start)
                while (
                    time.time() < math.ceil(end) + 0.2
                ):  # the report reads at the next whole second
                    time.sleep(0.05)

                catalogue = build_catalogue(config)

                def dashboard(expr: str) -> list[tuple[dict[str, str], float]]:
                    query = expand(
                        expr, Selection(), range_seconds, 4.0, variables=catalogue.variables
                    )
                    return [(s.labels, s.value) for s in api.query(query, time=end)]

                total_hits = dashboard(catalogue.panel("total_hits").target("A").expr)
                details = catalogue.panel("details")
                table = {ref: dashboard(details.target(ref).expr) for ref in ("A", "B", "C")}
                # The report's edges on the scrapes too (its finest grid, 1/1024 s, puts
                # them within a millisecond): see the module docstring.
                report = build_report(
                    api,
                    config,
                    ReportRequest(
                        range=TimeRange(
                            datetime.fromtimestamp(start - start % REPORT_GRID, UTC),
                            datetime.fromtimestamp(end - end % REPORT_GRID + REPORT_GRID, UTC),
                        ),
                        resolution=REPORT_GRID,
                    ),
                )
                raw_hits = sum(
                    s.value
                    for s in api.query(f'authorized_hits{{limitador_namespace="{TOKENS_NS}"}}')
                )
            finally:
                gateway.stop()

    assert b"Traceback" not in (tmp_path / "gw.log").read_bytes()
    answered = Counter(r.status for r in replies)
    assert set(answered) <= {0, 200, 429}, answered
    assert answered[200] > 500 and answered[429] > 50, answered
    assert 0 < restarted < len(replies)
    ok = [r for r in replies if r.status == 200]
    truth_tokens = sum(r.tokens for r in ok)
    truth_calls = 2 * len(ok)  # one authorized call per policy (request, token)
    truth_limited = answered[429]  # all from the request policy

    assert len(total_hits) == 1
    assert within(total_hits[0][1], truth_tokens), (total_hits, truth_tokens)
    table_hits = sum(v for _, v in table["A"])
    table_calls = sum(v for _, v in table["B"])
    table_limited = sum(v for _, v in table["C"])
    assert within(table_hits, truth_tokens), (table_hits, truth_tokens)
    assert within(table_calls, truth_calls), (table_calls, truth_calls)
    assert within(table_limited, truth_limited), (table_limited, truth_limited)
    assert {labels["limitador_namespace"] for labels, _ in table["A"]} == {TOKENS_NS}
    for user in STANDARD_USERS:
        user_truth = sum(r.tokens for r in ok if r.user == user)
        user_hits = sum(v for labels, v in table["A"] if labels["user"] == user)
        assert within(user_hits, user_truth), (user, user_hits, user_truth)

    assert within(report.total.tokens, truth_tokens), (report.total, truth_tokens)
    assert within(report.total.allowed, truth_calls), (report.total, truth_calls)
    assert within(report.total.limited, truth_limited), (report.total, truth_limited)

    # The raw counter (what a dashboard must not use) lost everything before the restart.
    assert raw_hits < 0.9 * truth_tokens
