"""Server processes for benchmarks: start, time to first healthy answer, resident memory, stop.

Each service runs in its own session (process group) so stopping it also stops
any worker processes it forked, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


class Service:
    """One server process listening on 127.0.0.1:`port`, healthy when `health_path` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        health_path: str,
        log_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.health_path = health_path
        self.log_file = log_file
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> float:
        """Start and poll the health path every 5 ms; return seconds from spawn to the first 200."""
        log = self.log_file.open("ab")
        env = {**os.environ, **(self.env or {})}
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        deadline = started + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}; log: {self.log_file}"
                    )
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self.startup_seconds
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        self.stop()
        raise TimeoutError(f"{self.name} not healthy after {timeout}s; log: {self.log_file}")

    def rss_bytes(self) -> int:
        """Resident memory of the process and all its descendants (workers included)."""
        if self.process is None:
            return 0
        return sum(_rss(pid) for pid in _tree(self.process.pid))

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text().split()
            out += [int(p) for p in text]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids = [pid]
    i = 0
    while i < len(pids):
        pids += _children(pids[i])
        i += 1
    return pids


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
