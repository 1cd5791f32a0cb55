"""Commands of this area are registered here (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
