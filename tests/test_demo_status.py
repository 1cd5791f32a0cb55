"""The demo's terminal summary per tier equals what the official openai client saw.

Traffic goes through a real gateway to the mock model; free-tier alice keeps
sending past her request limit, so some of her calls are refused. The summary
read from the gateway's `/metrics` (demo/status.py) must count, per tier, the
answered calls, the refused ones, the tokens the client was billed and the
users who called, as counted on the client side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from maas_metrics.config import Config
from maas_metrics.demo.status import TierTraffic, fetch_summary
from tests.gateway_harness import (
    TIER_OF,
    GatewayURL,
    make_config,
    running_gateway,
    running_mock,
    secret,
)
from tests.servers import free_port

#: user -> requests sent; alice's free tier admits 5 requests per 120 s.
TRAFFIC = {"alice": 8, "bob": 1, "dave": 3, "frank": 2}


@dataclass
class Served:
    config: Config
    gateway: GatewayURL
    mock_url: str  # ends in /v1
    truth: dict[str, TierTraffic]  # tier -> what the client saw


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with running_mock() as mock:
        config = make_config(mock.url)
        with running_gateway(config) as url:
            truth: dict[str, TierTraffic] = defaultdict(TierTraffic)
            for user, count in TRAFFIC.items():
                client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret(user), max_retries=0)
                tier = truth[TIER_OF[user]]
                for _ in range(count):
                    try:
                        answer = client.chat.completions.create(
                            model="granite-8b",
                            messages=[{"role": "user", "content": "hi"}],
                            max_tokens=3,
                        )
                    except openai.RateLimitError:
                        tier.limited += 1
                    else:
                        assert answer.usage is not None
                        tier.served += 1
                        tier.tokens += answer.usage.total_tokens
                    tier.users.add(user)
            yield Served(config, url, mock.url, dict(truth))


def test_summary_counts_what_the_client_saw(served: Served) -> None:
    config, url, truth = served.config, served.gateway, served.truth
    assert truth["free"].limited > 0 and truth["free"].served > 0  # the limit did bite
    fetch_summary(f"{url.operator}/metrics", config)  # new series are exposed at 0 first
    summary = fetch_summary(f"{url.operator}/metrics", config)
    assert summary is not None
    assert list(summary) == [t.name for t in config.tiers_by_level()]
    for name, tier in summary.items():
        want = truth.get(name, TierTraffic())
        assert (tier.served, tier.limited, tier.tokens) == (want.served, want.limited, want.tokens)
        assert tier.users == want.users, name


def test_no_gateway_or_no_exposition_gives_no_summary(served: Served) -> None:
    config = served.config
    assert fetch_summary(f"http://127.0.0.1:{free_port()}/metrics", config) is None  # refused
    assert fetch_summary(f"{served.gateway}/v1/models", config) is None  # 401 without a key
    assert fetch_summary(f"{served.mock_url}/models", config) is None  # 200, JSON not metrics
