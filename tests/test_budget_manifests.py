"""Kuadrant manifests of a config with reservation mode and budgets: valid, and honest on stderr.

The release TokenRateLimitPolicy CRD has no reservation setting, so the
policies must be exactly those of the same config without reservation mode
or budgets (and pass the strict CRD check); the command says on stderr what
Kuadrant does not enforce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from tests.test_kuadrant_crds import crd_dir, documents, problems
from tests.test_manifests import KUADRANT_EXAMPLE

runner = CliRunner()


def generate(config: dict[str, Any], path: Path) -> tuple[list[dict[str, Any]], str]:
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["manifests", "-c", str(path), "--part", "kuadrant"])
    assert result.exit_code == 0, result.output
    return documents(result.stdout), result.stderr


def test_reservation_and_budgets_generate_nothing_invalid_and_are_named(tmp_path: Path) -> None:
    plain = yaml.safe_load(KUADRANT_EXAMPLE.read_text())
    fancy = yaml.safe_load(KUADRANT_EXAMPLE.read_text())
    fancy["tiers"][0]["token_limit"]["mode"] = "reservation"
    fancy["tiers"][0]["token_limit"]["max_reservation_fraction"] = 0.5
    fancy["tiers"][1]["budget"] = {"amount": 100, "unit": "usd", "enforcement": "soft"}
    plain_objects, plain_notes = generate(plain, tmp_path / "plain.yaml")
    objects, notes = generate(fancy, tmp_path / "fancy.yaml")
    assert objects == plain_objects
    assert crd_dir().is_dir()
    trlps = [d for d in objects if d["kind"] == "TokenRateLimitPolicy"]
    assert trlps and all(problems(d) == [] for d in trlps)
    tier = fancy["tiers"][0]["name"]
    assert f"note: token reservation mode of {tier} is not in the TokenRateLimitPolicy" in notes
    assert (
        f"note: monthly budgets ({fancy['tiers'][1]['name']}) have no Kuadrant equivalent" in notes
    )
    assert "note: GET /v1/usage and the My usage page have no Kuadrant equivalent" in notes
    assert "reservation" not in plain_notes and "budgets" not in plain_notes
