"""What every command shares: loading the config and failing with one clear line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from maas_metrics.config import Config, ConfigError, load_config

CONFIG_OPTION_HELP = "The maas-metrics YAML config (tiers, prices, limits, models, keys)."
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line naming the problem to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_config_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        fail(str(error), code=2)


def write_output(text: str, output: Path | None, summary: str = "") -> None:
    """`text` to stdout, or to `output` with a `wrote FILE (summary)` line on stderr."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    print(f"wrote {output}" + (f" ({summary})" if summary else ""), file=sys.stderr)
