"""What every benchmark shares: machine facts, load average, tables, BENCHMARKS.md sections,
and the side-by-side harness (a mock model, servers started and stopped together, rounds
that visit every side in rotated order, CPU time per process).

Benchmarks run as scripts (`.venv/bin/python benchmarks/NAME.py`), so this
module is imported flat (`import benchlib`); it puts the repository root on
`sys.path` so the scripts can reuse `tests.servers` (free ports, real Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import uvloop
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from maas_metrics.simulate.loadgen import run_load
from services import Service
from wrkload import WrkResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer, free_port, wait_for_port  # noqa: E402  (needs ROOT on sys.path)

__all__ = ["RedisServer", "free_port", "wait_for_port"]

T = TypeVar("T")

console = Console()

_HEADER = """# Benchmarks

Every figure below was measured on the project's development machine and is
reproduced by the command quoted with it. The machine has **2 cores** shared
with other engineers' work, so each section notes the 1-minute load average
when it was measured; compare figures within a section (they were measured
interleaved in one run), not across sections or machines.

"""


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass
class RunInfo:
    """When and where a benchmark ran, with the load average before and after it."""

    command: str
    started: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] | None = None

    @classmethod
    def begin(cls, command: str) -> RunInfo:
        return cls(
            command=command,
            started=time.strftime("%Y-%m-%d %H:%M %Z"),
            load_before=load_average(),
        )

    def end(self) -> None:
        self.load_after = load_average()

    def markdown(self) -> str:
        after = self.load_after or load_average()
        cores = os.cpu_count() or 0
        return (
            f"Measured {self.started} on {cores} cores ({cpu_model()}), Python "
            f"{platform.python_version()}; load average (1/5/15 min) "
            f"{_fmt_load(self.load_before)} before, {_fmt_load(after)} after.\n\n"
            f"Reproduce: `{self.command}`\n"
        )


def _fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub table; columns after the first are right-aligned (they hold numbers)."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def update_section(key: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section between `<!-- BEGIN key -->` and `<!-- END key -->`.

    Each benchmark owns one section, so running one never disturbs the others.
    """
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text, encoding="utf-8")
    where = path.resolve()
    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    console.print(f"[green]updated section [bold]{key}[/bold] of {shown}")


def fmt_rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- side by side: servers measured interleaved -------------------------------------------------

CHAT_PATH = "/v1/chat/completions"


def maas_cli() -> str:
    """The `maas-metrics` command of this interpreter's environment."""
    return str(Path(sys.executable).parent / "maas-metrics")


def mock_model(workdir: Path, health_path: str = "/healthz") -> Service:
    """The project's mock model on a free port, with no added latency: only the gateways' cost shows."""
    port = free_port()
    argv = [maas_cli(), "mock-model", "--port", str(port)]
    return Service("mock", argv, port, health_path, workdir / "mock.log")


@contextmanager
def running(*services: Service) -> Iterator[None]:
    """Start `services` in order; stop the ones that started, in reverse, whatever happens."""
    started: list[Service] = []
    try:
        for service in services:
            service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    """`items` rotated by `round_no`, so every side takes every position as the rounds go on."""
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (utime and stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_cpu(service: Service) -> float:
    """`cpu_seconds` of a started service's process."""
    assert service.process is not None
    return cpu_seconds(service.process.pid)


def wrk_rounds(
    servers: Mapping[str, Service],
    script: str,
    rounds: int,
    seconds: float,
    concurrencies: Sequence[int] = (1, 16),
    path: str = CHAT_PATH,
) -> dict[tuple[str, int], list[WrkResult]]:
    """wrk runs of every server at every concurrency, interleaved: (name, concurrency) -> runs.

    Each server gets a 2 s warm-up at c=16 first; each round visits the concurrencies in
    turn and, at each, every server in that round's rotated order. A failed request ends
    the benchmark (a figure with errors in it measures something else).
    """
    results: dict[tuple[str, int], list[WrkResult]] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("A/B", total=rounds * len(concurrencies) * len(servers))
        for server in servers.values():
            run_wrk(server.url + path, script, 16, 2)  # warm-up
        for round_no in range(rounds):
            order = rotated(list(servers), round_no)
            for concurrency in concurrencies:
                for name in order:
                    progress.update(task, description=f"{name}, c={concurrency}")
                    result = run_wrk(servers[name].url + path, script, concurrency, seconds)
                    if result.non_2xx or result.socket_errors:
                        raise SystemExit(f"error: {name} failed requests: {result}")
                    results.setdefault((name, concurrency), []).append(result)
                    progress.advance(task)
    return results


@dataclass
class LoadRuns:
    """Requests/s and CPU seconds per request of one server, one run each per round."""

    rates: list[float]
    cpu_per_request: list[float]


def loadgen_rounds(
    servers: Mapping[str, Service],
    bodies: Mapping[str, bytes],
    headers: dict[str, str],
    rounds: int,
    seconds: float,
    concurrency: int = 16,
) -> dict[tuple[str, str], LoadRuns]:
    """The in-process load generator on every server, interleaved: (body kind, name) -> runs.

    Each round visits the bodies in turn and, for each, every server in that round's
    rotated order; the server's own CPU time (from /proc) is read around each run.
    """
    runs: dict[tuple[str, str], LoadRuns] = {}
    for round_no in range(rounds):
        order = rotated(list(servers), round_no)
        for kind, body in bodies.items():
            for name in order:
                server = servers[name]
                before = service_cpu(server)
                url = server.url + CHAT_PATH
                result = uvloop.run(run_load(url, concurrency, seconds, body, headers))
                used = service_cpu(server) - before
                assert result.errors == 0, (name, kind, result.summary())
                cell = runs.setdefault((kind, name), LoadRuns([], []))
                cell.rates.append(result.rate)
                cell.cpu_per_request.append(used / result.requests)
    return runs


async def calls_per_second(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int = 16
) -> float:
    """`call` awaited by `concurrency` callers in a loop for `seconds` (deadline checked every 32)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            for _ in range(32):
                await call()
            done += 32

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def base_tree_parser(doc: str | None, rounds: int) -> argparse.ArgumentParser:
    """Options of a script that measures a base commit's source tree (`--base`) against this one."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="source tree of the base commit")
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser


def base_tree_command(commit: str, directory: str, script: str, options: str) -> str:
    """The command that reproduces a base-tree A/B: unpack `commit` into `directory`, run `script`."""
    return (
        f"mkdir -p {directory} && git archive {commit} | tar -x -C {directory} && "
        f"PYTHONPATH=src .venv/bin/python benchmarks/{script} --base {directory} {options}"
    )
