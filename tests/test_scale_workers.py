"""`maas-metrics gateway --workers 2` on a real redis-server: exact limits and one set of series.

The gateway runs as a user starts it (the installed command), its two
workers share limit counters and metric counts through Redis, and the
official `openai` client sends the traffic. The truth is what the clients
received (200s and 429s), counted by the test; /metrics of the one operator
listener must show it: never more than happened, never going back (a
worker restart is not a counter reset), and after a SIGKILL of a worker at
most what that worker answered in its last push interval goes missing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.fixtures import CLI, api_keys, gateway_command, secret, tier
from tests.gateway_harness import GatewayURL, parse_metrics, running_mock
from tests.servers import RedisServer, free_port, wait_for_port

REQUESTS_NS = "maas/requests"
FLUSH_SECONDS = 0.05


def write_config(
    path: Path, upstream: str, storage: str, limit: int, metrics_key: str = "test"
) -> Path:
    config: dict[str, Any] = {
        "tiers": [
            tier("capped", 0, price_per_hit=0.01, requests=(limit, 600), tokens=(10**9, 600)),
            tier("open", 1, price_per_hit=0.01, requests=(10**6, 600), tokens=(10**9, 600)),
        ],
        "models": [{"name": "granite-8b", "upstream": upstream}],
        "api_keys": api_keys("capped", ["carl"]) + api_keys("open", ["olga"]),
        "storage": {"url": storage},
        "gateway": {
            "operator": {"port": 0},
            "workers": {"flush_seconds": FLUSH_SECONDS, "metrics_key": metrics_key},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def workers_gateway(
    config: Path, workers: int = 2
) -> Iterator[tuple[GatewayURL, subprocess.Popen[bytes]]]:
    port, operator_port = free_port(), free_port()
    process = subprocess.Popen(
        [*gateway_command(config, port, operator_port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(operator_port, process=process)
        wait_for_port(port, process=process)
        url = GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")
        wait_for_workers(url, workers)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    # uvicorn re-raises the SIGTERM it handled once it has stopped cleanly.
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode(errors="replace")
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def health(url: GatewayURL) -> dict[str, Any]:
    response = httpx.get(f"{url.operator}/healthz", timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_for_workers(url: GatewayURL, count: int, restarts: int = 0) -> list[int]:
    """The worker pids once `count` workers answer (and `restarts` replacements were started)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = health(url)
        if len(body["workers"]) == count and body["worker_restarts"] >= restarts:
            ready = httpx.get(f"{url}/healthz", timeout=10)
            if ready.status_code == 200:
                return list(body["workers"])
        time.sleep(0.2)
    raise TimeoutError(f"{count} workers did not come up")


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of a process (/proc), to see that a worker served."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def requests_counters(url: GatewayURL) -> dict[tuple[str, str], float]:
    """(family, user) -> value of the request-policy Limitador counters in one scrape."""
    text = httpx.get(f"{url.operator}/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in parse_metrics(text).items():
        label = dict(labels)
        if (
            name in ("authorized_calls", "limited_calls")
            and label.get("limitador_namespace") == REQUESTS_NS
        ):
            out[name, label["user"]] = value
    return out


def settle(
    url: GatewayURL, history: list[dict[tuple[str, str], float]]
) -> dict[tuple[str, str], float]:
    """Scrape until three scrapes in a row agree (the workers' pushes are in), keeping every scrape."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        history.append(requests_counters(url))
        if len(history) >= 3 and history[-1] == history[-2] == history[-3]:
            return history[-1]
        time.sleep(4 * FLUSH_SECONDS)
    raise TimeoutError("the counts never settled")


def assert_never_back(history: list[dict[tuple[str, str], float]]) -> None:
    """No series ever decreases between two scrapes (no reset, no per-worker view)."""
    for before, after in itertools.pairwise(history):
        for key, value in before.items():
            assert after.get(key, 0) >= value, (key, value, after.get(key))


async def burst(base: str, user: str, count: int) -> list[int]:
    """`count` concurrent chat requests; the status of each (the openai client's view)."""
    async with openai.AsyncOpenAI(
        base_url=f"{base}/v1", api_key=secret(user), max_retries=0, timeout=60
    ) as client:

        async def one() -> int:
            try:
                await client.chat.completions.create(
                    model="granite-8b", messages=[{"role": "user", "content": "hi"}]
                )
            except openai.APIStatusError as error:
                return error.status_code
            return 200

        return await asyncio.gather(*(one() for _ in range(count)))


def test_memory_storage_refuses_workers(tmp_path: Path) -> None:
    config = write_config(tmp_path / "maas.yaml", "http://127.0.0.1:9/v1", "memory", 5)
    result = subprocess.run(
        [CLI, "gateway", "--config", str(config), "--workers", "2"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [
        "error: --workers 2: counters in memory cannot be shared between workers; "
        "set storage.url to a redis:// URL or run one worker"
    ]
    data = yaml.safe_load(config.read_text())
    data["gateway"]["workers"]["count"] = 2
    config.write_text(yaml.safe_dump(data))
    check = subprocess.run([CLI, "config", "check", str(config)], capture_output=True, timeout=60)
    assert check.returncode != 0
    assert "gateway.workers.count: counters in memory cannot be shared" in check.stderr.decode()


def test_two_workers_admit_exactly_the_limit_and_metrics_agree(
    tmp_path: Path, redis: RedisServer
) -> None:
    limit, sent = 50, 240
    with running_mock() as mock:
        config = write_config(tmp_path / "maas.yaml", mock.url, redis.url, limit, "exact")
        with workers_gateway(config) as (url, _):
            pids = wait_for_workers(url, 2)
            before = {pid: cpu_ticks(pid) for pid in pids}
            history = [requests_counters(url)]
            statuses = asyncio.run(burst(url, "carl", sent))
            assert statuses.count(200) == limit
            assert statuses.count(429) == sent - limit
            # Both workers took part (each spent CPU on the burst).
            assert all(cpu_ticks(pid) > before[pid] for pid in pids), before
            final = settle(url, history)
    assert final == {("authorized_calls", "carl"): limit, ("limited_calls", "carl"): sent - limit}
    assert_never_back(history)
    assert history[0] == {}  # nothing before the burst: the counts are the burst's


def test_sigkill_of_a_worker_loses_at_most_its_last_push(
    tmp_path: Path, redis: RedisServer
) -> None:
    with running_mock() as mock:
        config = write_config(tmp_path / "maas.yaml", mock.url, redis.url, 10, "kill")
        with workers_gateway(config) as (url, _):
            victim = wait_for_workers(url, 2)[0]
            history = [requests_counters(url)]
            answered: list[float] = []  # monotonic time of each 200
            failed = 0
            killed_at = 0.0

            async def client(stop_at: float) -> None:
                nonlocal failed
                async with openai.AsyncOpenAI(
                    base_url=f"{url}/v1", api_key=secret("olga"), max_retries=0, timeout=30
                ) as api:
                    while time.monotonic() < stop_at:
                        try:
                            await api.chat.completions.create(
                                model="granite-8b", messages=[{"role": "user", "content": "hi"}]
                            )
                        except (openai.APIConnectionError, openai.APIStatusError):
                            failed += 1
                            continue
                        answered.append(time.monotonic())

            async def traffic() -> None:
                nonlocal killed_at
                stop_at = time.monotonic() + 4.0
                clients = [asyncio.create_task(client(stop_at)) for _ in range(16)]
                await asyncio.sleep(1.5)
                killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                await asyncio.gather(*clients)

            asyncio.run(traffic())
            history.append(requests_counters(url))
            survivors = wait_for_workers(url, 2, restarts=1)
            assert victim not in survivors
            after = asyncio.run(burst(url, "olga", 40))  # the new worker counts too
            assert after.count(200) == 40
            final = settle(url, history)
    ok = len(answered) + 40
    # The kill fell mid-traffic: answers before it and after it.
    assert any(t < killed_at for t in answered) and any(t > killed_at for t in answered)
    counted = final["authorized_calls", "olga"]
    window = sum(1 for t in answered if killed_at - FLUSH_SECONDS - 1.0 <= t <= killed_at)
    assert ok - window <= counted <= ok + failed, (ok, window, failed, counted)
    assert_never_back(history)


def test_counts_survive_a_gateway_restart_and_a_clean_stop_loses_nothing(
    tmp_path: Path, redis: RedisServer
) -> None:
    with running_mock() as mock:
        config = write_config(tmp_path / "maas.yaml", mock.url, redis.url, 30, "restart")
        with workers_gateway(config) as (url, _):
            statuses = asyncio.run(burst(url, "carl", 20))
        assert statuses.count(200) == 20
        # SIGTERM: each worker pushed its last counts before it exited.
        with workers_gateway(config) as (url, _):
            first = requests_counters(url)  # the earlier run's totals at once, not a reset to 0
            statuses = asyncio.run(burst(url, "carl", 20))
            history = [first]
            final = settle(url, history)
    assert first == {("authorized_calls", "carl"): 20}
    assert statuses.count(200) == 10 and statuses.count(429) == 10
    # limited_calls{carl} is a new series in this run: born at zero, then its count.
    assert final == {("authorized_calls", "carl"): 30, ("limited_calls", "carl"): 10}
    assert_never_back(history)


@pytest.mark.parametrize("workers", [2])
def test_operator_listener_is_one_for_the_whole_gateway(
    tmp_path: Path, redis: RedisServer, workers: int
) -> None:
    """/metrics is served by the supervisor only: the API port answers 404 for it."""
    with running_mock() as mock:
        config = write_config(tmp_path / "maas.yaml", mock.url, redis.url, 5, "one")
        with workers_gateway(config, workers) as (url, _):
            assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404
            scrape = httpx.get(f"{url.operator}/metrics", timeout=10)
            assert scrape.status_code == 200
            assert "limitador_up 1" in scrape.text
            assert "datastore_partitioned 0" in scrape.text


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, redis: RedisServer) -> None:
    """No orphan keeps serving the port after a SIGKILL of the supervisor."""
    with running_mock() as mock:
        config = write_config(tmp_path / "maas.yaml", mock.url, redis.url, 5, "orphans")
        port, operator_port = free_port(), free_port()
        process = subprocess.Popen(
            [*gateway_command(config, port, operator_port), "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(operator_port, process=process)
            url = GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")
            pids = wait_for_workers(url, 2)
        finally:
            process.kill()
            process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids)
