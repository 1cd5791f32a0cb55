"""API key -> identity. The key alone decides user, tier and limits; no header or body field can.

The table is built once from the config, so a request costs one SHA-256 and
one dict look-up and never walks the config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from maas_metrics import contract
from maas_metrics.config import Config
from maas_metrics.gateway import errors
from maas_metrics.ledger.record import key_id
from maas_metrics.limiter import Limit
from maas_metrics.policies import TierPolicies


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling and which limits apply: the source of every metric label but `model`.

    `tier` is the billing dimension's value (a tier or a subscription);
    `labels` are the values of `contract.Schema.identity_labels` (user when
    captured, the dimension, the captured attribution labels, a missing one
    as `schema.missing_value`), built once per key.
    """

    user: str
    tier: str
    requests: Limit | None
    tokens: Limit | None
    token_namespace: str  # where token usage is metered, with or without a token limit
    labels: tuple[str, ...]
    key_id: str = ""  # short prefix of the key's SHA-256, for the ledger (never the key)


class KeyTable:
    """SHA-256 digest of a key -> `Identity` (or the user name when no tier matches: 403)."""

    def __init__(self, config: Config, policies: dict[str, TierPolicies]) -> None:
        self._identities: dict[str, Identity] = {}
        self._tierless: dict[str, str] = {}
        schema = config.contract
        for key in config.api_keys:
            tier = config.tier_for_groups(key.groups)
            if tier is None:
                self._tierless[key.sha256] = key.user
                continue
            limits = policies[tier.name]
            values = {
                contract.USER: key.user,
                schema.dimension: tier.name,
                **config.attributes(key, config.matched_group(key.groups, tier)),
            }
            self._identities[key.sha256] = Identity(
                user=key.user,
                tier=tier.name,
                requests=limits.requests,
                tokens=limits.tokens,
                token_namespace=config.namespaces.tokens,
                labels=tuple(values[label] for label in schema.identity_labels),
                key_id=key_id(key.sha256),
            )

    def authenticate(self, authorization: str | None) -> Identity:
        """Identity of an `Authorization: Bearer <key>` header; 401 without a valid key, 403 without a tier."""
        if not authorization:
            raise errors.missing_key()
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip(" \t")  # HTTP whitespace only: str.strip() would also eat \x85, \xa0
        if scheme.lower() != "bearer" or not secret:
            raise errors.missing_key()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        identity = self._identities.get(digest)
        if identity is not None:
            return identity
        user = self._tierless.get(digest)
        if user is not None:
            raise errors.no_tier(user)
        raise errors.invalid_key()
