"""Stopping without losing counts: with a scrape wait, SIGTERM waits for Prometheus's last scrape."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas_metrics.config import parse_config
from tests.gateway_harness import (
    TOKENS_NS,
    GatewayURL,
    RunningMock,
    make_config,
    parse_metrics,
    running_mock,
    secret,
    usage_key,
    write_config,
)
from tests.servers import free_port, wait_for_port


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


def start_gateway(
    mock: RunningMock, tmp_path: Path, wait_seconds: float
) -> tuple[subprocess.Popen[bytes], GatewayURL]:
    data: dict[str, Any] = make_config(mock.url).model_dump(mode="json")
    data["gateway"]["shutdown_scrape_wait_seconds"] = wait_seconds
    path = write_config(parse_config(data), tmp_path / "maas.yaml")
    port, operator_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "maas-metrics"),
            "gateway",
            "--config",
            str(path),
            "--port",
            str(port),
            "--operator-port",
            str(operator_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process)
    wait_for_port(operator_port, process=process)
    return process, GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")


def chat(base: str, user: str = "frank") -> int:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret(user)}"},
        json={"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["total_tokens"])


def test_sigterm_waits_for_a_scrape_that_sees_every_count(
    mock: RunningMock, tmp_path: Path
) -> None:
    process, base = start_gateway(mock, tmp_path, wait_seconds=60)
    try:
        tokens = sum(chat(base) for _ in range(5))
        process.send_signal(signal.SIGTERM)
        # Still serving while it waits: a request after the signal is served and counted too.
        tokens += chat(base)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.5)
        key = usage_key("authorized_hits", TOKENS_NS, "frank", "granite-8b")
        # The series is new, so it is born at 0: the first scrape reads 0 and the gateway waits on.
        text = httpx.get(f"{base.operator}/metrics", timeout=10).text
        assert parse_metrics(text)[key] == 0
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.5)
        text = httpx.get(f"{base.operator}/metrics", timeout=10).text  # Prometheus's final scrape
        assert parse_metrics(text)[key] == tokens
        process.wait(timeout=15)  # stops soon after that scrape, long before the 60 s wait
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_without_a_scrape_it_stops_when_the_wait_is_over(mock: RunningMock, tmp_path: Path) -> None:
    process, base = start_gateway(mock, tmp_path, wait_seconds=2)
    try:
        chat(base)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_second_signal_stops_at_once(mock: RunningMock, tmp_path: Path) -> None:
    process, base = start_gateway(mock, tmp_path, wait_seconds=600)
    try:
        chat(base)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
