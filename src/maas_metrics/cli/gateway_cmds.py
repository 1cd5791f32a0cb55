"""`maas-metrics gateway`: serve the metering gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit
from maas_metrics.cli.extras import require_extra
from maas_metrics.config import mask_secrets


def gateway(
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)],
    host: Annotated[
        str | None, typer.Option(help="Address to bind (overrides gateway.host of the config).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to bind (overrides gateway.port of the config).", min=0, max=65535),
    ] = None,
    operator_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the operator listener, /metrics and /healthz (overrides gateway.operator.port).",
            min=0,
            max=65535,
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible metering gateway.

    Each request's API key picks the user and tier; the tier's request and
    token limits are enforced as Limitador does (429 with Retry-After), the
    request is proxied to the model's upstream (JSON or SSE streaming).
    Limitador-compatible metrics are served on GET /metrics of the operator
    listener only (gateway.operator, default port 8081), apart from the API;
    GET /healthz on both. Stops on Ctrl-C / SIGTERM.
    """
    cfg = load_config_or_exit(config)
    require_extra("gateway")
    from maas_metrics.gateway import build_server
    from maas_metrics.ledger import LedgerError

    bind_host = host if host is not None else cfg.gateway.host
    bind_port = port if port is not None else cfg.gateway.port
    op_host = cfg.gateway.operator.host or bind_host
    op_port = operator_port if operator_port is not None else cfg.gateway.operator.port
    if op_port == bind_port != 0:
        fail(f"--operator-port {op_port} must differ from the API port")
    try:
        server = build_server(cfg, bind_host, bind_port, op_port)
    except LedgerError as error:
        fail(str(error), code=2)
    print(
        f"maas-metrics gateway on http://{bind_host}:{bind_port}, metrics on http://{op_host}:{op_port}/metrics "
        f"({len(cfg.models)} models, {len(cfg.api_keys)} keys, storage {mask_secrets(cfg.storage.url)}, "
        f"on store failure: {cfg.storage.on_failure})",
        flush=True,
    )
    server.run()


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
