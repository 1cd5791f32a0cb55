"""Gateway overhead: requests/s and p50/p99 latency, direct vs maas-metrics vs the LiteLLM proxy.

All targets run side by side against ONE mock model process
(`maas-metrics mock-model`, no added latency, so only proxy overhead shows)
and are measured INTERLEAVED: every round visits every concurrency and every
target (in a rotated order) with the same load generator, Debian's `wrk`
(one thread, keep-alive connections, POST /v1/chat/completions). The figure
for each cell is the median over rounds.

Targets:
  direct                 the mock model itself
  maas-metrics memory    gateway, both policies and metrics on, in-memory counters
  maas-metrics redis     the same with counters in a real redis-server
  LiteLLM memory         LiteLLM proxy, per-key rpm/tpm limits on (custom auth, no DB)
  LiteLLM redis          the same with LiteLLM's counters in Redis (coordination_redis)
Limits are far above the load, so the admitted path is measured; a last
block measures the rejected path (one key whose limits bite, all 429).

Also: start-up time to the first 200 on /healthz (median of 5 fresh starts),
resident memory (RSS) of every server after the load.

Needs: apt-get install -y wrk; LiteLLM in its own venv (see litellm_peer.py):
    python3 -m venv /work/bench-venv-litellm && /work/bench-venv-litellm/bin/pip install 'litellm[proxy]'
Run:   .venv/bin/python benchmarks/bench_gateway_overhead.py [--rounds 3 --seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import yaml
from rich.progress import Progress

import benchlib
import charts
import litellm_peer
from maas_metrics.config import hash_key
from services import Service
from wrkload import WrkResult, lua_script, require_wrk, run_wrk

MODEL = "granite-8b"
BENCH_KEY = "sk-bench-admitted-0123456789abcdef"
LIMITED_KEY = "sk-bench-limited-0123456789abcdef"
BODY = orjson.dumps(
    {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {
                "role": "user",
                "content": "Summarise why an LLM gateway meters tokens per user, in two sentences.",
            },
        ],
        "max_tokens": 64,
    }
).decode()
CONCURRENCIES = (1, 16, 64)
HUGE = 10**12

DIRECT = "direct (mock)"
MAAS_MEM = "maas-metrics memory"
MAAS_REDIS = "maas-metrics redis"
LITE_MEM = "LiteLLM memory"
LITE_REDIS = "LiteLLM redis"
TARGETS = (DIRECT, MAAS_MEM, MAAS_REDIS, LITE_MEM, LITE_REDIS)


@dataclass
class Cell:
    """All rounds of one target at one concurrency."""

    target: str
    concurrency: int
    runs: list[WrkResult] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.runs)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def failures(self) -> int:
        return sum(r.non_2xx + r.socket_errors for r in self.runs)


def gateway_config(upstream: str, storage: str) -> dict[str, object]:
    """Both policies on; the bench key's tier has limits far above the load, the other's bite."""
    return {
        "tiers": [
            {
                "name": "free",
                "level": 0,
                "groups": ["limited"],
                "price_per_hit": 0.005,
                "request_limit": {"max": 5, "window_seconds": 120},
                "token_limit": {"max": 100, "window_seconds": 60},
            },
            {
                "name": "enterprise",
                "level": 2,
                "groups": ["bench"],
                "price_per_hit": 0.01,
                "request_limit": {"max": HUGE, "window_seconds": 120},
                "token_limit": {"max": HUGE, "window_seconds": 60},
            },
        ],
        "models": [{"name": MODEL, "upstream": upstream}],
        "api_keys": [
            {"user": "bench-user", "groups": ["bench"], "sha256": hash_key(BENCH_KEY)},
            {"user": "limited-user", "groups": ["limited"], "sha256": hash_key(LIMITED_KEY)},
        ],
        "storage": {"url": storage, "on_failure": "deny"},
    }


def maas_cli() -> str:
    return str(Path(sys.executable).parent / "maas-metrics")


def gateway_service(name: str, workdir: Path, upstream: str, storage: str) -> Service:
    config = workdir / f"{name.replace(' ', '-')}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(upstream, storage), sort_keys=False))
    port, operator = benchlib.free_port(), benchlib.free_port()
    return Service(
        name,
        [
            maas_cli(),
            "gateway",
            "--config",
            str(config),
            "--port",
            str(port),
            "--operator-port",
            str(operator),
        ],
        port,
        "/healthz",
        workdir / f"{name.replace(' ', '-')}.log",
    )


def litellm_service(
    name: str, workdir: Path, binary: str, upstream: str, redis_port: int | None
) -> Service:
    home = workdir / name.replace(" ", "-")
    keys = [
        litellm_peer.PeerKey(BENCH_KEY, "bench-user", rpm=10**9, tpm=HUGE),
        litellm_peer.PeerKey(LIMITED_KEY, "limited-user", rpm=5, tpm=100),
    ]
    config = litellm_peer.write_setup(home, upstream, [MODEL], keys, redis_port)
    port = benchlib.free_port()
    return Service(
        name,
        litellm_peer.argv(binary, config, port),
        port,
        "/health/liveliness",
        home / "litellm.log",
        env={"LITELLM_LOG": "ERROR"},
        cwd=home,  # the custom auth module is imported from here
    )


def script(key: str) -> str:
    return lua_script(BODY, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})


def startup_times(make: Callable[[], Service], times: int) -> list[float]:
    """Seconds to the first 200 on the health path of `times` fresh processes."""
    out: list[float] = []
    for _ in range(times):
        service = make()
        try:
            out.append(service.start())
        finally:
            service.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--litellm", help="path to the litellm binary (default: its venv)")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM targets")
    args = parser.parse_args()
    require_wrk()
    binary = None if args.no_litellm else litellm_peer.litellm_bin(args.litellm)
    args.litellm_binary = binary
    command = ".venv/bin/python benchmarks/bench_gateway_overhead.py" + (
        f" --rounds {args.rounds} --seconds {args.seconds:g}"
        if (args.rounds, args.seconds) != (3, 5.0)
        else ""
    )
    targets = [t for t in TARGETS if binary is not None or not t.startswith("LiteLLM")]
    info = benchlib.RunInfo.begin(command)

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        redis_a, redis_b = (
            benchlib.RedisServer(workdir / "ra"),
            benchlib.RedisServer(workdir / "rb"),
        )
        for r in (redis_a, redis_b):
            r.workdir.mkdir()
        mock_port = benchlib.free_port()
        mock = Service(
            "mock",
            [maas_cli(), "mock-model", "--port", str(mock_port)],
            mock_port,
            "/healthz",
            workdir / "mock.log",
        )
        upstream = f"{mock.url}/v1"
        services: dict[str, Service] = {
            MAAS_MEM: gateway_service(MAAS_MEM, workdir, upstream, "memory"),
            MAAS_REDIS: gateway_service(MAAS_REDIS, workdir, upstream, redis_a.url),
        }
        if binary is not None:
            services[LITE_MEM] = litellm_service(LITE_MEM, workdir, binary, upstream, None)
            services[LITE_REDIS] = litellm_service(
                LITE_REDIS, workdir, binary, upstream, redis_b.port
            )
        started: list[Service] = []
        cells = {(t, c): Cell(t, c) for t in targets for c in CONCURRENCIES}
        limited: dict[str, Cell] = {}
        startups: dict[str, float] = {}
        rss: dict[str, int] = {}
        gateway_starts: list[float] = []
        try:
            redis_a.start()
            redis_b.start()
            with Progress(console=benchlib.console) as progress:
                boot = progress.add_task("start servers", total=1 + len(services))
                mock.start()
                started.append(mock)
                progress.advance(boot)
                for name, service in services.items():
                    progress.update(boot, description=f"start {name}")
                    startups[name] = service.start()
                    started.append(service)
                    progress.advance(boot)
                urls = {DIRECT: mock.url} | {n: s.url for n, s in services.items()}
                endpoint = {t: urls[t] + "/v1/chat/completions" for t in targets}

                warm = progress.add_task("warm-up", total=len(targets))
                for target in targets:
                    progress.update(warm, description=f"warm-up {target}")
                    result = run_wrk(endpoint[target], script(BENCH_KEY), 16, 2)
                    if result.non_2xx or result.socket_errors or not result.requests:
                        raise SystemExit(f"error: {target} failed its warm-up: {result}")
                    progress.advance(warm)

                total = args.rounds * len(CONCURRENCIES) * len(targets)
                task = progress.add_task("measure", total=total)
                for round_no in range(args.rounds):
                    order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
                    for c in CONCURRENCIES:
                        for target in order:
                            progress.update(
                                task, description=f"round {round_no + 1}: {target}, c={c}"
                            )
                            cells[(target, c)].runs.append(
                                run_wrk(endpoint[target], script(BENCH_KEY), c, args.seconds)
                            )
                            progress.advance(task)

                limit_targets = [t for t in (MAAS_MEM, LITE_MEM) if t in targets]
                lim = progress.add_task("limits bite", total=args.rounds * len(limit_targets))
                for _ in range(args.rounds):
                    for target in limit_targets:
                        progress.update(lim, description=f"limits bite: {target}, c=16")
                        cell = limited.setdefault(target, Cell(target, 16))
                        cell.runs.append(
                            run_wrk(endpoint[target], script(LIMITED_KEY), 16, args.seconds)
                        )
                        progress.advance(lim)

                rss = {DIRECT: mock.rss_bytes()} | {n: s.rss_bytes() for n, s in services.items()}

                starts = progress.add_task("gateway start-up x5", total=1)
                gateway_starts = startup_times(
                    lambda: gateway_service("startup probe", workdir, upstream, "memory"), 5
                )
                progress.advance(starts)
        finally:
            for service in reversed(started):
                service.stop()
            redis_a.stop()
            redis_b.stop()
    info.end()
    report(cells, limited, targets, startups, gateway_starts, rss, info, args)


def report(
    cells: dict[tuple[str, int], Cell],
    limited: dict[str, Cell],
    targets: list[str],
    startups: dict[str, float],
    gateway_starts: list[float],
    rss: dict[str, int],
    info: benchlib.RunInfo,
    args: argparse.Namespace,
) -> None:
    def ms(us: float) -> str:
        return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"

    headers = ["target", "conc.", "req/s", "p50 ms", "p99 ms", "req/s vs direct", "failed"]
    rows = []
    for c in CONCURRENCIES:
        direct = cells[(DIRECT, c)].rps
        for t in targets:
            cell = cells[(t, c)]
            rows.append(
                [
                    t,
                    str(c),
                    benchlib.fmt_rate(cell.rps),
                    ms(cell.med("p50_us")),
                    ms(cell.med("p99_us")),
                    "1" if t == DIRECT else f"{cell.rps / direct:.3f}",
                    str(cell.failures),
                ]
            )
    benchlib.print_table("Gateway overhead (median of rounds)", headers, rows)

    ratio_headers = [
        "concurrency",
        "maas-metrics memory / LiteLLM memory (req/s)",
        "maas-metrics redis / LiteLLM redis (req/s)",
        "LiteLLM memory p50 / maas-metrics memory p50",
    ]
    ratio_rows = []
    if LITE_MEM in targets:
        for c in CONCURRENCIES:
            ratio_rows.append(
                [
                    str(c),
                    f"{cells[(MAAS_MEM, c)].rps / cells[(LITE_MEM, c)].rps:.1f}x",
                    f"{cells[(MAAS_REDIS, c)].rps / cells[(LITE_REDIS, c)].rps:.1f}x",
                    f"{cells[(LITE_MEM, c)].med('p50_us') / cells[(MAAS_MEM, c)].med('p50_us'):.1f}x",
                ]
            )
        benchlib.print_table("maas-metrics vs LiteLLM", ratio_headers, ratio_rows)

    added = [
        (g.p50_us - d.p50_us) / 1000
        for g, d in zip(cells[(MAAS_MEM, 1)].runs, cells[(DIRECT, 1)].runs, strict=True)
    ]
    added_ms = statistics.median(added)
    startup_ms = statistics.median(gateway_starts) * 1000
    mem_mib = rss[MAAS_MEM] / 2**20
    c16 = cells[(MAAS_MEM, 16)].rps
    goals = [
        [
            "req/s at concurrency 16 (memory store)",
            ">= 1,500",
            benchlib.fmt_rate(c16),
            "yes" if c16 >= 1500 else "NO",
        ],
        [
            "added median latency at concurrency 1 vs direct",
            "< 1 ms",
            f"{added_ms:.2f} ms",
            "yes" if added_ms < 1 else "NO",
        ],
        [
            "start-up to first 200 on /healthz (median of 5)",
            "< 2 s",
            f"{startup_ms:.0f} ms",
            "yes" if startup_ms < 2000 else "NO",
        ],
        [
            "resident memory after the load (RSS)",
            "< 100 MiB",
            f"{mem_mib:.1f} MiB",
            "yes" if mem_mib < 100 else "NO",
        ],
    ]
    goal_headers = ["issue 2 goal (maas-metrics, memory store)", "goal", "measured", "met"]
    benchlib.print_table("Speed and memory goals", goal_headers, goals)

    side_headers = ["server", "start-up to first 200", "RSS after load"]
    side_rows = [[DIRECT, "-", f"{rss[DIRECT] / 2**20:.1f} MiB"]]
    for name in targets[1:]:
        side_rows.append([name, f"{startups[name] * 1000:,.0f} ms", f"{rss[name] / 2**20:.1f} MiB"])
    benchlib.print_table("Start-up and memory", side_headers, side_rows)

    lim_headers = ["target (one key over its limits)", "req/s", "p50 ms", "p99 ms", "429s"]
    lim_rows = [
        [
            t,
            benchlib.fmt_rate(cell.rps),
            ms(cell.med("p50_us")),
            ms(cell.med("p99_us")),
            f"{sum(r.non_2xx for r in cell.runs):,} of {sum(r.requests for r in cell.runs):,}",
        ]
        for t, cell in limited.items()
    ]
    if lim_rows:
        benchlib.print_table("When limits bite (c=16)", lim_headers, lim_rows)

    raw = {
        "info": {
            "command": info.command,
            "started": info.started,
            "load_before": info.load_before,
            "load_after": info.load_after,
        },
        "cells": [
            {"target": c.target, "concurrency": c.concurrency, "runs": [asdict(r) for r in c.runs]}
            for c in cells.values()
        ],
        "limited": [
            {"target": c.target, "runs": [asdict(r) for r in c.runs]} for c in limited.values()
        ],
        "startup_seconds": startups,
        "gateway_startups_seconds": gateway_starts,
        "rss_bytes": rss,
    }
    benchlib.RESULTS.mkdir(parents=True, exist_ok=True)
    (benchlib.RESULTS / "gateway_overhead.json").write_text(json.dumps(raw, indent=1))
    chart_note = charts.overhead_charts(
        [
            (
                t,
                c,
                cells[(t, c)].rps,
                cells[(t, c)].med("p50_us") / 1000,
                cells[(t, c)].med("p99_us") / 1000,
            )
            for t in targets
            for c in CONCURRENCIES
        ],
        benchlib.RESULTS / "gateway_overhead",
    )

    body = (
        "## Gateway overhead: direct vs maas-metrics vs LiteLLM\n\n"
        "One mock model process (`maas-metrics mock-model`, no added latency) behind every "
        "target; all servers run side by side with one worker process each and are measured "
        f"interleaved ({args.rounds} rounds x concurrency 1/16/64 x every target, rotated "
        f"order, {args.seconds:g} s per run); figures are medians over rounds. Load "
        "generator for all: `wrk` (1 thread, keep-alive) POSTing the same "
        "`/v1/chat/completions` body. maas-metrics: both policies (request and token) and "
        "metrics on, limits far above the load (every request admitted). LiteLLM "
        f"{_litellm_version(args.litellm_binary)}: per-key `rpm_limit`/`tpm_limit` on via custom auth (no "
        "database), enforced by its parallel request limiter in memory or, for *redis*, "
        "in Redis via `general_settings.coordination_redis`; uvicorn access log silenced "
        "like the gateway's; installed in its own venv with `" + litellm_peer.INSTALL + "`. "
        "Each Redis target has its own `redis-server` 7. "
        "*failed* = non-2xx answers + socket errors over all rounds.\n\n"
        + COMPARABILITY
        + benchlib.markdown_table(headers, rows)
        + ("\n" + benchlib.markdown_table(ratio_headers, ratio_rows) if ratio_rows else "")
        + "\n### Issue 2's speed and memory goals\n\n"
        + benchlib.markdown_table(goal_headers, goals)
        + "\nAdded median latency = median over rounds of (gateway p50 - direct p50) at "
        "concurrency 1 in the same round. Start-up = spawn of `maas-metrics gateway` to "
        "its first 200 on `/healthz` (polled every 5 ms), 5 fresh processes.\n\n"
        + benchlib.markdown_table(side_headers, side_rows)
        + "\nStart-up of each server in the table above is its first start in this run "
        "(LiteLLM: to the first 200 on `/health/liveliness`); RSS includes child processes.\n"
        + (
            "\n### When limits bite\n\nThe same servers, one key whose limits are exhausted "
            "(maas-metrics: free tier, 5 requests / 2 min; LiteLLM: rpm 5, tpm 100), "
            "concurrency 16: the 429 path.\n\n" + benchlib.markdown_table(lim_headers, lim_rows)
            if lim_rows
            else ""
        )
        + f"\n{chart_note}\n\n"
        + info.markdown()
    )
    benchlib.update_section("overhead", body)


COMPARABILITY = (
    "Comparable: the same mock upstream, request body, load generator and machine; one worker "
    "process each; a request limit and a token limit per key, both enforced, counters in memory "
    "or in Redis; every request admitted; no access log. Not comparable: LiteLLM's windows are "
    "fixed at one minute (rpm/tpm) where maas-metrics uses the config's (120 s requests, 60 s "
    "tokens here); LiteLLM reserves an estimate of the tokens before the call and reconciles "
    "after, maas-metrics checks before and adds `usage.total_tokens` after; LiteLLM's keys come "
    "from a custom-auth module, not from its Postgres-backed virtual keys (which need Prisma "
    "engines downloaded at start-up, impossible here); LiteLLM also computes cost, runs its "
    "callbacks and re-serialises the answer, while maas-metrics passes the upstream body through "
    "and keeps Limitador-compatible metrics.\n\n"
)


def _litellm_version(binary: str | None) -> str:
    """The installed LiteLLM version, read from its venv's dist-info (importing it takes seconds)."""
    if binary is None:
        return ""
    venv = Path(binary).resolve().parent.parent
    found = sorted(venv.glob("lib/python*/site-packages/litellm-[0-9]*.dist-info"))
    return found[0].name.removeprefix("litellm-").removesuffix(".dist-info") if found else ""


if __name__ == "__main__":
    main()
