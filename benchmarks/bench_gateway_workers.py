"""Gateway requests/s with `--workers 2` against one worker, counters in Redis, at c=16.

Targets run side by side against ONE mock model process and are measured
INTERLEAVED (every round visits every target, in a rotated order) with
Debian's `wrk` (one thread, keep-alive connections, POST
/v1/chat/completions, limits far above the load so the admitted path is
measured). The figure of each target is the median over rounds; the ratio
is workers=2 over workers=1 on Redis. The machine's cores are shared with
wrk, the mock model and redis-server, so the ratio is this machine's, not a
per-core scaling figure.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_workers.py [--rounds 5 --seconds 5]
(results go to benchmarks/results/scale-rest.md)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml
from rich.progress import Progress

import benchlib
from bench_gateway_overhead import BENCH_KEY, gateway_config, maas_cli, script
from services import Service
from wrkload import WrkResult, require_wrk, run_wrk

CONCURRENCY = 16


def gateway(name: str, workdir: Path, upstream: str, storage: str, workers: int) -> Service:
    slug = name.replace(" ", "-").replace("=", "")
    data = gateway_config(upstream, storage)
    data["gateway"] = {"workers": {"metrics_key": f"bench-{slug}"}}
    config = workdir / f"{slug}.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    port, operator = benchlib.free_port(), benchlib.free_port()
    argv = [maas_cli(), "gateway", "--config", str(config), "--port", str(port)]
    argv += ["--operator-port", str(operator), "--workers", str(workers)]
    return Service(name, argv, port, "/healthz", workdir / f"{slug}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--out", default=str(benchlib.RESULTS / "scale-rest.md"))
    args = parser.parse_args()
    require_wrk()
    command = (
        "PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_workers.py "
        f"--rounds {args.rounds} --seconds {args.seconds:g}"
    )
    info = benchlib.RunInfo.begin(command)
    runs: dict[str, list[WrkResult]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        workdir = Path(tmp)
        redis = benchlib.RedisServer(workdir / "redis")
        redis.workdir.mkdir()
        mock_port = benchlib.free_port()
        mock = Service(
            "mock",
            [maas_cli(), "mock-model", "--port", str(mock_port)],
            mock_port,
            "/healthz",
            workdir / "mock.log",
        )
        upstream = f"{mock.url}/v1"
        services = {
            "redis, workers=1": gateway("redis workers=1", workdir, upstream, redis.url, 1),
            "redis, workers=2": gateway("redis workers=2", workdir, upstream, redis.url, 2),
            "memory, workers=1": gateway("memory workers=1", workdir, upstream, "memory", 1),
        }
        targets = list(services)
        runs = {t: [] for t in targets}
        started: list[Service] = []
        try:
            redis.start()
            mock.start()
            started.append(mock)
            for service in services.values():
                service.start()
                started.append(service)
            with Progress(console=benchlib.console) as progress:
                for target in targets:  # warm-up (and every worker of a target up)
                    result = run_wrk(
                        services[target].url + "/v1/chat/completions", script(BENCH_KEY), 16, 2
                    )
                    if result.non_2xx or result.socket_errors or not result.requests:
                        raise SystemExit(f"error: {target} failed its warm-up: {result}")
                task = progress.add_task("measure", total=args.rounds * len(targets))
                for round_no in range(args.rounds):
                    order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
                    for target in order:
                        progress.update(task, description=f"round {round_no + 1}: {target}")
                        result = run_wrk(
                            services[target].url + "/v1/chat/completions",
                            script(BENCH_KEY),
                            CONCURRENCY,
                            args.seconds,
                        )
                        runs[target].append(result)
                        progress.advance(task)
        finally:
            for service in reversed(started):
                service.stop()
            redis.stop()
    info.end()
    rps = {t: statistics.median(r.rps for r in runs[t]) for t in targets}
    base = rps["redis, workers=1"]
    rows = [
        [
            t,
            benchlib.fmt_rate(rps[t]),
            f"{rps[t] / base:.2f}x",
            f"{statistics.median(r.p50_us for r in runs[t]) / 1000:.1f} ms",
            f"{statistics.median(r.p99_us for r in runs[t]) / 1000:.1f} ms",
            str(sum(r.non_2xx + r.socket_errors for r in runs[t])),
        ]
        for t in targets
    ]
    headers = [
        "target",
        f"req/s at c={CONCURRENCY} (median)",
        "vs redis workers=1",
        "p50",
        "p99",
        "failures",
    ]
    benchlib.print_table("gateway --workers", headers, rows)
    body = (
        f"## `maas-metrics gateway --workers 2` vs 1 (Redis), c={CONCURRENCY}\n\n"
        f"Median of {args.rounds} interleaved `wrk` runs of {args.seconds:g} s per target "
        "(one wrk thread, keep-alive, POST /v1/chat/completions with both policies and all "
        "metrics on, limits far above the load), all against one mock model process and one "
        "redis-server on this machine. `memory, workers=1` is the single-process reference.\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    benchlib.update_section("workers", body, Path(args.out).resolve())


if __name__ == "__main__":
    main()
