"""A tier without limits is still metered: its tokens are billable, no policy check is counted."""

from __future__ import annotations

from typing import Any

import openai

from maas_metrics.config import parse_config
from tests.gateway_harness import (
    REQUESTS_NS,
    TOKENS_NS,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
)


def test_tier_without_limits_meters_tokens_and_never_limits() -> None:
    with running_mock() as mock:
        data: dict[str, Any] = make_config(mock.url).model_dump(mode="json")
        enterprise = next(t for t in data["tiers"] if t["name"] == "enterprise")
        enterprise["request_limit"] = enterprise["token_limit"] = None
        with running_gateway(parse_config(data)) as gateway:
            client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=secret("frank"), max_retries=0)
            usages = [
                client.chat.completions.create(
                    model="mistral-7b", messages=[{"role": "user", "content": f"question {i}"}]
                ).usage
                for i in range(60)  # more than any configured request limit
            ]
            client.close()
            metrics = scrape(gateway)

    assert all(u is not None for u in usages)
    total = sum(u.total_tokens for u in usages if u)
    prompt = sum(u.prompt_tokens for u in usages if u)
    completion = sum(u.completion_tokens for u in usages if u)
    # (The parser drops the `_total` suffix from family names.)
    assert metrics[usage_key("authorized_hits", TOKENS_NS, "frank", "mistral-7b")] == total
    assert metrics[usage_key("maas_prompt_tokens", TOKENS_NS, "frank", "mistral-7b")] == prompt
    assert (
        metrics[usage_key("maas_completion_tokens", TOKENS_NS, "frank", "mistral-7b")] == completion
    )
    # No policy applies, so no check is counted and no quota is published for the tier.
    for name in ("authorized_calls", "limited_calls"):
        assert not [k for k in metrics if k[0] == name and ("user", "frank") in k[1]]
    assert usage_key("authorized_hits", REQUESTS_NS, "frank", "mistral-7b") not in metrics
    assert not [k for k in metrics if k[0] == "maas_limit_max" and ("tier", "enterprise") in k[1]]
