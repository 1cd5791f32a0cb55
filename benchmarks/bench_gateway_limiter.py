"""Gateway requests/s at c=16 on Redis, side by side with memory and the LiteLLM proxy.

Targets, all against ONE mock model process and measured INTERLEAVED with
`wrk` (one thread, 16 keep-alive connections, POST /v1/chat/completions,
both policies on with limits far above the load, so the admitted path is
measured; rounds visit the targets in a rotated order); each figure is the
median over rounds:

  before redis          the gateway at the base commit (`--base`, default the branch
                        point: batched scripts, a 64-connection pool, Python packing)
  redis                 this tree (coalesced script calls, storage.max_connections 1:
                        one call in flight; hiredis packing)
  redis pool=2 / =8     this tree with storage.max_connections 2 / 8
  reservation redis     this tree, the tier's token policy in reservation mode
  memory                this tree, counters in memory
  LiteLLM memory/redis  the LiteLLM proxy, per-key rpm/tpm limits on (see litellm_peer.py),
                        counters in memory / in its own redis-server

The base commit's code is exported with `git archive` to a temporary
directory and run from there (nothing in the work tree changes).

Run: .venv/bin/python benchmarks/bench_gateway_limiter.py [--rounds 5 --seconds 5 --base REV]
     [--no-litellm] [--out benchmarks/results/redis-path.md]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
import yaml
from rich.progress import Progress

import benchlib
import litellm_peer
from bench_gateway_overhead import (
    BENCH_KEY,
    BODY,
    gateway_config,
    litellm_service,
    maas_cli,
    script,
)
from maas_metrics.config import parse_config
from maas_metrics.gateway.app import Gateway
from maas_metrics.gateway.metering import Usage
from services import Service
from wrkload import WrkResult, require_wrk, run_wrk

CONCURRENCY = 16
BASE = "45f665d"
TARGETS = (
    "before redis",
    "redis",
    "redis pool=2",
    "redis pool=8",
    "reservation redis",
    "memory",
    "LiteLLM memory",
    "LiteLLM redis",
)


def export_base(rev: str, into: Path) -> Path:
    """The `src/` of commit `rev`, written under `into` (via git archive)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"],
        cwd=benchlib.ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def service(name: str, workdir: Path, upstream: str, storage: str, base_src: Path) -> Service:
    config = gateway_config(upstream, storage)
    tiers = config["tiers"]
    assert isinstance(tiers, list)
    if name.startswith("reservation"):
        tiers[1]["token_limit"]["mode"] = "reservation"
    if "pool=" in name:
        store = config["storage"]
        assert isinstance(store, dict)
        store["max_connections"] = int(name.rpartition("=")[2])
    slug = name.replace(" ", "-").replace("=", "")
    path = workdir / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port, operator = benchlib.free_port(), benchlib.free_port()
    env = None
    argv = [maas_cli(), "gateway", "--config", str(path), "--port", str(port)]
    argv += ["--operator-port", str(operator)]
    if name.startswith("before"):
        env = {"PYTHONPATH": str(base_src), "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [sys.executable, "-m", "maas_metrics", *argv[1:]]
    return Service(name, argv, port, "/healthz", workdir / f"{slug}.log", env)


async def meter_rate(storage: str, mode: str, seconds: float) -> float:
    """Requests/s through `Meter.admit` + `Meter.report` + headers alone, 16 concurrent callers."""
    config = gateway_config("http://127.0.0.1:9/v1", storage)
    tiers = config["tiers"]
    assert isinstance(tiers, list)
    tiers[1]["token_limit"]["mode"] = mode
    gateway = Gateway(parse_config(config))
    identity = gateway.keys.authenticate(f"Bearer {BENCH_KEY}")
    payload = orjson.loads(BODY)
    usage = Usage(40, 60, 100)
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            for _ in range(32):
                admission = await gateway.meter.admit(identity, "granite-8b", payload)
                await gateway.meter.report(identity, "granite-8b", usage, admission)
                admission.headers()
            done += 32

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    await gateway.limiter.close()
    return done / elapsed


def meter_rates(redis_url: str, rounds: int, seconds: float) -> dict[tuple[str, str], float]:
    """Median over interleaved rounds of `meter_rate` for memory/Redis x optimistic/reservation."""
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for storage in ("memory", "redis"):
            for mode in ("optimistic", "reservation"):
                url = "memory" if storage == "memory" else redis_url
                rate = uvloop.run(meter_rate(url, mode, seconds))
                rates.setdefault((storage, mode), []).append(rate)
    return {key: statistics.median(values[1:]) for key, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--base", default=BASE, help="the 'before' commit")
    parser.add_argument("--litellm", help="path to the litellm binary (default: its venv)")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM targets")
    parser.add_argument("--out", default="benchmarks/results/redis-path.md")
    parser.add_argument(
        "--targets", help="comma-separated subset of the targets (results in their own section)"
    )
    args = parser.parse_args()
    require_wrk()
    chosen = TARGETS if not args.targets else tuple(args.targets.split(","))
    if unknown := set(chosen) - set(TARGETS):
        raise SystemExit(f"error: --targets: unknown {sorted(unknown)}; known: {list(TARGETS)}")
    for needed in ("redis", "before redis"):  # the ratios' references
        if needed not in chosen:
            chosen = (needed, *chosen)
    wants_peer = not args.no_litellm and any(t.startswith("LiteLLM") for t in chosen)
    binary = litellm_peer.litellm_bin(args.litellm) if wants_peer else None
    targets = [t for t in TARGETS if t in chosen and (binary or not t.startswith("LiteLLM"))]
    command = (
        ".venv/bin/python benchmarks/bench_gateway_limiter.py"
        f" --rounds {args.rounds} --seconds {args.seconds:g} --base {args.base}"
        + (" --no-litellm" if args.no_litellm else "")
        + (f" --targets '{args.targets}'" if args.targets else "")
    )
    info = benchlib.RunInfo.begin(command)
    runs: dict[str, list[WrkResult]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-gw-limiter-") as tmp:
        workdir = Path(tmp)
        base_src = export_base(args.base, workdir / "base")
        redis = benchlib.RedisServer(workdir / "redis")
        redis.workdir.mkdir()
        peer_redis = benchlib.RedisServer(workdir / "peer-redis")  # LiteLLM's own
        peer_redis.workdir.mkdir()
        mock_port = benchlib.free_port()
        mock = Service(
            "mock",
            [maas_cli(), "mock-model", "--port", str(mock_port)],
            mock_port,
            "/healthz",
            workdir / "mock.log",
        )
        upstream = f"{mock.url}/v1"
        services: dict[str, Service] = {}
        for name in targets:
            if name.startswith("LiteLLM"):
                assert binary is not None
                port = peer_redis.port if name.endswith("redis") else None
                services[name] = litellm_service(name, workdir, binary, upstream, port)
            else:
                storage = "memory" if name == "memory" else redis.url
                services[name] = service(name, workdir, upstream, storage, base_src)
        started: list[Service] = []
        try:
            redis.start()
            peer_redis.start()
            mock.start()
            started.append(mock)
            for s in services.values():
                s.start()
                started.append(s)
            meters = meter_rates(redis.url, args.rounds, 2.0)
            with Progress(console=benchlib.console) as progress:
                task = progress.add_task("measure", total=(args.rounds + 1) * len(targets))
                for round_no in range(args.rounds + 1):  # round 0 warms up
                    shift = round_no % len(targets)
                    for name in targets[shift:] + targets[:shift]:
                        progress.update(task, description=f"round {round_no}: {name}")
                        url = services[name].url + "/v1/chat/completions"
                        seconds = 2.0 if round_no == 0 else args.seconds
                        result = run_wrk(url, script(BENCH_KEY), CONCURRENCY, seconds)
                        if result.non_2xx or result.socket_errors or not result.requests:
                            raise SystemExit(f"error: {name} failed: {result}")
                        if round_no:
                            runs[name].append(result)
                        progress.advance(task)
        finally:
            for s in reversed(started):
                s.stop()
            peer_redis.stop()
            redis.stop()
    info.end()
    write_results(args, info, targets, runs, meters)


def write_results(
    args: argparse.Namespace,
    info: benchlib.RunInfo,
    targets: list[str],
    runs: dict[str, list[WrkResult]],
    meters: dict[tuple[str, str], float],
) -> None:
    rps = {name: statistics.median(r.rps for r in results) for name, results in runs.items()}
    p99 = {
        name: statistics.median(r.p99_us for r in results) / 1000 for name, results in runs.items()
    }

    def paired(name: str, reference: str) -> float:
        """Median over rounds of the ratio within a round (both measured under the same load)."""
        return statistics.median(
            a.rps / b.rps for a, b in zip(runs[name], runs[reference], strict=True)
        )

    headers = [
        "target",
        "req/s (c=16)",
        "best round",
        "rounds",
        "vs redis",
        "vs before redis",
        "p99 ms",
    ]
    rows = [
        [
            name,
            benchlib.fmt_rate(rps[name]),
            benchlib.fmt_rate(max(r.rps for r in runs[name])),
            " / ".join(f"{r.rps:,.0f}" for r in runs[name]),
            f"{paired(name, 'redis'):.2f}x",
            f"{paired(name, 'before redis'):.2f}x",
            f"{p99[name]:.1f}",
        ]
        for name in targets
    ]
    benchlib.print_table("Gateway with the limiter, c=16", headers, rows)
    meter_headers = ["store", "optimistic req/s", "reservation req/s"]
    meter_rows = [
        [
            storage,
            benchlib.fmt_rate(meters[(storage, "optimistic")]),
            benchlib.fmt_rate(meters[(storage, "reservation")]),
        ]
        for storage in ("memory", "redis")
    ]
    benchlib.print_table("Metering alone, 16 callers", meter_headers, meter_rows)
    body = (
        "## Gateway requests/s on Redis, memory and LiteLLM (c=16)"
        + (f": {', '.join(targets)}" if args.targets else "")
        + "\n\n"
        "`wrk`, one thread, 16 keep-alive connections, POST /v1/chat/completions against the "
        "project's mock model (no added latency), both policies on with limits far above the "
        "load; every target a separate process with one worker, all side by side, measured in "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s (rotated order; the median is "
        "the figure). *before redis* = the gateway at the base commit "
        f"`{args.base}`; *redis* = this tree (storage.max_connections 1, the default); *pool=N* = this tree "
        "with N connections; *reservation* = the token policy in reservation mode; LiteLLM "
        "as in the gateway overhead benchmark (its own redis-server for *LiteLLM redis*). "
        "wrk, the mock model, redis-server and the gateway share the machine's 2 cores. *vs* = the median over rounds of "
        "the ratio within each round (the two targets measured a few seconds apart, under "
        "about the same outside load); *best round* = the highest of the rounds.\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\nThe limiter's share alone, in process (no HTTP, no upstream): `Meter.admit` + "
        "`Meter.report` + the answer's headers, 16 concurrent callers, median of the rounds.\n\n"
        + benchlib.markdown_table(meter_headers, meter_rows)
        + "\n"
        + info.markdown()
    )
    section = "gateway-limiter" + ("-subset" if args.targets else "")
    benchlib.update_section(section, body, path=benchlib.ROOT / args.out)


if __name__ == "__main__":
    main()
