"""The usage ledger: gateway throughput with it on vs off, reports and reconcile at scale.

gateway   req/s at concurrency 16 (wrk, one mock model, no added latency) for the
          gateway with no ledger, with a SQLite ledger and with a PostgreSQL
          ledger, interleaved round by round (rotated order), median per target,
          shown as a ratio to "off". With --baseline (the default) the same two
          ledgers also run the baseline commit's code (its `src/` unpacked from
          git, on PYTHONPATH), interleaved in the same rounds: before vs after.
          The table shows how many rows each ledger holds after the load.
report    `build_ledger_report` by user over "the last 24 h" ending at two moments off the
          hour (crossing midnight) on N generated records (10,000 users, 3 models,
          5 % limited, 24 h from 12:00 UTC), on SQLite and PostgreSQL, before (the
          baseline commit's reader, loaded from git) and after (this tree),
          interleaved, median of --repeat. The two must give identical rows.
          Records are generated with one INSERT ... SELECT (generate_series /
          recursive CTE) and the roll-ups rebuilt from them (`ledger.rollups.rebuild`).
writer    `LedgerStore.write` alone: CPU per record (this process, and the PostgreSQL
          backend's from /proc) for 20,000 time-ordered records in batches of 200,
          with random ids (uuid4, as the baseline made them) vs this branch's
          time-ordered ids, interleaved, median of --rounds.
reconcile the ledger side of `reconcile` (per user/model/namespace amounts + edge
          slack) over the same ranges, before and after. The Prometheus side is
          the report's `build_report`, measured at this scale by bench_scale.py.

Run: .venv/bin/python benchmarks/bench_ledger.py [--part gateway|report|writer|all] [--rows 10000000]
Results go to benchmarks/results/ledger-fast.md (the lead merges them into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import yaml
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    create_engine,
    insert,
    select,
    text,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/postgres_server.py

from tests.postgres_server import PostgresServer

import benchlib
from bench_gateway_overhead import BENCH_KEY, gateway_config, maas_cli, script
from maas_metrics.config import Config, parse_config
from maas_metrics.ledger import LedgerStore
from maas_metrics.ledger.reconcile import edge_slack, ledger_side
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.rollups import rebuild
from maas_metrics.ledger.schema import DAY_MS, HOUR_MS, ROLLUP_KEY, ROLLUPS, daily, hourly
from maas_metrics.report.model import Report
from services import Service
from wrkload import require_wrk, run_wrk

RESULTS = Path(__file__).resolve().parent / "results" / "ledger-fast.md"
DATA0 = datetime(2026, 11, 2, 12, tzinfo=UTC)
END_A = datetime(2026, 11, 3, 11, 37, 3, tzinfo=UTC)
END_B = datetime(2026, 11, 3, 6, 29, 58, tzinfo=UTC)
USERS = 10_000


# --- gateway ---------------------------------------------------------------------------------


def _baseline_tree(workdir: Path) -> str:
    """The baseline commit's `src/` unpacked into `workdir` (its gateway runs from there)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "archive", BASELINE, "src"], cwd=root, check=True, capture_output=True
    ).stdout
    target = workdir / "baseline"
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return str(target / "src")


def _create_database(url: str, name: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()


def gateway_bench(
    rounds: int,
    seconds: float,
    pg: PostgresServer,
    workdir: Path,
    baseline: bool,
    stores: tuple[str, ...],
) -> list[str]:
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
    # Each target: (ledger URL, PYTHONPATH of the code to run: this tree, or the baseline's).
    ledgers: dict[str, tuple[str | None, str | None]] = {"ledger off": (None, None)}
    if "sqlite" in stores:
        ledgers["ledger SQLite"] = (f"sqlite:///{workdir}/ledger.db", None)
    if "postgresql" in stores:
        ledgers["ledger PostgreSQL"] = (pg.url, None)
    if baseline:
        old_src = _baseline_tree(workdir)
        if "sqlite" in stores:
            old_db = f"sqlite:///{workdir}/old.db"
            ledgers[f"ledger SQLite, baseline {BASELINE[:7]}"] = (old_db, old_src)
        if "postgresql" in stores:
            _create_database(pg.url, "baseline")
            old_pg = pg.url.rsplit("/", 1)[0] + "/baseline"
            ledgers[f"ledger PostgreSQL, baseline {BASELINE[:7]}"] = (old_pg, old_src)
    services: dict[str, Service] = {}
    for name, (url, code) in ledgers.items():
        data = gateway_config(upstream, "memory")
        if url is not None:
            slug = name.replace(" ", "-").replace(",", "")
            data["ledger"] = {"url": url, "spool_path": str(workdir / f"{slug}.spool")}
        slug = name.replace(" ", "-").replace(",", "")
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
            env={"PYTHONPATH": code} if code is not None else None,
        )
    rps: dict[str, list[float]] = {name: [] for name in services}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in services}
    databases = {
        name: url.rsplit("/", 1)[1]
        for name, (url, _) in ledgers.items()
        if url and url.startswith("postgresql")
    }
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
                process = services[name].process
                assert process is not None
                before = _cpu_of(process.pid, databases.get(name))
                result = run_wrk(services[name].url + "/v1/chat/completions", lua, 16, seconds)
                after = _cpu_of(process.pid, databases.get(name))
                assert result.non_2xx == 0 and result.socket_errors == 0, (name, result)
                rps[name].append(result.rps)
                used = [after[k] - before.get(k, 0.0) for k in ("gateway", "database")]
                # CPU seconds per request (the writer thread and the database included),
                # after the load: a few ms of flush still to come are in the next read.
                cpu[name].append((used[0] / result.requests, used[1] / result.requests))
                benchlib.console.print(
                    f"round {r + 1} {name}: {result.rps:,.0f} req/s, "
                    f"{cpu[name][-1][0] * 1e6:,.0f} + {cpu[name][-1][1] * 1e6:,.0f} us CPU/request"
                )
    finally:
        for service in services.values():
            service.stop()
        mock.stop()
    rows_in = {}
    for name, (url, _) in ledgers.items():
        if url is not None:
            store = LedgerStore(url)
            rows_in[name] = store.count()
            store.close()
    base = statistics.median(rps["ledger off"])
    base_cpu = statistics.median(g + d for g, d in cpu["ledger off"])
    lines = [
        f"Gateway at concurrency 16 (wrk, {rounds} interleaved rounds x {seconds:g} s, median): "
        "req/s, and CPU per request of the gateway process (all its threads) and of the "
        "PostgreSQL backends serving its database (from /proc; steadier than req/s on a "
        "shared machine):",
        "",
        "| target | req/s | vs off | gateway CPU/request | database CPU/request | total CPU/request vs off | ledger rows after the run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in services:
        median = statistics.median(rps[name])
        rows = f"{rows_in[name]:,}" if name in rows_in else "-"
        gw = statistics.median(g for g, _ in cpu[name])
        db = statistics.median(d for _, d in cpu[name])
        total = statistics.median(g + d for g, d in cpu[name])
        lines.append(
            f"| {name} | {median:,.0f} | {median / base:.1%} | {gw * 1e6:,.0f} us "
            f"| {db * 1e6:,.0f} us | {total / base_cpu:.2f} | {rows} |"
        )
    return lines


def _cpu_of(pid: int, database: str | None) -> dict[str, float]:
    """CPU seconds so far of process `pid` and of the PostgreSQL backends of `database`."""
    tick = os.sysconf("SC_CLK_TCK")

    def seconds(p: int | str) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    backends = 0.0
    if database is not None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            # A backend's title: "postgres: <user> <database> <client> <state>".
            if title.startswith("postgres: ") and title.split()[2:3] == [database]:
                backends += seconds(entry.name)
    return {"gateway": seconds(pid), "database": backends}


# --- report and reconcile at scale -----------------------------------------------------------

BASELINE = "45f665dcfe013064eab8ca671a6898e2b781454a"
"""The commit before the ledger-fast branch: its report read whole days, whole hours and raw
edges (no complement, no 6-hour level, one query per piece, no common snapshot)."""


def _baseline() -> ModuleType:
    """The baseline's `ledger/report.py`, loaded from git and pointed at its two roll-up levels."""
    code = subprocess.run(
        ["git", "show", f"{BASELINE}:src/maas_metrics/ledger/report.py"],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = ModuleType("baseline_ledger_report")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, "baseline_ledger_report.py", "exec"), module.__dict__)
    return module


def _schema2_rollups(engine: Engine) -> tuple[tuple[Table, int], ...]:
    """The baseline's roll-ups laid out as it made them: on SQLite rowid tables (schema 2;
    schema 3 makes them WITHOUT ROWID), copied from this branch's; on PostgreSQL the same."""
    if engine.dialect.name != "sqlite":
        return ((daily, DAY_MS), (hourly, HOUR_MS))
    meta = MetaData()
    out = []
    for table, size in ((daily, DAY_MS), (hourly, HOUR_MS)):
        columns = [Column(c.name, c.type, nullable=c.nullable) for c in table.c]
        copy = Table(f"schema2_{table.name}", meta, *columns, PrimaryKeyConstraint(*ROLLUP_KEY))
        copy.create(engine)
        with engine.begin() as conn:
            conn.execute(insert(copy).from_select(list(table.c.keys()), select(table)))
        out.append((copy, size))
    return tuple(out)


def _generate(engine: Engine, rows: int) -> float:
    """`rows` records over the 24 h from DATA0 by one INSERT ... SELECT; returns seconds."""
    start_ms = int(DATA0.timestamp() * 1000)
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


def _seconds(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def _in_range(engine: Engine, rng: tuple[datetime, datetime]) -> int:
    a, b = (round(t.timestamp() * 1000) for t in rng)
    stmt = text("SELECT count(*) FROM ledger_records WHERE ended_ms > :a AND ended_ms <= :b")
    with engine.connect() as conn:
        return int(conn.execute(stmt, {"a": a, "b": b}).scalar_one())


def scale_bench(
    rows: int, repeat: int, pg: PostgresServer, workdir: Path, stores: tuple[str, ...]
) -> list[str]:
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
    old = _baseline()
    ranges = {  # "last 24 h" at two moments off the hour, both crossing midnight
        "last 24 h to 11:37:03": END_A,
        "last 24 h to 06:29:58": END_B,
    }
    lines = [
        f"Ledger at scale: {rows:,} records over 24 h (12:00 to 12:00 UTC), {USERS:,} users, "
        f"3 models; median of {repeat} interleaved runs; before = commit {BASELINE[:7]} "
        "(its reader: daily + hourly roll-ups + raw edges, one query per piece; on SQLite its "
        "rowid roll-up tables), after = this branch:",
        "",
        "| store | generate | rebuild roll-ups | range | records in range | report by user before | after | after / before | reconcile ledger side before | after | after / before |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = {
        "sqlite": ("SQLite", f"sqlite:///{workdir}/scale.db"),
        "postgresql": ("PostgreSQL", pg.url),
    }
    for name, url in (targets[key] for key in stores):
        store = LedgerStore(url)
        store.open()
        engine = store.engine
        generate = _generate(engine, rows)
        if store.dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE ledger_records"))
        began = time.perf_counter()
        rollup_rows = rebuild(engine)
        rebuild_s = time.perf_counter() - began
        if store.dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table, _ in ROLLUPS:
                    conn.execute(text(f"VACUUM ANALYZE {table.name}"))
        old.__dict__["ROLLUPS"] = _schema2_rollups(engine)
        first = True
        for label, end in ranges.items():
            rng = (end - timedelta(days=1), end)
            new_report = build_ledger_report(engine, config, *rng, ("user",), {})
            old_report = old.build_ledger_report(engine, config, *rng, ("user",), {})
            _same(new_report, old_report)
            assert ledger_side(engine, *rng) == _old_ledger_side(old, engine, rng)
            times: dict[str, list[float]] = {k: [] for k in ("old", "new", "old_rec", "new_rec")}
            for r in range(repeat):
                steps = _steps(old, engine, config, rng)
                if r % 2:
                    steps.reverse()
                for key, action in steps:
                    times[key].append(_seconds(action))
            m = {k: statistics.median(v) for k, v in times.items()}
            head = (
                f"| {name} | {generate:.1f} s | {rebuild_s:.1f} s ({rollup_rows:,} rows) "
                if first
                else "| | | "
            )
            first = False
            lines.append(
                f"{head}| {label} | {_in_range(engine, rng):,} | {m['old']:.2f} s | {m['new']:.2f} s "
                f"| {m['new'] / m['old']:.2f} | {m['old_rec']:.2f} s | {m['new_rec']:.2f} s "
                f"| {m['new_rec'] / m['old_rec']:.2f} |"
            )
            benchlib.console.print(lines[-1])
        store.close()
    return lines


def _same(new: Report, old: Report) -> None:
    """The same rows (integers exact; costs are float sums, added in another order)."""
    assert len(new.rows) == len(old.rows) == USERS, (len(new.rows), len(old.rows))
    mine = {row.key: row.totals for row in new.rows}
    for row in old.rows:
        got = mine[row.key]
        assert (got.tokens, got.allowed, got.limited) == (
            row.totals.tokens,
            row.totals.allowed,
            row.totals.limited,
        ), row.key
        assert abs(got.cost - row.totals.cost) <= 1e-9 * max(1.0, row.totals.cost), row.key


def _steps(
    old: ModuleType, engine: Engine, config: Config, rng: tuple[datetime, datetime]
) -> list[tuple[str, Callable[[], object]]]:
    """Before and after, report and reconcile's ledger side, over one range."""
    by = ("user",)
    return [
        ("old", lambda: old.build_ledger_report(engine, config, *rng, by, {})),
        ("new", lambda: build_ledger_report(engine, config, *rng, by, {})),
        (
            "old_rec",
            lambda: (_old_ledger_side(old, engine, rng), edge_slack(engine, list(rng), 30.0)),
        ),
        ("new_rec", lambda: (ledger_side(engine, *rng), edge_slack(engine, list(rng), 30.0))),
    ]


def _old_ledger_side(
    old: ModuleType, engine: Engine, rng: tuple[datetime, datetime]
) -> dict[tuple[str, str, str], dict[str, int]]:
    """`reconcile.ledger_side` over the baseline's reader (the same sums, its way)."""
    out: dict[tuple[str, str, str], dict[str, int]] = {}
    for (user, _tier, model, ns, _day), a in old.read_cells(engine, *rng, {}).items():
        row = out.setdefault((user, model, ns), {"tokens": 0, "allowed": 0, "limited": 0})
        row["tokens"] += a.tokens
        row["allowed"] += a.allowed
        row["limited"] += a.limited
    return out


# --- the store's write path alone ------------------------------------------------------------


def writer_bench(
    rounds: int, pg: PostgresServer, workdir: Path, stores: tuple[str, ...]
) -> list[str]:
    """CPU per record of `LedgerStore.write`: 20,000 time-ordered records in batches of 200 after
    20,000 already written, with random ids (uuid4, the baseline's) vs this branch's ids."""
    from tests.ledger_data import random_records

    base = sorted(random_records(40_000, seed=3, span_seconds=3600), key=lambda r: r.ended)
    ids = {
        "random ids (uuid4)": [uuid.uuid4().hex for _ in base],
        "time-ordered ids (new_id)": [
            f"{round(r.ended * 1000):012x}{random.getrandbits(80):020x}" for r in base
        ],
    }
    cpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(rounds):
        for store_name in stores:
            for kind, chosen in ids.items():
                recs = [dataclasses.replace(rec, id=i) for rec, i in zip(base, chosen, strict=True)]
                if store_name == "sqlite":
                    url = f"sqlite:///{workdir}/writer-{r}-{len(cpu)}.db"
                else:
                    pg.reset()
                    url = pg.url
                store = LedgerStore(url)
                store.open()
                for i in range(0, 20_000, 200):
                    store.write(recs[i : i + 200])
                database = "postgres" if store_name == "postgresql" else None
                before, began = _cpu_of(os.getpid(), database), time.process_time()
                for i in range(20_000, 40_000, 200):
                    store.write(recs[i : i + 200])
                client = time.process_time() - began
                server = _cpu_of(os.getpid(), database)["database"] - before["database"]
                store.close()
                cpu.setdefault((store_name, kind), []).append((client / 20_000, server / 20_000))
    lines = [
        f"LedgerStore.write alone: CPU per record, 20,000 time-ordered records in batches of 200 "
        f"after 20,000 written (median of {rounds} interleaved rounds; the database column is "
        "the PostgreSQL backend's CPU):",
        "",
        "| store | ids | this process | database | total |",
        "|---|---|---:|---:|---:|",
    ]
    for (store_name, kind), values in cpu.items():
        client = statistics.median(v[0] for v in values) * 1e6
        server = statistics.median(v[1] for v in values) * 1e6
        lines.append(
            f"| {store_name} | {kind} | {client:.1f} us | {server:.1f} us | {client + server:.1f} us |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("gateway", "report", "writer", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--stores",
        type=lambda text: tuple(text.split(",")),
        default=("sqlite", "postgresql"),
        help="the ledgers to run (comma-separated: sqlite,postgresql)",
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gateway: also run the baseline commit's code with each ledger",
    )
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
                out += [
                    *gateway_bench(
                        args.rounds, args.seconds, pg, workdir, args.baseline, args.stores
                    ),
                    "",
                ]
                pg.reset()
            if args.part in ("writer", "all"):
                out += [*writer_bench(args.rounds, pg, workdir, args.stores), ""]
                pg.reset()
            if args.part in ("report", "all"):
                out += [*scale_bench(args.rows, args.repeat, pg, workdir, args.stores), ""]
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
