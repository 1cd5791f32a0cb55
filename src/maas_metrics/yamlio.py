"""YAML in and out, in one place: every reader gets one-line errors, every writer the same style.

Kept apart from the config and from the manifests so that rules, manifests
and dashboards can all write YAML without importing one another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """A YAML file that cannot be read or parsed; `str()` is one line naming the file and where."""


def load_file(path: str | Path, what: str) -> object:
    """The parsed YAML of a file, or `YamlFileError` saying what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise YamlFileError(f"{path}: cannot read {what}: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise YamlFileError(f"{path}: not valid YAML: {problem}{where}") from None


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (a config, rule expressions, dashboard JSON) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump(obj: Any, *, width: int = 100) -> str:
    """Keys in insertion order, Unicode as is, multi-line strings as `|` blocks."""
    return yaml.dump(obj, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=width)


def dump_plain(obj: Any) -> str:
    """Keys in insertion order, Unicode as is, PyYAML's default scalar styles."""
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
