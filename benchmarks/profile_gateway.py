"""Where the gateway's CPU goes on its hot path (POST /v1/chat/completions), sampled with py-spy.

Starts the mock model and the gateway (memory store, both policies on, as in
bench_gateway_overhead.py), drives it with wrk at concurrency 16, and samples
the gateway process with py-spy. Samples are attributed to the innermost
frame's package (the gateway's own code, the limiter, telemetry, Starlette,
uvicorn, aiohttp, the event loop) and the top functions by own time listed.

py-spy is a profiler, not a project dependency: install it into the venv
first (`.venv/bin/pip install py-spy`); it needs ptrace rights (root here).
Run: .venv/bin/python benchmarks/profile_gateway.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from rich.progress import Progress

import bench_gateway_overhead as overhead
import benchlib
from wrkload import WrkResult, run_wrk

# Innermost-frame file path fragment -> component, first match wins.
COMPONENTS = (
    ("maas_metrics/gateway/", "maas-metrics gateway code"),
    ("maas_metrics/limiter/", "maas-metrics limiter"),
    ("redis/", "redis-py (Redis client)"),
    ("hiredis", "redis-py (Redis client)"),
    ("maas_metrics/telemetry/", "maas-metrics telemetry"),
    ("maas_metrics/", "maas-metrics other"),
    ("starlette/", "Starlette (routing, requests, responses)"),
    ("uvicorn/", "uvicorn (HTTP server, socket writes)"),
    ("aiohttp/", "aiohttp (upstream client, socket writes)"),
    ("multidict/", "aiohttp (upstream client, socket writes)"),
    ("yarl/", "aiohttp (upstream client, socket writes)"),
    ("orjson", "orjson"),
    ("asyncio/streams.py", "redis-py (Redis client)"),  # only redis-py uses asyncio streams here
    ("asyncio/", "event loop (uvloop, asyncio)"),
    ("uvloop/", "event loop (uvloop, asyncio)"),
)


def component(frame: str) -> str:
    for fragment, name in COMPONENTS:
        if fragment in frame:
            return name
    return "other"


def profile(
    seconds: float, workdir: Path, storage: str
) -> tuple[Counter[str], Counter[str], int, WrkResult]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("error: py-spy is not installed; run: .venv/bin/pip install py-spy")
    mock = benchlib.mock_model(workdir)
    redis = benchlib.RedisServer(workdir / "redis") if storage == "redis" else None
    url = "memory" if redis is None else redis.url
    gateway = overhead.gateway_service("gateway", workdir, f"{mock.url}/v1", url)
    raw = workdir / "profile.txt"
    result: list[WrkResult] = []
    try:
        if redis is not None:
            redis.workdir.mkdir()
            redis.start()
        mock.start()
        gateway.start()
        endpoint = gateway.url + "/v1/chat/completions"
        run_wrk(endpoint, overhead.script(overhead.BENCH_KEY), 16, 2)  # warm-up
        assert gateway.process is not None
        load = threading.Thread(
            target=lambda: result.append(
                run_wrk(endpoint, overhead.script(overhead.BENCH_KEY), 16, seconds + 2)
            )
        )
        load.start()
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(gateway.process.pid),
                "--duration",
                f"{seconds:g}",
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(raw),
            ],
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        gateway.stop()
        mock.stop()
        if redis is not None:
            redis.stop()
    by_component: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        total += int(count)
        by_component[component(leaf)] += int(count)
        by_function[leaf] += int(count)
    return by_component, by_function, total, result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--storage", choices=("memory", "redis"), default="memory")
    parser.add_argument("--out", help="results file (default: BENCHMARKS.md)")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/profile_gateway.py"
    if args.storage != "memory":
        command += f" --storage {args.storage}"
    if args.out:
        command += f" --out {args.out}"
    info = benchlib.RunInfo.begin(command)
    with (
        tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp,
        Progress(console=benchlib.console) as progress,
    ):
        task = progress.add_task("profiling the gateway under wrk -c16", total=None)
        by_component, by_function, total, load = profile(args.seconds, Path(tmp), args.storage)
        progress.update(task, total=1, completed=1)
    info.end()
    own = (
        100 * sum(n for name, n in by_component.items() if name.startswith("maas-metrics")) / total
    )
    headers = ["component (innermost frame)", "share of samples"]
    rows = [[name, f"{100 * n / total:.1f}%"] for name, n in by_component.most_common()]
    benchlib.print_table(f"Gateway CPU by component ({total:,} samples)", headers, rows)
    top_headers = ["function (own time)", "share"]
    top_rows = [[f"`{fn}`", f"{100 * n / total:.1f}%"] for fn, n in by_function.most_common(12)]
    benchlib.print_table("Top functions", top_headers, top_rows)
    body = (
        f"## Profile of the gateway's hot path ({args.storage} store)\n\n"
        f"py-spy sampling the gateway process (250 Hz, {args.seconds:g} s, {total:,} samples) "
        "while `wrk -c16` POSTs `/v1/chat/completions` through it to the mock model "
        f"({args.storage} store, "
        f"both policies on; {load.rps:,.0f} req/s during the profile, slowed by the sampling). "
        "Each sample is attributed to its innermost Python frame, so time spent in C (socket "
        "writes, the HTTP parsers, uvloop) shows under the Python function that called it.\n\n"
        + benchlib.markdown_table(headers, rows)
        + f"\nmaas-metrics' own code (gateway, limiter, telemetry) holds {own:.0f}% of the samples; "
        "the rest is the HTTP server, the web framework, the upstream HTTP client, the event "
        "loop and the kernel's socket work under them.\n\n"
        + benchlib.markdown_table(top_headers, top_rows)
        + "\n"
        + info.markdown()
    )
    if args.out:
        benchlib.update_section(f"profile-{args.storage}", body, path=benchlib.ROOT / args.out)
    else:
        benchlib.update_section("profile", body)


if __name__ == "__main__":
    main()
