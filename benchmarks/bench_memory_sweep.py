"""The in-memory store's expiry sweep: gateway rounds per second by number of live counters, before/after.

Before commit c13ff44, `InMemoryStore._write` rebuilt its whole dict every
4,096 writes to drop expired counters: O(live counters) per 4,096 writes,
so every write got slower as more users were active within a window. The
fix (found with `bench_limiter.py` and this benchmark, applied in c13ff44)
sweeps only after as many writes as there were live counters. This
benchmark measures gateway rounds per second (request `check_and_update` +
token `check` + token `report`, every counter live) for 10k, 100k and 1M
live counters with the store before the fix (read with `git show` into a
temporary copy of the package, never into `src/`) and as it is in `src/`.

Run: .venv/bin/python benchmarks/bench_memory_sweep.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.progress import Progress

import benchlib

FIX_COMMIT = "c13ff44"
MEMORY = "src/maas_metrics/limiter/memory.py"

# Runs in a child process, so each variant imports its own copy of the package.
MEASURE = """
import asyncio, sys, time
from maas_metrics.limiter import InMemoryStore, Limit, RateLimiter
R = Limit("maas/requests", "r", 10**12, 3600)
T = Limit("maas/tokens", "t", 10**12, 3600)
async def main(n, seconds):
    limiter = RateLimiter(InMemoryStore())
    users = [f"user-{i}" for i in range(n)]
    for u in users:  # every counter live
        await limiter.check_and_update(R, u)
        await limiter.report(T, u, 1)
    done, i = 0, 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(256):
            u = users[i % n]; i += 1
            await limiter.check_and_update(R, u)
            await limiter.check(T, u)
            await limiter.report(T, u, 42)
        done += 256
    print(done / (time.perf_counter() - began))
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
"""

SIZES = (10_000, 100_000, 1_000_000)


def before_fix(workdir: Path) -> Path:
    """A copy of the package whose memory store is the one before the fix commit."""
    old = subprocess.run(
        ["git", "-C", str(benchlib.ROOT), "show", f"{FIX_COMMIT}^:{MEMORY}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    target = workdir / "maas_metrics"
    shutil.copytree(
        benchlib.ROOT / "src" / "maas_metrics", target, ignore=shutil.ignore_patterns("__pycache__")
    )
    (target / "limiter" / "memory.py").write_text(old)
    return workdir


def rounds_per_second(pythonpath: Path | None, counters: int, seconds: float) -> float:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(counters), str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    info = benchlib.RunInfo.begin(".venv/bin/python benchmarks/bench_memory_sweep.py")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        variants: dict[str, Path | None] = {
            f"before {FIX_COMMIT}": before_fix(Path(tmp)),
            "src/ now": None,
        }
        results: dict[tuple[str, int], float] = {}
        with Progress(console=benchlib.console) as progress:
            task = progress.add_task("sweep", total=len(variants) * len(SIZES))
            for size in SIZES:
                for name, path in variants.items():  # interleaved
                    progress.update(task, description=f"{name}, {size:,} counters")
                    results[(name, size)] = rounds_per_second(path, size, args.seconds)
                    progress.advance(task)
    info.end()
    before, after = list(variants)
    headers = ["live counters", f"{before} (rounds/s)", f"{after} (rounds/s)", "speed-up"]
    rows = [
        [
            f"{size:,}",
            benchlib.fmt_rate(results[(before, size)]),
            benchlib.fmt_rate(results[(after, size)]),
            f"{results[(after, size)] / results[(before, size)]:.1f}x",
        ]
        for size in SIZES
    ]
    benchlib.print_table("In-memory store: gateway rounds per second", headers, rows)
    body = (
        "## In-memory store: expiry sweep (profiled, fixed; before/after)\n\n"
        "`bench_limiter.py` showed 100k counters costing 2.5x per decision what one hot counter "
        "costs; the cause was `InMemoryStore._write` (`src/maas_metrics/limiter/memory.py`) "
        "rebuilding the dict of all counters every 4,096 writes, O(live counters) each time. "
        f"Commit {FIX_COMMIT} sweeps only after as many writes as there were live counters at the "
        "last sweep (amortised O(1) per write; memory within about twice the live counters). "
        "Gateway rounds per second (request `check_and_update` + token `check` + token "
        "`report`) with every counter live, one process, before and after, interleaved:\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("memory-sweep", body)


if __name__ == "__main__":
    main()
