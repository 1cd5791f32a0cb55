"""The one validated configuration every part of maas-metrics reads.

Tiers, prices, limits, models, API keys and storage are defined here once;
the gateway, the dashboards, the report, the rules and the manifests all
derive from the same `Config` object, so a tier added to the YAML file
appears everywhere without code changes.

One module per section (`base`, `limits`, `tiers`, `upstreams`, `keys`,
`schema`, `gateway`, `storage`, `dashboard`), the top-level `Config` in
`model` and YAML loading in `loading`; every name is re-exported here, so
callers import from `maas_metrics.config` alone.
"""

from __future__ import annotations

from maas_metrics.config.base import (
    NAME_PATTERN,
    SHA256_PATTERN,
    Attributes,
    ConfigError,
    Text,
)
from maas_metrics.config.dashboard import REFRESH_PATTERN, RELATIVE_RANGE_PATTERN, Dashboard
from maas_metrics.config.gateway import (
    BindHost,
    ClientBounds,
    GatewaySettings,
    Metering,
    OperatorListener,
    Port,
    UsageSource,
    Workers,
    workers_refusal,
)
from maas_metrics.config.keys import ApiKey, hash_key
from maas_metrics.config.limits import KUADRANT_MAX_LIMIT, Budget, LimitSpec, TokenLimitSpec
from maas_metrics.config.loading import (
    describe_validation_error,
    load_config,
    parse_config,
    read_yaml,
)
from maas_metrics.config.model import Config
from maas_metrics.config.schema import (
    ROUTE_PATTERN,
    KuadrantRoutes,
    Namespaces,
    Route,
    SchemaSettings,
    Source,
)
from maas_metrics.config.storage import Ledger, Storage, check_ledger_url, mask_secrets
from maas_metrics.config.tiers import PriceChange, Tier
from maas_metrics.config.upstreams import Model, tls_context

__all__ = [
    "KUADRANT_MAX_LIMIT",
    "NAME_PATTERN",
    "REFRESH_PATTERN",
    "RELATIVE_RANGE_PATTERN",
    "ROUTE_PATTERN",
    "SHA256_PATTERN",
    "ApiKey",
    "Attributes",
    "BindHost",
    "Budget",
    "ClientBounds",
    "Config",
    "ConfigError",
    "Dashboard",
    "GatewaySettings",
    "KuadrantRoutes",
    "Ledger",
    "LimitSpec",
    "Metering",
    "Model",
    "Namespaces",
    "OperatorListener",
    "Port",
    "PriceChange",
    "Route",
    "SchemaSettings",
    "Source",
    "Storage",
    "Text",
    "Tier",
    "TokenLimitSpec",
    "UsageSource",
    "Workers",
    "check_ledger_url",
    "describe_validation_error",
    "hash_key",
    "load_config",
    "mask_secrets",
    "parse_config",
    "read_yaml",
    "tls_context",
    "workers_refusal",
]
