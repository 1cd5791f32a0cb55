"""`maas-metrics demo` as a user runs it: it serves, and SIGTERM or Ctrl-C leaves no process behind.

`DemoProcess` is also what the web dashboard tests use to get a live stack
(real mock model, gateway, traffic, Prometheus and web dashboard).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from maas_metrics.demo.ports import port_is_free
from maas_metrics.demo.stack import PORT_OFFSETS
from tests.fixtures import CLI, DEMO_KEYS
from tests.fixtures import EXAMPLE_CONFIG as EXAMPLE_CONFIG  # re-exported: the web tests import it
from tests.fixtures import ROOT as ROOT

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def cli() -> list[str]:
    return [CLI]


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    start_ticks: int
    command: str


def proc_info(pid: int) -> ProcInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields after "(comm)": state ppid pgrp session tty tpgid flags ... starttime is the 20th.
    return ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]), command)


def all_processes() -> list[ProcInfo]:
    infos = (proc_info(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [i for i in infos if i is not None]


def descendants(root: int) -> list[ProcInfo]:
    """Every process below `root` (children in other sessions included: ppid is kept)."""
    procs = all_processes()
    found: list[ProcInfo] = []
    frontier = {root}
    while frontier:
        children = [p for p in procs if p.ppid in frontier]
        found.extend(children)
        frontier = {p.pid for p in children}
    return found


def survivors(recorded: list[ProcInfo]) -> list[ProcInfo]:
    """Recorded processes still alive (same pid and start time, not a zombie) or still in their groups."""
    alive = []
    for old in recorded:
        now = proc_info(old.pid)
        if now is not None and now.start_ticks == old.start_ticks and now.state != "Z":
            alive.append(now)
    groups = {p.pgid for p in recorded}
    alive.extend(
        p for p in all_processes() if p.pgid in groups and p.state != "Z" and p not in alive
    )
    return alive


def demo_port_base() -> int:
    """A block of free ports below Linux's ephemeral range (32768-60999).

    Ports there are never handed to another process's `bind(0)` or outgoing
    connection while the demo starts its children one after the other; a block
    from `free_port()` (inside that range) was, under a loaded parallel run.
    """
    while True:
        base = random.randrange(20_000, 32_000, 8)
        if all(port_is_free(base + offset) for offset in PORT_OFFSETS.values()):
            return base


class DemoProcess:
    """`maas-metrics demo` in a subprocess, with its output collected by a thread."""

    def __init__(self, workdir: Path, rate: float = 6.0, *, bundled_examples: bool = False) -> None:
        """`bundled_examples`: no --config/--keys, run from `workdir` (not the repository)."""
        self.grafana_json = workdir / "grafana-dashboard.json"
        base = demo_port_base()
        files = (
            [] if bundled_examples else ["--config", str(EXAMPLE_CONFIG), "--keys", str(DEMO_KEYS)]
        )
        self.process = subprocess.Popen(
            [
                *cli(),
                "demo",
                *files,
                "--rate",
                str(rate),
                "--port-base",
                str(base),
                "--grafana-json",
                str(self.grafana_json),
            ],
            cwd=workdir if bundled_examples else ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._running = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Press Ctrl-C to stop everything" in line:
                self._running.set()
        self._running.set()  # EOF: let a waiter see the exit

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def address(self, name: str) -> str:
        for line in self.lines:
            match = re.match(rf"\s+{name}\s+(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"the demo printed no {name} line:\n{self.output}")

    def wait_running(self) -> None:
        if not self._running.wait(START_TIMEOUT) or self.process.poll() is not None:
            self.stop(signal.SIGTERM)
            raise AssertionError(f"the demo did not start:\n{self.output}")

    @property
    def dashboard_url(self) -> str:
        return self.address("Dashboard")

    @property
    def prometheus_url(self) -> str:
        return self.address("Prometheus")

    @property
    def gateway_url(self) -> str:
        return self.address("Gateway").removesuffix("/v1")

    @property
    def ledger_db(self) -> Path:
        """The SQLite file of the ledger the demo printed (`sqlite:///<path>`)."""
        return Path(self.address("Ledger").removeprefix("sqlite:///"))

    @property
    def config_path(self) -> Path:
        match = re.search(r"report --source ledger -c (\S+)", self.output)
        assert match, f"the demo printed no ledger report command:\n{self.output}"
        return Path(match.group(1))

    def stop(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for child in descendants(self.process.pid):
                os.killpg(child.pgid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the demo did not stop on {sig.name}:\n{self.output}") from None
        self._reader.join(timeout=10)
        return code


def check_demo_ledger(demo: DemoProcess) -> None:
    """The demo's ledger fills with the traffic, and its printed report command reads it exactly.

    Truth: the rows themselves, summed with plain SQL over the same (from, to] range.
    """
    db = demo.ledger_db
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline:
        if db.is_file():
            with sqlite3.connect(db) as conn:
                count = conn.execute("SELECT count(*) FROM ledger_records").fetchone()[0]
            if count >= 5:
                break
        time.sleep(0.5)
    assert count >= 5, f"the demo's ledger holds {count} rows after 60 s of traffic"
    # A closed range well behind the writer's flush interval (200 ms), ending after the rows
    # counted above (they may all be younger than 2 s on a slow machine).
    time.sleep(3)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    start = end - timedelta(hours=1)
    time.sleep(1)
    result = subprocess.run(
        [*cli(), "report", "--source", "ledger", "-c", str(demo.config_path),
         "--from", start.isoformat(), "--to", end.isoformat(), "--by", "user",
         "--resolution", "1s", "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    total = json.loads(result.stdout)["total"]
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    with sqlite3.connect(db) as conn:
        rows, tokens, limited = conn.execute(
            "SELECT count(*), coalesce(sum(total_tokens), 0), "
            "coalesce(sum(outcome = 'rate_limited'), 0) FROM ledger_records "
            "WHERE ended_ms > ? AND ended_ms <= ?",
            (lo, hi),
        ).fetchone()
    assert rows > 0
    assert total["tokens"] == tokens
    assert total["limited_calls"] == limited


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_then_stops_every_child(sig: signal.Signals, tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path)
    try:
        demo.wait_running()
        children = descendants(demo.process.pid)
        commands = " ".join(c.command for c in children)
        for part in ("mock-model", "gateway", "traffic", "serve", "prometheus"):
            assert part in commands, f"no {part} process below the demo: {commands}"
        # It is really serving: every URL it printed answers.
        assert httpx.get(f"{demo.gateway_url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{demo.prometheus_url}/-/ready", timeout=10).status_code == 200
        assert httpx.get(demo.dashboard_url, timeout=10).status_code == 200
        assert demo.grafana_json.is_file()
        # Prometheus scrapes the gateway's operator listener; the API listener has no /metrics.
        up = httpx.get(
            f"{demo.prometheus_url}/api/v1/query", params={"query": "up"}, timeout=10
        ).json()["data"]["result"]
        assert [(r["metric"]["job"], r["value"][1]) for r in up] == [("maas-gateway", "1")]
        assert httpx.get(f"{demo.gateway_url}/metrics", timeout=10).status_code == 404
        if sig is signal.SIGTERM:
            check_demo_ledger(demo)
        children = descendants(demo.process.pid)  # again: nothing started late is missed
    finally:
        code = demo.stop(sig)
    assert code == 0, demo.output
    assert f"{sig.name} received" in demo.output
    left = survivors(children)
    assert not left, f"processes survived the demo: {left}"
    # The ports are free again (nothing listens where the demo served).
    with pytest.raises(httpx.ConnectError):
        httpx.get(demo.dashboard_url, timeout=5)


def test_demo_without_prometheus_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus binary on PATH
    result = subprocess.run(
        [*cli(), "demo", "--config", str(EXAMPLE_CONFIG), "--keys", str(DEMO_KEYS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: `prometheus` is not installed")
    assert "apt-get install prometheus" in result.stderr
    assert "https://prometheus.io/download/" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_rejects_missing_keys_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [*cli(), "demo", "--config", str(EXAMPLE_CONFIG), "--keys", str(tmp_path / "nope.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: --keys {tmp_path / 'nope.yaml'}: no such file"


def test_demo_runs_from_any_directory_with_the_bundled_examples(tmp_path: Path) -> None:
    """No examples/ in the working directory: the config and keys shipped in the package serve."""
    assert not (tmp_path / "examples").exists()
    demo = DemoProcess(tmp_path, bundled_examples=True)
    try:
        demo.wait_running()
        assert httpx.get(f"{demo.gateway_url}/healthz", timeout=10).status_code == 200
        secret = next(iter(yaml.safe_load(DEMO_KEYS.read_text())["keys"].values()))
        headers = {"Authorization": f"Bearer {secret}"}
        models = httpx.get(f"{demo.gateway_url}/v1/models", headers=headers, timeout=10)
    finally:
        code = demo.stop(signal.SIGTERM)
    assert code == 0, demo.output
    expected = {m["name"] for m in yaml.safe_load(EXAMPLE_CONFIG.read_text())["models"]}
    assert {m["id"] for m in models.json()["data"]} == expected


def test_demo_help_from_another_directory_names_the_bundled_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [*cli(), "demo", "--help"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "bundled examples/maas.yaml" in " ".join(result.stdout.split())
