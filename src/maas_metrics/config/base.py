"""Shared pieces of every config section: name patterns, checked text, the strict model, the error."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)

from maas_metrics.contract import (
    AttributionLabel,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


def _encodable(value: str) -> str:
    """Reject lone surrogates: they cannot be written as UTF-8, so /metrics could not show them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
"""A string that becomes a metric label or a PromQL value: non-empty is checked where needed."""


def _unique(values: list[str], where: str, field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: duplicate {field} {value!r}")
        seen.add(value)


class ConfigError(Exception):
    """A config that cannot be used; `str()` is one line naming the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Attributes = dict[AttributionLabel, Annotated[Text, Field(min_length=1)]]
"""Attribution label -> value (e.g. `cost_center: cc-100`), set per group or per key."""
