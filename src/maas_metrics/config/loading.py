"""Reading a YAML config and turning validation errors into one line naming the field."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import (
    ValidationError,
)

from maas_metrics.config.base import ConfigError
from maas_metrics.config.model import Config
from maas_metrics.yamlio import YamlFileError, load_file


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe_validation_error(error: ValidationError) -> str:
    """One line: the first problem's field path and message, plus how many more there are."""
    problems = error.errors()
    first = problems[0]
    loc = tuple(
        p
        for p in first["loc"]
        if not (isinstance(p, str) and (re.match(r"^function-", p) or p == "[key]"))
    )
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    if not loc:  # a whole-config rule: its message names the fields itself
        return f"{message}{more}"
    return f"{_format_location(loc)}: {message}{more}"


def parse_config(data: object) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        message = describe_validation_error(error)
        if _dimension(data) == "subscription" and message.startswith("tiers"):
            message = "subscriptions" + message.removeprefix("tiers")  # the YAML's name
        raise ConfigError(message) from None


def _dimension(data: object) -> object:
    schema = data.get("schema") if isinstance(data, dict) else None
    return schema.get("billing_dimension") if isinstance(schema, dict) else None


def read_yaml(path: str | Path, what: str) -> object:
    """The parsed YAML of a file, or `ConfigError` with one line saying what is wrong and where."""
    try:
        return load_file(path, what)
    except YamlFileError as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config, raising `ConfigError` with a one-line reason."""
    data = read_yaml(path, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
