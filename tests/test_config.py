"""Config validation: one line naming the field, for the problems users actually make."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from maas_metrics.config import ConfigError, load_config
from tests.fixtures import CLI, EXAMPLE_CONFIG


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "config", "check", str(path)],
        capture_output=True,
        text=True,
    )


def test_example_config_is_valid() -> None:
    result = run_check(EXAMPLE_CONFIG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 tiers")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("level: 0", "level: zero", "tiers[0].level: Input should be a valid integer"),
        (
            "max: 5, window_seconds: 120",
            "max: 5, window_seconds: 0",
            "tiers[0].request_limit.window_seconds",
        ),
        ("url: memory", "url: mysql://x", "storage.url: String should match pattern"),
        (
            "on_failure: deny",
            "on_failure: maybe",
            "storage.on_failure: Input should be 'deny' or 'allow'",
        ),
        (
            "on_failure: deny",
            "on_failure: deny\n  max_connections: 0",
            "storage.max_connections: Input should be greater than or equal to 1",
        ),
        (
            "  - user: alice",
            '  - user: "\\ud800"',
            "api_keys[0].user: must be valid Unicode text",
        ),
        ("name: premium", "name: free", "tiers: duplicate name 'free'"),
    ],
)
def test_bad_config_gives_one_line_naming_the_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = EXAMPLE_CONFIG.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    result = run_check(bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}: ")
    assert message in lines[0], lines[0]
    with pytest.raises(ConfigError):
        load_config(bad)


def test_unreadable_and_non_mapping_configs(tmp_path: Path) -> None:
    assert run_check(tmp_path / "missing.yaml").returncode == 2
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    result = run_check(scalar)
    assert result.returncode == 2 and "must be a YAML mapping" in result.stderr
