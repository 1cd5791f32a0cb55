"""The ledger from the command line: bad config is one line and exit 2; check, export, prune, report."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import yaml

from maas_metrics.ledger import LedgerStore
from tests.gateway_harness import make_config, write_config
from tests.ledger_data import random_records
from tests.servers import free_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "maas-metrics"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def config_with(tmp_path: Path, ledger: dict[str, object]) -> Path:
    path = write_config(make_config("http://127.0.0.1:9/v1"), tmp_path / "maas.yaml")
    data = yaml.safe_load(path.read_text())
    data["ledger"] = ledger
    path.write_text(yaml.safe_dump(data))
    return path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_scheme_is_one_line_exit_2(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"url": "mysql://u:pw@db/ledger"})
    for command in (
        ["gateway", "-c", str(path), "--port", "0"],
        ["ledger", "check", "-c", str(path)],
    ):
        result = run(*command)
        assert result.returncode == 2
        line = one_error_line(result)
        assert "ledger.url" in line and "unknown scheme 'mysql'" in line and "pw" not in line


def test_unreachable_database_at_start_is_one_line_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://maas:topsecret@127.0.0.1:{free_port()}/ledger"
    path = config_with(tmp_path, {"url": url})
    port = free_port()
    result = run("gateway", "-c", str(path), "--port", str(port))
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("error: ledger postgresql+psycopg://maas:***@127.0.0.1")
    assert "topsecret" not in line


def test_read_only_database_file_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    LedgerStore(f"sqlite:///{db}").open()
    path = config_with(tmp_path, {"url": f"sqlite:///file:{db}?mode=ro&uri=true"})
    result = run("gateway", "-c", str(path), "--port", str(free_port()))
    assert result.returncode == 2
    assert "readonly database" in one_error_line(result)


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"url": f"sqlite:///{tmp_path}/nowhere/ledger.db"})
    result = run("ledger", "check", "-c", str(path))
    assert result.returncode == 2
    assert "does not exist" in one_error_line(result)


def test_check_export_report_and_prune(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    path = config_with(tmp_path, {"url": f"sqlite:///{db}", "retention_days": 3650})
    store = LedgerStore(f"sqlite:///{db}")
    store.open()
    recs = random_records(200, seed=9)
    store.write(recs)
    store.close()
    assert run("ledger", "check", "-c", str(path)).stdout.endswith("ok, 200 records\n")

    window = ["--from", "2026-11-01", "--to", "2026-11-10"]
    jsonl = run("ledger", "export", "-c", str(path), *window, "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(r.id for r in recs)
    raw = run("ledger", "export", "-c", str(path), *window, "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(raw.stdout)))) == 200

    # The report reads the ledger when one is configured; tokens per day add up to the records.
    report = run("report", "-c", str(path), *window, "--by", "day", "--format", "json")
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    assert doc["total"]["tokens"] == sum(r.total_tokens for r in recs)
    assert len(doc["rows"]) == 3  # the records span three UTC days
    bad_by = run("report", "-c", str(path), *window, "--by", "week")
    assert bad_by.returncode == 1 and "--by 'week'" in one_error_line(bad_by)

    # Retention: nothing is older than 3650 days; --days 1 drops everything (records are from 2026-11).
    assert "pruned 0 records" in run("ledger", "prune", "-c", str(path)).stdout
    pruned = run("ledger", "prune", "-c", str(path), "--days", "1")
    assert "pruned 200 records" in pruned.stdout, pruned.stdout + pruned.stderr


def test_url_from_the_environment(tmp_path: Path) -> None:
    import os

    path = config_with(tmp_path, {"url_env": "MAAS_TEST_LEDGER_URL"})
    command = [
        str(Path(sys.executable).parent / "maas-metrics"),
        "ledger",
        "check",
        "-c",
        str(path),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MAAS_TEST_LEDGER_URL"}
    unset = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert unset.returncode == 2
    assert "MAAS_TEST_LEDGER_URL is not set" in one_error_line(unset)
    env["MAAS_TEST_LEDGER_URL"] = f"sqlite:///{tmp_path}/from-env.db"
    ok = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "ok, 0 records" in ok.stdout, ok.stderr
    assert (tmp_path / "from-env.db").exists()


def test_manifests_take_the_database_url_from_a_secret(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"url": "postgresql://maas:hunter2@db.internal/ledger"})
    result = run(
        "manifests",
        "-c",
        str(path),
        "--part",
        "gateway",
        "--image",
        "registry.example/maas:1",
        "--allow-loopback-upstreams",
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "db.internal" not in result.stdout
    docs = list(yaml.safe_load_all(result.stdout))
    deployment = next(
        d
        for d in docs
        if d["kind"] == "Deployment"
        and "gateway" in str(d["spec"]["template"]["spec"]["containers"][0].get("args"))
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {
            "name": "MAAS_LEDGER_URL",
            "valueFrom": {"secretKeyRef": {"name": "maas-ledger", "key": "url"}},
        }
    ]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    deployed = yaml.safe_load(next(iter(config_map["data"].values())))
    assert deployed["ledger"]["url"] is None and deployed["ledger"]["url_env"] == "MAAS_LEDGER_URL"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert deployed["ledger"]["spool_path"].rsplit("/", 1)[0] in mounts


def test_rules_alert_on_the_ledger_when_one_is_configured(tmp_path: Path) -> None:
    with_ledger = run("rules", "-c", str(config_with(tmp_path, {"url": "sqlite:///x.db"})))
    assert with_ledger.returncode == 0, with_ledger.stderr
    assert (
        "MaaSLedgerBehind" in with_ledger.stdout and "MaaSLedgerRecordsLost" in with_ledger.stdout
    )
    plain = write_config(make_config("http://127.0.0.1:9/v1"), tmp_path / "plain.yaml")
    assert "MaaSLedger" not in run("rules", "-c", str(plain)).stdout
