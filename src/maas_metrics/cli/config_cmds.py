"""`maas-metrics config check` and `maas-metrics keys create`."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated

import typer
import yaml

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit
from maas_metrics.config import hash_key, mask_secrets

config_app = typer.Typer(help="Validate a config.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage API keys (stored in the config only as SHA-256 digests).", no_args_is_help=True
)


@config_app.command("check")
def check(config: Annotated[Path, typer.Argument(help=CONFIG_OPTION_HELP)]) -> None:
    """Validate CONFIG; print a summary, or one line naming the bad field (exit 2)."""
    cfg = load_config_or_exit(config)
    tiers = ", ".join(f"{t.name} (level {t.level})" for t in cfg.tiers_by_level())
    print(
        f"ok: {len(cfg.tiers)} {cfg.dimension_name}s [{tiers}], {len(cfg.models)} models, {len(cfg.api_keys)} keys, storage {mask_secrets(cfg.storage.url)}"
    )


@keys_app.command("create")
def create(
    user: Annotated[
        str, typer.Option("--user", help="User the key belongs to (the `user` metric label).")
    ],
    group: Annotated[
        list[str],
        typer.Option(
            "--group", help="Group of the user; repeat for several. Groups pick the tier."
        ),
    ],
    prefix: Annotated[str, typer.Option(help="Prefix of the generated key.")] = "sk-maas-",
) -> None:
    """Generate a new API key: the secret is printed once, with the config entry to paste under `api_keys:`."""
    if not user.strip():
        fail("--user must not be empty")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", prefix):
        fail(f"--prefix {prefix!r} may hold only letters, digits, '_' and '-'")
    secret = prefix + secrets.token_urlsafe(32)
    entry = [{"user": user, "groups": list(group), "sha256": hash_key(secret)}]
    print(f"API key (shown once, store it now): {secret}")
    print("Config entry (add under api_keys:):")
    print(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True).rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.add_typer(keys_app, name="keys")
