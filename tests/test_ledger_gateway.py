"""The ledger behind the running gateway, with the official openai client, on SQLite and PostgreSQL.

One row per request with the outcome and tokens the client saw; the ledger
report equals the clients' counts; a FOCUS export loads back with the
report's totals; `reconcile` finds zero difference against a real
Prometheus scraping the gateway.
"""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from maas_metrics.ledger import LedgerStore
from maas_metrics.ledger.export import FOCUS_COLUMNS, focus_rows, to_focus_csv
from maas_metrics.ledger.reconcile import reconcile
from maas_metrics.ledger.reconcile_log import last_run
from maas_metrics.ledger.report import build_ledger_report
from maas_metrics.ledger.schema import records
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess, ScrapeTarget
from maas_metrics.report import TimeRange
from tests.gateway_harness import RunningMock, running_gateway, running_mock, write_config
from tests.ledger_gateway import (
    expected_counts,
    expected_rows,
    ledger_config,
    mixed_scenario,
    scrape_after,
    wait_for_rows,
)
from tests.postgres_server import PostgresServer, postgres_server


@pytest.fixture(scope="module")
def mock() -> Iterator[RunningMock]:
    with running_mock() as server:
        yield server


@pytest.fixture(scope="module")
def slow() -> Iterator[RunningMock]:
    with running_mock(latency_ms=3000) as server:
        yield server


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    server: PostgresServer = request.getfixturevalue("pg")
    server.reset()
    return server.url


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "maas-metrics"), *args]
    env = {**os.environ, "COLUMNS": "300"}  # a wide terminal: rich folds no cell
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_mixed_scenario_ledger_report_focus_and_reconcile(
    mock: RunningMock, slow: RunningMock, ledger_url: str, tmp_path: Path
) -> None:
    config = ledger_config(mock.url, slow.url, ledger_url, tmp_path / "spool")
    config_path = write_config(config, tmp_path / "maas.yaml")
    with running_gateway(config) as base:
        port = int(base.operator.rsplit(":", 1)[1])  # /metrics is on the operator listener
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            targets=[ScrapeTarget("gateway", f"127.0.0.1:{port}")],
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        with prometheus, PrometheusAPI(prometheus.url) as api:
            # Priming: every series the scenario touches exists before the range starts (the
            # gateway's counters are born at their first increment, which `increase` cannot see).
            primed = mixed_scenario(base)
            wait_for_rows(ledger_url, len(primed))
            scrape_after(api, time.time() + 0.1)
            start = math.ceil(time.time())  # after every priming record (a floor could precede one)
            scrape_after(api, start + 0.1)
            outcomes = mixed_scenario(base)  # the measured run
            rows = wait_for_rows(ledger_url, len(primed) + len(outcomes))
            scrape_after(api, time.time() + 0.1)
            end = math.ceil(time.time())
            scrape_after(api, end + 0.1)

            measured = [r for r in rows if start * 1000 < r["ended_ms"] <= end * 1000]
            assert len(rows) == len(primed) + len(outcomes)
            assert len({r["id"] for r in rows}) == len(rows)
            got = Counter(
                (
                    r["user_name"],
                    r["model"],
                    r["outcome"],
                    r["prompt_tokens"],
                    r["completion_tokens"],
                    r["total_tokens"],
                )
                for r in measured
            )
            slow_rows = [
                (r["started_ms"] / 1000 - start, r["ended_ms"] / 1000 - start, r["outcome"])
                for r in rows
                if r["model"] == "slow-model"
            ]
            assert got == expected_rows(outcomes), (slow_rows, end - start)
            # The measured run has every outcome, and 429 rows name their limit.
            assert {r["outcome"] for r in measured} >= {
                "ok",
                "rate_limited",
                "upstream_error",
                "client_disconnect",
            }
            for r in measured:
                if r["outcome"] == "rate_limited":
                    assert r["limit_name"] in ("free-requests", "free-tokens"), r
                assert len(r["key_id"]) == 12 and r["status"] in (200, 429, 499, 502), r

            # The ledger report equals the clients' counts.
            store = LedgerStore(ledger_url)
            rng = (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
            report = build_ledger_report(
                store.engine, config, *rng, ("user", "model", "namespace"), {}
            )
            from_report = {
                row.key: [int(row.totals.tokens), int(row.totals.allowed), int(row.totals.limited)]
                for row in report.rows
            }
            assert from_report == expected_counts(outcomes)

            # FOCUS export loads back with the expected columns and the report's totals.
            text = to_focus_csv(focus_rows(store.engine, config, *rng))
            loaded = list(csv.DictReader(io.StringIO(text)))
            assert tuple(loaded[0].keys()) == FOCUS_COLUMNS
            assert sum(int(r["ConsumedQuantity"]) for r in loaded) == report.total.tokens
            assert sum(float(r["BilledCost"]) for r in loaded) == pytest.approx(
                report.total.cost, rel=1e-12
            )
            assert {r["SkuId"] for r in loaded} == {
                f"{m}/tokens" for (_, m, _), v in expected_counts(outcomes).items() if v[0]
            }

            # Reconcile: the ledger and Prometheus agree exactly.
            result = reconcile(
                store.engine, api, config, TimeRange(*rng), resolution=1.0, edge_seconds=0.5
            )
            assert result.differences == (), result.differences
            assert result.ledger_totals == result.prometheus_totals
            assert result.ledger_totals["tokens"] > 0 and result.ledger_totals["limited"] > 0
            common = [
                "-c",
                str(config_path),
                "-p",
                prometheus.url,
                "--from",
                rng[0].isoformat(),
                "--to",
                rng[1].isoformat(),
                "--resolution",
                "1s",
                "--edge",
                "1s",
            ]
            agreed = _run_cli("reconcile", *common)
            assert agreed.returncode == 0, agreed.stdout + agreed.stderr
            assert "0 differences" in agreed.stdout
            recorded = last_run(store.engine)  # for the web dashboard
            assert recorded is not None and recorded.ok and recorded.differences == 0
            assert (recorded.start, recorded.end) == rng
            assert (
                recorded.ledger_tokens
                == recorded.prometheus_tokens
                == sum(r["total_tokens"] for r in measured)
            )
            assert recorded.limiter_checked is None  # counters in memory: not reachable

            # A lost record is found, with its likely cause, and fails the check.
            lost = next(r for r in measured if r["outcome"] == "ok")
            with store.engine.begin() as conn:
                conn.execute(delete(records).where(records.c.id == lost["id"]))
            store.close()
            disagreed = _run_cli("reconcile", *common)
            assert disagreed.returncode == 1, disagreed.stdout + disagreed.stderr
            assert "ledger records missing" in disagreed.stdout
            assert f"-{lost['total_tokens']}" in disagreed.stdout
            again = LedgerStore(ledger_url)
            recorded = last_run(again.engine)
            again.close()
            assert recorded is not None and not recorded.ok and recorded.beyond >= 1
            assert recorded.prometheus_tokens - recorded.ledger_tokens == lost["total_tokens"]
