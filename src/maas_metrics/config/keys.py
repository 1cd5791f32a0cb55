"""API keys, kept only as SHA-256 digests of their secrets."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import (
    Field,
)

from maas_metrics.config.base import SHA256_PATTERN, Attributes, Text, _Strict
from maas_metrics.config.limits import Budget


class ApiKey(_Strict):
    """An API key, stored only as the SHA-256 hex digest of the secret.

    `attributes` (optional) set the key's attribution labels; they win over
    the values of its groups (`schema.groups`).
    """

    user: Annotated[Text, Field(min_length=1)]
    groups: Annotated[list[Text], Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]
    attributes: Attributes = {}
    budget: Budget | None = None  # this user's monthly budget, instead of the tier's


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
