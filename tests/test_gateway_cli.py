"""`maas-metrics gateway`: a bad config is one line and exit 2; the real command serves (see limits tests)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from maas_metrics.cli import app


def test_invalid_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "tiers:\n  - {name: free, level: 0, groups: [a], price_per_hit: -1}\n"
        "models:\n  - {name: m, upstream: http://127.0.0.1:1/v1}\n"
    )
    result = CliRunner().invoke(app, ["gateway", "--config", str(config), "--port", "0"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "tiers[0].price_per_hit" in lines[0]


def test_missing_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gateway", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_help_explains_the_command() -> None:
    result = CliRunner().invoke(app, ["gateway", "--help"])
    assert result.exit_code == 0
    for option in ("--config", "--host", "--port"):
        assert option in result.stdout
    assert "Limitador" in result.stdout
