"""Real servers for the gateway tests: mock model and gateway in background threads or processes.

Servers run in their own event-loop thread, so synchronous test code (the
official `openai` client) and async tests both talk to them over real TCP.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from maas_metrics.config import Config, hash_key, parse_config
from maas_metrics.gateway import Gateway, build_server
from maas_metrics.simulate.mock_model import MockModelServer, start_server
from tests.servers import free_port, wait_for_port

T = TypeVar("T")

# Users of the test config: name -> (groups, secret). Tiers follow the reference limits.
USERS: dict[str, tuple[list[str], str]] = {
    "alice": (["system:authenticated"], "sk-test-alice"),
    "bob": (["system:authenticated"], "sk-test-bob"),
    "carol": (["system:authenticated"], "sk-test-carol"),
    "dave": (["system:authenticated", "premium-users"], "sk-test-dave"),
    "frank": (["system:authenticated", "enterprise-users"], "sk-test-frank"),
    "nobody": (["contractors"], "sk-test-nobody"),  # in no tier: 403
}
TIER_OF = {
    "alice": "free",
    "bob": "free",
    "carol": "free",
    "dave": "premium",
    "frank": "enterprise",
}
MODELS = ("granite-8b", "llama-3-8b", "mistral-7b")
REQUESTS_NS = "maas/requests"
TOKENS_NS = "maas/tokens"


def secret(user: str) -> str:
    return USERS[user][1]


def make_config(
    upstream: str,
    *,
    storage: str = "memory",
    on_failure: str = "deny",
    extra_models: dict[str, str] | None = None,
    extra_users: dict[str, tuple[list[str], str]] | None = None,
    max_body_bytes: int = 1_048_576,
    timeout_seconds: float = 10.0,
    metering: dict[str, Any] | None = None,
) -> Config:
    """The test config: free 5 req/120 s + 100 tokens/60 s, premium 20 + 50,000, enterprise 50 + 100,000."""
    users = {**USERS, **(extra_users or {})}
    models = [{"name": name, "upstream": upstream} for name in MODELS]
    models += [{"name": n, "upstream": u} for n, u in (extra_models or {}).items()]
    return parse_config(
        {
            "tiers": [
                {
                    "name": "free",
                    "level": 0,
                    "groups": ["system:authenticated"],
                    "price_per_hit": 0.005,
                    "request_limit": {"max": 5, "window_seconds": 120},
                    "token_limit": {"max": 100, "window_seconds": 60},
                },
                {
                    "name": "premium",
                    "level": 1,
                    "groups": ["premium-users"],
                    "price_per_hit": 0.008,
                    "request_limit": {"max": 20, "window_seconds": 120},
                    "token_limit": {"max": 50_000, "window_seconds": 60},
                },
                {
                    "name": "enterprise",
                    "level": 2,
                    "groups": ["enterprise-users"],
                    "price_per_hit": 0.01,
                    "request_limit": {"max": 50, "window_seconds": 120},
                    "token_limit": {"max": 100_000, "window_seconds": 60},
                },
            ],
            "models": models,
            "api_keys": [
                {"user": user, "groups": groups, "sha256": hash_key(key)}
                for user, (groups, key) in users.items()
            ],
            "storage": {"url": storage, "on_failure": on_failure},
            "gateway": {
                "max_body_bytes": max_body_bytes,
                "upstream_timeout_seconds": timeout_seconds,
                "operator": {"port": 0},  # any free port; `GatewayURL.operator` says which
                "metering": metering or {},
            },
        }
    )


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True))
    return path


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class RunningMock:
    """The project's mock model serving from a `LoopThread`; `url` is its OpenAI base URL."""

    def __init__(self, server: MockModelServer, thread: LoopThread) -> None:
        self.server = server
        self.thread = thread
        self.url = server.url

    def stop(self) -> None:
        """Stop listening and cut every open connection (an upstream that dies mid-answer)."""
        self.thread.run(self.server.close())


@contextmanager
def running_mock(latency_ms: float = 0.0) -> Iterator[RunningMock]:
    """The project's mock model on a free port (`.url` ends in /v1)."""
    thread = LoopThread()
    server = thread.run(start_server("127.0.0.1", 0, latency_ms))
    try:
        yield RunningMock(server, thread)
    finally:
        thread.run(server.close())
        thread.close()


class GatewayURL(str):
    """The API base URL; `.operator` is the operator listener's (`/metrics`, `/healthz`)."""

    operator: str

    def __new__(cls, api: str, operator: str) -> GatewayURL:
        url = super().__new__(cls, api)
        url.operator = operator
        return url


@contextmanager
def running_gateway(config: Config) -> Iterator[GatewayURL]:
    """The gateway (uvicorn, as in production) in a thread on free ports; yields its base URL."""
    with running_gateway_object(config) as (url, _):
        yield url


@contextmanager
def running_gateway_object(config: Config) -> Iterator[tuple[GatewayURL, Gateway]]:
    """As `running_gateway`, also yielding the `Gateway` object (to look at its background work)."""
    port = free_port()
    server = build_server(config, "127.0.0.1", port, operator_port=0)
    thread = LoopThread()
    serving = thread.submit(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
            raise RuntimeError("gateway stopped before it started")
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not start")
        time.sleep(0.01)
    app = server.config.app
    assert isinstance(app, Starlette)
    try:
        url = GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{server.operator_port}")
        yield url, app.state.gateway
    finally:
        server.should_exit = True
        serving.result(timeout=15)
        thread.close()


@contextmanager
def gateway_process(config_path: Path, port: int | None = None) -> Iterator[GatewayURL]:
    """`maas-metrics gateway` as its own process, exactly as a user starts it; yields its base URL."""
    port = port or free_port()
    operator_port = free_port()
    command = [
        str(Path(sys.executable).parent / "maas-metrics"),
        "gateway",
        "--config",
        str(config_path),
        "--port",
        str(port),
        "--operator-port",
        str(operator_port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process=process)
        wait_for_port(operator_port, process=process)
        yield GatewayURL(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


# --- reading /metrics with Prometheus' own parser ----------------------------------------

Series = tuple[str, frozenset[tuple[str, str]]]


def scrape_text(base_url: str) -> str:
    """`/metrics` of the gateway at `base_url` (its operator listener when it is a `GatewayURL`)."""
    response = httpx.get(f"{getattr(base_url, 'operator', base_url)}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def parse_metrics(text: str) -> dict[Series, float]:
    """(family name, labels) -> value. Family names drop a `_total` suffix, as the parser does."""
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(family.name, frozenset(sample.labels.items()))] = sample.value
    return out


def scrape(base_url: str) -> dict[Series, float]:
    """Every series with its true value: a first scrape reads new series at 0 (they are born at
    zero, see `telemetry.metrics.Family`), the second shows their counts."""
    scrape_text(base_url)
    return parse_metrics(scrape_text(base_url))


def usage_key(
    name: str, namespace: str, user: str, model: str, tier: str | None = None, **extra: str
) -> Series:
    labels = {
        "limitador_namespace": namespace,
        "user": user,
        "tier": tier or TIER_OF[user],
        "model": model,
        **extra,
    }
    return (name, frozenset(labels.items()))


def counters(metrics: dict[Series, float]) -> dict[Series, float]:
    """Only the usage counters (Limitador's three and the maas_ token counters)."""
    names = {
        "authorized_hits",
        "authorized_calls",
        "limited_calls",
        "maas_prompt_tokens",
        "maas_completion_tokens",
        "maas_answers_without_usage",
        "maas_stream_events_too_large",
    }
    return {key: value for key, value in metrics.items() if key[0] in names}
