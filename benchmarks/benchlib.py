"""What every benchmark shares: machine facts, load average, tables and BENCHMARKS.md sections.

Benchmarks run as scripts (`.venv/bin/python benchmarks/NAME.py`), so this
module is imported flat (`import benchlib`); it puts the repository root on
`sys.path` so the scripts can reuse `tests.servers` (free ports, real Redis).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer, free_port, wait_for_port  # noqa: E402  (needs ROOT on sys.path)

__all__ = ["RedisServer", "free_port", "wait_for_port"]

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
    console.print(f"[green]updated section [bold]{key}[/bold] of {path.relative_to(ROOT)}")


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
