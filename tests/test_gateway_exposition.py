"""The live /metrics of the gateway passes `promtool check metrics`, hostile user names included."""

from __future__ import annotations

import subprocess

import httpx

from tests.gateway_harness import (
    TOKENS_NS,
    make_config,
    parse_metrics,
    running_gateway,
    running_mock,
    scrape_text,
    usage_key,
)
from tests.servers import require_binary

HOSTILE_USERS = {
    "quote": 'mal"lory',
    "backslash": "back\\slash\\",
    "newline": "new\nline",
    "unicode": "Zoë 東京 🚀",
    "braces": 'x} evil_metric{a="1"} 1\n# TYPE',
    "long": "u" * 10_240,
}
LIMITADOR_COUNTERS = ("authorized_hits", "authorized_calls", "limited_calls")


def test_promtool_accepts_metrics_with_hostile_user_names() -> None:
    users = {name: (["premium-users"], f"sk-hostile-{key}") for key, name in HOSTILE_USERS.items()}
    with (
        running_mock() as mock,
        running_gateway(make_config(mock.url, extra_users=users)) as gateway,
    ):
        for name, (_, key) in users.items():
            response = httpx.post(
                f"{gateway}/v1/chat/completions",
                json={"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert response.status_code == 200, (name, response.text)
        scrape_text(gateway)  # new series are born at 0; the second scrape shows their counts
        text = scrape_text(gateway)

    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
    )
    assert check.returncode != 1, check.stderr.decode()  # 1 = unparsable; 3 = lint findings only
    findings = set((check.stdout + check.stderr).decode().strip().splitlines())
    assert findings <= {
        f'{name} counter metrics should have "_total" suffix' for name in LIMITADOR_COUNTERS
    }

    # The label values come back exactly as the users are named.
    metrics = parse_metrics(text)
    for name in HOSTILE_USERS.values():
        assert (
            metrics[usage_key("authorized_calls", TOKENS_NS, name, "granite-8b", tier="premium")]
            == 1
        )
    assert not any(family.startswith("evil") for family, _ in metrics)
