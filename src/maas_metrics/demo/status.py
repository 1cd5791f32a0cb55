"""A compact traffic summary per tier, read straight from the gateway's `/metrics`.

The demo shows it in the terminal while running; it reads the gateway rather
than Prometheus so it still works when Prometheus lags or is being scraped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from maas_metrics.config import Config
from maas_metrics.contract import CALLS, HITS, LIMITED, NAMESPACE, TIER, USER


@dataclass
class TierTraffic:
    users: set[str] = field(default_factory=set)
    served: float = 0.0  # admitted by both policies (the token check comes last)
    limited: float = 0.0
    tokens: float = 0.0


def summarise(exposition: str, config: Config) -> dict[str, TierTraffic]:
    """Per configured tier (in level order): active users, served and limited calls, tokens."""
    tiers = {t.name: TierTraffic() for t in config.tiers_by_level()}
    tokens_ns = config.namespaces.tokens
    for family in text_string_to_metric_families(exposition):
        if family.name not in (CALLS, LIMITED, HITS):
            continue
        for sample in family.samples:
            tier = tiers.get(sample.labels.get(TIER, ""))
            if tier is None:
                continue
            namespace = sample.labels.get(NAMESPACE)
            if family.name == LIMITED:
                tier.limited += sample.value
                tier.users.add(sample.labels.get(USER, ""))
            elif namespace == tokens_ns and family.name == CALLS:
                tier.served += sample.value
                tier.users.add(sample.labels.get(USER, ""))
            elif namespace == tokens_ns:
                tier.tokens += sample.value
    return tiers


def fetch_summary(metrics_url: str, config: Config) -> dict[str, TierTraffic] | None:
    """The summary, or None when the gateway does not answer."""
    try:
        response = httpx.get(metrics_url, timeout=2)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    try:
        return summarise(response.text, config)
    except ValueError:  # not a Prometheus exposition (something else on that port)
        return None
