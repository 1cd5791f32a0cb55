"""`maas-metrics mock-model` and `maas-metrics traffic`: the stand-in LLM and synthetic users."""

from __future__ import annotations

import asyncio
import errno
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live

from maas_metrics.cli.common import CONFIG_OPTION_HELP, fail, load_config_or_exit
from maas_metrics.cli.extras import require_extra

if TYPE_CHECKING:
    from rich.table import Table

    from maas_metrics.config import Config
    from maas_metrics.simulate.traffic import TrafficGenerator


def mock_model(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=0, max=65535)] = 8001,
    latency_ms: Annotated[
        float,
        typer.Option(
            "--latency-ms",
            help="Delay before the first byte of every completion (time to first token); "
            "streams also spread about as much again across their chunks.",
            min=0,
        ),
    ] = 0.0,
) -> None:
    """Serve a fast OpenAI-compatible mock model with deterministic token usage.

    GET /v1/models, POST /v1/chat/completions and POST /v1/completions (any
    model name, JSON or SSE streaming with stream_options.include_usage).
    Usage: tokens(text) = ceil(len(text) / 4) for the prompt (message contents
    joined by newlines) and for the answer, which is derived from the prompt
    and honours max_tokens. Stops on Ctrl-C / SIGTERM.
    """
    require_extra("gateway")
    import uvloop

    from maas_metrics.simulate.mock_model import start_server

    async def main() -> None:
        server = await start_server(host, port, latency_ms)
        print(f"mock model on {server.url} (latency {latency_ms:g} ms); Ctrl-C stops", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await stopped.wait()
        finally:
            await server.close()

    try:
        uvloop.run(main())
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror
        fail(f"cannot listen on {host}:{port}: {reason or error}")


def traffic(
    gateway: Annotated[
        str,
        typer.Option("--gateway", help="Base URL of the gateway, e.g. http://127.0.0.1:8080"),
    ],
    keys: Annotated[
        Path,
        typer.Option(
            "--keys", help="YAML file `keys: {user: secret}` (see examples/demo-keys.yaml)."
        ),
    ],
    config: Annotated[Path, typer.Option("--config", "-c", help=CONFIG_OPTION_HELP)],
    rate: Annotated[
        float, typer.Option(help="Requests per second (Poisson arrivals, open loop).")
    ] = 10.0,
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds to run (default: until Ctrl-C)."),
    ] = None,
    stream_fraction: Annotated[
        float, typer.Option(help="Share of requests sent as SSE streams (0 to 1).")
    ] = 0.2,
    seed: Annotated[
        int | None, typer.Option(help="Random seed: the same seed sends the same requests.")
    ] = None,
) -> None:
    """Send synthetic traffic from every user of the keys file across all tiers and models.

    Users are mapped to tiers through the config (the key's SHA-256 and its
    groups), prompts vary in length, some requests stream. At the reference
    limits free users soon see 429s while every tier keeps showing up. A live
    table shows per tier: requests, 200s, 429s, errors and tokens; Ctrl-C
    (or SIGTERM) ends cleanly with the final summary.
    """
    from maas_metrics.simulate.keys import TrafficError
    from maas_metrics.simulate.table import stats_table

    cfg = load_config_or_exit(config)
    if duration is not None and duration <= 0:
        fail(f"--duration must be > 0 seconds, got {duration:g}")
    generator = _generator(cfg, gateway, keys, rate, stream_fraction, seed)
    tiers = [t.name for t in cfg.tiers_by_level()]
    console = Console()
    missing = sorted(set(tiers) - {u.tier for u in generator.users})
    if missing:
        console.print(f"note: no user of tier(s) {', '.join(missing)} in {keys}", style="yellow")
    header = (
        f"traffic to {generator.base}: {rate:g} requests/s, {len(generator.users)} users, "
        f"{len(cfg.models)} models" + (f", for {duration:g} s" if duration else ", until Ctrl-C")
    )
    try:
        asyncio.run(_run(generator, console, header, tiers, duration))
    except TrafficError as error:
        fail(str(error))
    except KeyboardInterrupt:  # only before the signal handlers are in place
        pass
    console.print(
        stats_table(generator.stats, tiers, generator.elapsed, generator.base, final=True)
    )


def _generator(
    cfg: Config, gateway: str, keys: Path, rate: float, stream_fraction: float, seed: int | None
) -> TrafficGenerator:
    """The generator for the keys file's users, or one line naming the bad input."""
    from maas_metrics.simulate.keys import TrafficError, load_keys, users_from_config
    from maas_metrics.simulate.traffic import TrafficGenerator

    try:
        users = users_from_config(cfg, load_keys(keys))
        return TrafficGenerator(
            gateway,
            users,
            [m.name for m in cfg.models],
            rate,
            stream_fraction=stream_fraction,
            seed=seed,
        )
    except TrafficError as error:
        fail(str(error))


async def _run(
    generator: TrafficGenerator,
    console: Console,
    header: str,
    tiers: list[str],
    duration: float | None,
) -> None:
    """Check the gateway, then send until the end or a signal, showing progress meanwhile."""
    from maas_metrics.simulate.table import stats_table

    await generator.check_gateway()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, generator.stop)
    console.print(header, highlight=False)

    def table() -> Table:
        return stats_table(generator.stats, tiers, generator.elapsed, generator.base)

    if console.is_terminal:
        with Live(table(), console=console, refresh_per_second=4, transient=True) as live:
            refresher = loop.create_task(_refresh(live, table))
            try:
                await generator.run(duration)
            finally:
                refresher.cancel()
    else:
        progress = loop.create_task(_log_progress(console, generator))
        try:
            await generator.run(duration)
        finally:
            progress.cancel()


async def _refresh(live: Live, render: Callable[[], Table]) -> None:
    while True:
        await asyncio.sleep(0.25)
        live.update(render())


async def _log_progress(console: Console, generator: TrafficGenerator) -> None:
    """Without a terminal (a log file), one line every 10 s instead of a live table."""
    while True:
        await asyncio.sleep(10)
        total = generator.stats.total
        console.print(
            f"{generator.elapsed:.0f} s: {total.requests} requests, {total.ok} ok, "
            f"{total.limited} limited (429), {total.errors} errors, {total.total_tokens} tokens",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("mock-model")(mock_model)
    app.command("traffic")(traffic)
