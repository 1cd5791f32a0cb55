"""Real servers for the tests: free ports, Redis and Prometheus processes on 127.0.0.1."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from maas_metrics.prometheus import PrometheusProcess


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999), for a server a test starts later.

    A port from `bind(0)` lies inside that range, and between handing it out
    and the server binding it, any process's `bind(0)` or outgoing connection
    could take it (seen under a loaded parallel run); ports below the range are
    never handed out that way.
    """
    while True:
        port = random.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for_port(
    port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before port {port} opened"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; run ./test.sh, which installs it")
    return path


class RedisServer:
    """A real `redis-server` on a free port, with no persistence; can be stopped and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = require_binary("redis-server")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def prometheus_holding(
    directory: Path,
    openmetrics: str,
    rules: Callable[[PrometheusProcess], object] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[PrometheusProcess]:
    """A real Prometheus whose TSDB holds `openmetrics` (backfilled with promtool), started;
    `rules(prometheus)` then backfills recording rules into it. Stopped on exit."""
    prometheus = PrometheusProcess(directory, extra_args=tuple(extra_args))
    prometheus.backfill(openmetrics)
    prometheus.start()
    try:
        if rules is not None:
            rules(prometheus)
        yield prometheus
    finally:
        prometheus.stop()
