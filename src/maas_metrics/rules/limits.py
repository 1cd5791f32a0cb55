"""The configured limits as data: recording rules that publish every limit as a series.

`maas_limit_max` exists only where our gateway runs; on a Kuadrant cluster
Limitador publishes no limits at all. These rules write the config's limits
into Prometheus with `vector()` and static labels, in both sources, so
"near quota" alerts and "headroom" panels work with no gateway of ours:

* `maas:limit_max{limitador_namespace, tier, policy, limit_name}`: the max
  (`subscription` instead of `tier` when that is the billing dimension);
* `maas:limit_window_seconds{...same labels}`: the window, in seconds.

One series per limit and `limitador_namespace` that holds its hits: the
gateway's two namespaces, or (source `kuadrant`) each HTTPRoute the policy
is on. The labels match `maas_limit_max`'s, so a query can read either.
"""

from __future__ import annotations

from typing import Any, Final

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.policies import request_namespaces, tier_policies, token_namespaces
from maas_metrics.promql import selector

GROUP_NAME: Final = "maas-metrics-limits"
LIMIT_MAX: Final = "maas:limit_max"
LIMIT_WINDOW: Final = "maas:limit_window_seconds"
GAUGE: Final = contract.LIMIT_MAX
"""The gateway's own gauge of the same numbers (labels limit_name, limitador_namespace, policy, tier)."""

Rule = dict[str, object]


def policy_namespaces(config: Config, policy: str) -> tuple[str, ...]:
    """The namespaces holding the hits of `policy` (`requests` or `tokens`) for the config's source."""
    return request_namespaces(config) if policy == "requests" else token_namespaces(config)


def limit_rules(config: Config) -> list[Rule]:
    """Two recording rules (max, window) per configured limit and namespace, in a stable order."""
    rules: list[Rule] = []
    for tier_name, policies in tier_policies(config).items():
        for policy, limit in (("requests", policies.requests), ("tokens", policies.tokens)):
            if limit is None:
                continue
            for namespace in policy_namespaces(config, policy):
                labels = {
                    contract.NAMESPACE: namespace,
                    config.contract.dimension: tier_name,
                    "policy": policy,
                    "limit_name": limit.name,
                }
                for record, value in ((LIMIT_MAX, limit.max_value), (LIMIT_WINDOW, limit.seconds)):
                    rules.append(
                        {"record": record, "expr": f"vector({value})", "labels": dict(labels)}
                    )
    return rules


def limits_group(config: Config) -> dict[str, Any]:
    """The rule group (for a Prometheus rule file or a PrometheusRule's `spec.groups`)."""
    return {"name": GROUP_NAME, "interval": "1m", "rules": limit_rules(config)}


def quota(matchers: list[str], dimension: str = "tier") -> str:
    """The max of the limits matching `matchers`, from the rules or else the gateway's gauge.

    `or` keeps the alert working where only one of the two exists; `max by`
    drops the gauge's instance labels so both have the same label set.
    `dimension`: the billing dimension's label (`tier` or `subscription`).
    """
    both = f"{selector(LIMIT_MAX, matchers)} or {selector(GAUGE, matchers)}"
    return f"max by (limitador_namespace, {dimension}) ({both})"


__all__ = [
    "GROUP_NAME",
    "LIMIT_MAX",
    "LIMIT_WINDOW",
    "limit_rules",
    "limits_group",
    "policy_namespaces",
    "quota",
]
