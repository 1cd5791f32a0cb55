"""`maas-metrics serve` (the built-in web dashboard) and `maas-metrics demo` (everything, live)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit
from maas_metrics.cli.extras import require_extra


def example_file(name: str) -> Path:
    """An example shipped inside the package, so `demo` works from any directory."""
    return Path(str(resources.files("maas_metrics").joinpath("examples", name)))


DemoConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help=CONFIG_OPTION_HELP, show_default="the bundled examples/maas.yaml"
    ),
]
DemoKeysOption = Annotated[
    Path,
    typer.Option(
        help="Plaintext demo secrets of the config's API keys (user: key).",
        show_default="the bundled examples/demo-keys.yaml",
    ),
]


def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)],
    prometheus: Annotated[
        str,
        typer.Option(
            "--prometheus", help="Base URL of the Prometheus that scrapes the gateway(s)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8050,
    scrape_interval: Annotated[
        int,
        typer.Option(
            help="Scrape interval of that Prometheus in seconds; sets $__rate_interval as "
            "Grafana's datasource setting does.",
            min=1,
        ),
    ] = 15,
    recording_rules: Annotated[
        bool,
        typer.Option(
            "--recording-rules",
            help="Read the series of `maas-metrics rules` (fast at many users; Prometheus must "
            "load those rules).",
        ),
    ] = False,
) -> None:
    """Serve the web dashboard: the same panels as the Grafana JSON, live from Prometheus.

    Filters for time range, namespace, tier, user and model; refreshes every
    30 s (the config's dashboard.refresh); tier colours from the config. When
    Prometheus is unreachable or has no data yet the page says so. Stops on
    Ctrl-C / SIGTERM.
    """
    cfg = load_config_or_exit(config)
    if not prometheus.startswith(("http://", "https://")):
        fail(f"--prometheus {prometheus!r} must be an http:// or https:// URL")
    require_extra("web")
    from maas_metrics.web.server import serve_dashboard

    print(
        f"maas-metrics web dashboard on http://{host}:{port}/ (Prometheus {prometheus})", flush=True
    )
    try:
        serve_dashboard(
            cfg,
            prometheus,
            host,
            port,
            scrape_interval_seconds=scrape_interval,
            recording_rules=recording_rules,
        )
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")


def demo(
    config: DemoConfigOption = example_file("maas.yaml"),
    keys: DemoKeysOption = example_file("demo-keys.yaml"),
    rate: Annotated[float, typer.Option(help="Synthetic requests per second.", min=0.1)] = 4.0,
    latency_ms: Annotated[
        float, typer.Option(help="Latency of the mock model in milliseconds.", min=0)
    ] = 20.0,
    port_base: Annotated[
        int | None,
        typer.Option(
            help="Use ports BASE (dashboard), BASE+1 (gateway), BASE+2 (mock model), BASE+3 "
            "(Prometheus), BASE+4 (gateway metrics). Default: 8050, 8080, 8001, 9090, 8081. "
            "A taken port falls back to a free one.",
            min=1,
            max=65531,
        ),
    ] = None,
    scrape_interval: Annotated[
        int, typer.Option(help="Seconds between Prometheus scrapes of the gateway.", min=1, max=60)
    ] = 2,
    grafana_json: Annotated[
        Path | None,
        typer.Option(help="Where to write the Grafana dashboard JSON (default: a temp file)."),
    ] = None,
    keep_data: Annotated[
        bool, typer.Option(help="Keep the temp folder (Prometheus data, logs) after stopping.")
    ] = False,
) -> None:
    """Everything live with one command: mock model, gateway, traffic, Prometheus, web dashboard.

    Starts the mock model, the metering gateway (with a temp copy of the config
    whose models point at the mock), synthetic traffic across all tiers (so
    429s show up), a real Prometheus scraping the gateway (data in a temp
    folder) and the web dashboard; prints their URLs and the path of the
    generated Grafana JSON. Ctrl-C or SIGTERM stops every process.
    """
    load_config_or_exit(config)
    if not keys.is_file():
        fail(f"--keys {keys}: no such file")
    require_extra("demo")
    from maas_metrics.demo.run import DemoError, run_demo
    from maas_metrics.demo.stack import DemoOptions

    options = DemoOptions(
        config_path=config,
        keys_path=keys,
        rate=rate,
        latency_ms=latency_ms,
        port_base=port_base,
        scrape_interval_seconds=scrape_interval,
        grafana_json=grafana_json,
    )
    try:
        code = run_demo(options, Console(), keep_data=keep_data)
    except DemoError as error:
        fail(str(error))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("demo")(demo)
