"""Who the synthetic users are: a keys file matched against the config, and the gateway to call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from maas_metrics.config import Config, ConfigError, hash_key, read_yaml


class TrafficError(Exception):
    """Input the generator cannot use or a gateway it cannot reach; `str()` is one line."""


@dataclass(frozen=True, slots=True)
class SimUser:
    """A synthetic user: the name and tier the gateway should derive from `key`."""

    name: str
    key: str
    tier: str


def load_keys(path: str | Path) -> dict[str, str]:
    """Read a keys file (`keys: {user: secret}`, as examples/demo-keys.yaml)."""
    path = Path(path)
    try:
        data = read_yaml(path, "keys file")
    except ConfigError as error:
        raise TrafficError(str(error)) from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not keys:
        raise TrafficError(
            f"{path}: expected a mapping `keys: {{user: secret}}` with at least one key"
        )
    for user, secret in keys.items():
        if not isinstance(user, str) or not user or not isinstance(secret, str) or not secret:
            raise TrafficError(f"{path}: keys.{user}: user and secret must be non-empty strings")
    return dict(keys)


def users_from_config(config: Config, keys: Mapping[str, str]) -> list[SimUser]:
    """Match each secret to its config entry by SHA-256 and give the user its tier."""
    by_hash = {entry.sha256: entry for entry in config.api_keys}
    users: list[SimUser] = []
    for name, secret in keys.items():
        entry = by_hash.get(hash_key(secret))
        if entry is None:
            raise TrafficError(f"keys.{name}: this key is not in the config's api_keys")
        if entry.user != name:
            raise TrafficError(f"keys.{name}: the config gives this key to user {entry.user!r}")
        tier = config.tier_for_groups(entry.groups)
        if tier is None:
            raise TrafficError(f"keys.{name}: groups {entry.groups} match no tier of the config")
        users.append(SimUser(name, secret, tier.name))
    return users


def api_base(gateway_url: str) -> str:
    """The OpenAI base URL (ending in /v1) of a gateway given with or without /v1."""
    base = gateway_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TrafficError(f"gateway URL {gateway_url!r} must start with http:// or https://")
    return base if base.endswith("/v1") else base + "/v1"
