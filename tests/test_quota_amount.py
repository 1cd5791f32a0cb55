"""How much a reservation holds, and the config fields that choose the token policy mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from maas_metrics.config import load_config
from maas_metrics.policies import ReservationRule, tier_policies
from tests.conftest import EXAMPLE_CONFIG

RULE = ReservationRule(cap=50, ttl_seconds=60)


@pytest.mark.parametrize(
    ("payload", "held"),
    [
        # max_tokens + ceil(chars / 4): "hello" is 5 characters -> 2 tokens.
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]}, 12),
        # max_completion_tokens wins over max_tokens; text parts and several messages count.
        (
            {
                "max_completion_tokens": 3,
                "max_tokens": 40,
                "messages": [
                    {"role": "system", "content": "abcd"},
                    {"role": "user", "content": [{"type": "text", "text": "efghi"}]},
                ],
            },
            3 + 3,  # 9 characters -> 3 tokens
        ),
        ({"max_tokens": 7, "prompt": ["12345678", "1"]}, 7 + 3),  # completions prompt list
        ({"max_tokens": 45, "prompt": "x" * 40}, 50),  # 45 + 10, capped at 50
        ({"messages": [{"role": "user", "content": "no bound"}]}, 50),  # no bound: the cap
        ({"max_tokens": True, "prompt": "x"}, 50),  # not a count: as if absent
        ({"max_tokens": -3, "prompt": "x"}, 50),
        ({"max_tokens": 4, "prompt": [1, 2, 3]}, 4),  # token ids carry no text to estimate
    ],
)
def test_reserved_amount(payload: dict[str, Any], held: int) -> None:
    assert RULE.amount(payload) == held


def test_reservation_mode_is_per_tier_and_optimistic_by_default(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text()
    old = "token_limit: {max: 100, window_seconds: 60}"
    assert old in text
    path = tmp_path / "maas.yaml"
    path.write_text(
        text.replace(
            old,
            "token_limit: {max: 100, window_seconds: 60, mode: reservation,"
            " max_reservation_fraction: 0.25, reservation_ttl_seconds: 5}",
        )
    )
    policies = tier_policies(load_config(path))
    assert policies["free"].reservation == ReservationRule(cap=25, ttl_seconds=5)
    assert policies["premium"].reservation is None


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("mode: pessimistic", "tiers[0].token_limit.mode: Input should be 'optimistic' or"),
        ("max_reservation_fraction: 0", "tiers[0].token_limit.max_reservation_fraction"),
        ("max_reservation_fraction: 1.5", "tiers[0].token_limit.max_reservation_fraction"),
        ("reservation_ttl_seconds: 0", "tiers[0].token_limit.reservation_ttl_seconds"),
    ],
)
def test_bad_mode_fields_give_one_line_naming_the_field(
    tmp_path: Path, field: str, message: str
) -> None:
    text = EXAMPLE_CONFIG.read_text()
    old = "token_limit: {max: 100, window_seconds: 60}"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, f"token_limit: {{max: 100, window_seconds: 60, {field}}}"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "maas-metrics"), "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
