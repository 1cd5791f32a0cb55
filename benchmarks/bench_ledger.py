"""The usage ledger: gateway throughput with it on vs off, reports and reconcile at scale.

gateway   req/s at concurrency 16 (wrk, one mock model, no added latency) for the
          gateway with no ledger, with a SQLite ledger and with a PostgreSQL
          ledger, interleaved round by round (rotated order), median per target,
          shown as a ratio to "off". After the load, the ledger must hold one row
          per answered request (checked: a ledger that falls behind would show).
report    `build_ledger_report` over 24 h by user on N generated records (10,000
          users, 3 models, 5 % limited), on SQLite and PostgreSQL: the range on
          whole hours (roll-ups only) and off the hour (roll-ups + raw edges);
          median of 3. Records are generated with one INSERT ... SELECT
          (generate_series / recursive CTE) and the roll-ups rebuilt from them
          (`ledger.rollups.rebuild`, timed too).
reconcile the ledger side of `reconcile` (per user/model/namespace amounts + edge
          slack) over the same 24 h at 10,000 users. The Prometheus side is the
          report's `build_report`, measured at this scale by bench_scale.py.

Run: .venv/bin/python benchmarks/bench_ledger.py [--part gateway|report|all] [--rows 10000000]
Results go to benchmarks/results/ledger.md (the lead merges them into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/postgres_server.py

from tests.postgres_server import PostgresServer

import benchlib
from bench_gateway_overhead import BENCH_KEY, gateway_config, maas_cli, script
from maas_metrics.config import parse_config
from maas_metrics.ledger import LedgerStore
from maas_metrics.ledger.reconcile import edge_slack, ledger_side
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.rollups import rebuild
from services import Service
from wrkload import require_wrk, run_wrk

RESULTS = Path(__file__).resolve().parent / "results" / "ledger.md"
DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
USERS = 10_000


# --- gateway ---------------------------------------------------------------------------------


def gateway_bench(rounds: int, seconds: float, pg: PostgresServer, workdir: Path) -> list[str]:
    require_wrk()
    mock_port = benchlib.free_port()
    mock = Service(
        "mock",
        [maas_cli(), "mock-model", "--port", str(mock_port)],
        mock_port,
        "/healthz",
        workdir / "mock.log",
    )
    upstream = f"{mock.url}/v1"
    ledgers = {
        "ledger off": None,
        "ledger SQLite": f"sqlite:///{workdir}/ledger.db",
        "ledger PostgreSQL": pg.url,
    }
    services: dict[str, Service] = {}
    for name, url in ledgers.items():
        data = gateway_config(upstream, "memory")
        if url is not None:
            data["ledger"] = {"url": url, "spool_path": str(workdir / f"{name}.spool")}
        slug = name.replace(" ", "-")
        path = workdir / f"{slug}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        port = benchlib.free_port()
        operator = str(benchlib.free_port())
        services[name] = Service(
            name,
            [
                maas_cli(),
                "gateway",
                "--config",
                str(path),
                "--port",
                str(port),
                "--operator-port",
                operator,
            ],
            port,
            "/healthz",
            workdir / f"{slug}.log",
        )
    rps: dict[str, list[float]] = {name: [] for name in services}
    answered: dict[str, int] = dict.fromkeys(services, 0)
    lua = script(BENCH_KEY)
    try:
        mock.start()
        for service in services.values():
            service.start()
            run_wrk(service.url + "/v1/chat/completions", lua, 16, 1.0)  # warm-up
        for r in range(rounds):
            names = list(services)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                result = run_wrk(services[name].url + "/v1/chat/completions", lua, 16, seconds)
                assert result.non_2xx == 0 and result.socket_errors == 0, (name, result)
                rps[name].append(result.rps)
                benchlib.console.print(f"round {r + 1} {name}: {result.rps:,.0f} req/s")
    finally:
        for service in services.values():
            service.stop()
        mock.stop()
    rows_in = {}
    for name, url in ledgers.items():
        if url is not None:
            store = LedgerStore(url)
            rows_in[name] = store.count()
            store.close()
    del answered
    base = statistics.median(rps["ledger off"])
    lines = [
        f"Gateway req/s at concurrency 16 (wrk, {rounds} interleaved rounds x {seconds:g} s, median):",
        "",
        "| target | req/s | vs off | ledger rows after the run |",
        "|---|---:|---:|---:|",
    ]
    for name in services:
        median = statistics.median(rps[name])
        rows = f"{rows_in[name]:,}" if name in rows_in else "-"
        lines.append(f"| {name} | {median:,.0f} | {median / base:.1%} | {rows} |")
    return lines


# --- report and reconcile at scale -----------------------------------------------------------


def _generate(engine: Engine, rows: int) -> float:
    """`rows` records over DAY0's 24 h by one INSERT ... SELECT; returns seconds."""
    start_ms = int(DAY0.timestamp() * 1000)
    span = 86_400_000
    pg = engine.dialect.name == "postgresql"
    hexid = "md5(i::text)" if pg else "printf('%032x', i)"
    source = (
        "FROM generate_series(1, :n) AS i"
        if pg
        else "FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) SELECT i FROM s)"
    )
    limited = "(i % 20 = 0)"
    sql = f"""
    INSERT INTO ledger_records (id, started_ms, ended_ms, user_name, key_id, tier, model, endpoint,
        stream, outcome, status, requests_namespace, tokens_namespace, usage_namespace,
        limited_namespace, limit_name, prompt_tokens, completion_tokens, cached_tokens,
        total_tokens, latency_ms, ttft_ms)
    SELECT {hexid},
        :t0 + (i * CAST(:span AS BIGINT) / :n) - 40,
        :t0 + (i * CAST(:span AS BIGINT) / :n),
        'user-' || (i % {USERS}), 'k' || (i % {USERS}),
        CASE (i % {USERS}) % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'premium' ELSE 'enterprise' END,
        CASE i % 3 WHEN 0 THEN 'granite-8b' WHEN 1 THEN 'llama-3-8b' ELSE 'mistral-7b' END,
        '/chat/completions', (i % 2 = 0),
        CASE WHEN {limited} THEN 'rate_limited' ELSE 'ok' END,
        CASE WHEN {limited} THEN 429 ELSE 200 END,
        'maas/requests',
        CASE WHEN {limited} THEN NULL ELSE 'maas/tokens' END,
        CASE WHEN {limited} THEN NULL ELSE 'maas/tokens' END,
        CASE WHEN {limited} THEN 'maas/requests' END,
        CASE WHEN {limited} THEN 'free-requests' END,
        CASE WHEN {limited} THEN 0 ELSE 10 + i % 50 END,
        CASE WHEN {limited} THEN 0 ELSE 5 + i % 100 END,
        0,
        CASE WHEN {limited} THEN 0 ELSE 15 + i % 50 + i % 100 END,
        12.5, NULL
    {source}
    """
    began = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(sql), {"n": rows, "t0": start_ms, "span": span})
    return time.perf_counter() - began


def _median_seconds(action: object, repeat: int = 3) -> float:
    assert callable(action)
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def scale_bench(rows: int, pg: PostgresServer, workdir: Path) -> list[str]:
    config = parse_config(
        {
            "tiers": [
                {"name": t, "level": i, "groups": [t], "price_per_hit": p}
                for i, (t, p) in enumerate(
                    (("free", 0.005), ("premium", 0.008), ("enterprise", 0.01))
                )
            ],
            "models": [
                {"name": m, "upstream": "http://127.0.0.1:9/v1"}
                for m in ("granite-8b", "llama-3-8b", "mistral-7b")
            ],
        }
    )
    lines = [
        f"Ledger at scale: {rows:,} records over 24 h, {USERS:,} users, 3 models (median of 3):",
        "",
        "| store | generate (INSERT ... SELECT) | rebuild roll-ups | report 24 h by user, whole UTC day (daily roll-ups) | report 24 h by user, off the hour (hourly + raw edges) | reconcile ledger side 24 h |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    whole = (DAY0, DAY0 + timedelta(days=1))
    off = (DAY0 + timedelta(minutes=17, seconds=3), DAY0 + timedelta(days=1, minutes=-23))
    for name, url in (("SQLite", f"sqlite:///{workdir}/scale.db"), ("PostgreSQL", pg.url)):
        store = LedgerStore(url)
        store.open()
        generate = _generate(store.engine, rows)
        if store.dialect == "postgresql":
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE ledger_records"))
        began = time.perf_counter()
        rollup_rows = rebuild(store.engine)
        rebuild_s = time.perf_counter() - began
        if store.dialect == "postgresql":
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE ledger_hourly"))
                conn.execute(text("VACUUM ANALYZE ledger_daily"))
        reports = []
        for a, b in (whole, off):
            report = build_ledger_report(store.engine, config, a, b, ("user",), {})
            assert len(report.rows) == USERS, len(report.rows)
            reports.append(
                _median_seconds(
                    lambda a=a, b=b, e=store.engine: build_ledger_report(
                        e, config, a, b, ("user",), {}
                    )
                )
            )
        recon = _median_seconds(
            lambda e=store.engine: (ledger_side(e, *off), edge_slack(e, list(off), 30.0))
        )
        lines.append(
            f"| {name} | {generate:.1f} s | {rebuild_s:.1f} s ({rollup_rows:,} rows) | {reports[0]:.2f} s | {reports[1]:.2f} s | {recon:.2f} s |"
        )
        benchlib.console.print(lines[-1])
        store.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("gateway", "report", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python benchmarks/bench_ledger.py", *sys.argv[1:]])
    info = benchlib.RunInfo.begin(command)
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        workdir = Path(tmp)
        pg = PostgresServer()
        pg.start()
        try:
            if args.part in ("gateway", "all"):
                out += [*gateway_bench(args.rounds, args.seconds, pg, workdir), ""]
                pg.reset()
            if args.part in ("report", "all"):
                out += [*scale_bench(args.rows, pg, workdir), ""]
        finally:
            pg.remove()
    info.end()
    text_out = "\n".join(out)
    print(text_out)
    RESULTS.parent.mkdir(exist_ok=True)
    previous = RESULTS.read_text() if RESULTS.exists() else "# Ledger benchmarks\n"
    RESULTS.write_text(
        previous.rstrip() + "\n\n" + info.markdown().strip() + "\n\n" + text_out + "\n"
    )


if __name__ == "__main__":
    main()
