"""`maas-metrics demo` in the terminal: progress while starting, the URLs, a live status, clean exit.

Ctrl-C, SIGTERM and SIGHUP all end the same way: every child is stopped and
waited for (process groups, SIGKILL for stragglers), then the temp folder is
removed. Signals arriving during that clean-up are ignored so it always
finishes.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from types import FrameType

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from maas_metrics.demo.readiness import NotReady
from maas_metrics.demo.stack import DemoOptions, DemoStack
from maas_metrics.demo.status import TierTraffic, fetch_summary

STATUS_EVERY_SECONDS = 2.0
PLAIN_STATUS_EVERY_SECONDS = 30.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Shutdown(BaseException):
    """Raised in the main thread by a stop signal (BaseException, like KeyboardInterrupt)."""


class DemoError(Exception):
    """The demo cannot run; `str()` is one line for `error: ...`."""


def missing_prometheus_message() -> str:
    return (
        "`prometheus` is not installed: run ./demo.sh, which installs it on Debian/Ubuntu "
        "(apt-get install prometheus); elsewhere install Prometheus 2.x from "
        "https://prometheus.io/download/ and put `prometheus` on PATH"
    )


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    del frame
    raise Shutdown(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_stop_signals() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def run_demo(options: DemoOptions, console: Console, keep_data: bool = False) -> int:
    """Run the demo until a stop signal; returns the exit code (0 on a clean stop)."""
    if shutil.which("prometheus") is None:
        raise DemoError(missing_prometheus_message())
    stack = DemoStack(options)
    code = 0
    with _stop_signals_raise():
        try:
            _start(stack, console)
            _print_addresses(stack, options, console)
            code = _watch(stack, console)
        except Shutdown as stop:
            _say(console, f"\n[bold]{stop.args[0] if stop.args else 'stop'}[/] received.")
        except KeyboardInterrupt:
            _say(console, "\n[bold]SIGINT[/] received.")
        except NotReady as error:
            _say(console, f"[red]error:[/] {error}")
            code = 1
        finally:
            # Clean-up first and never interrupted: the terminal may already be gone (SIGHUP).
            _ignore_stop_signals()
            count = len(stack.pids())
            _say(console, "Stopping every process of the demo…")
            stack.stop(keep_data=keep_data)
            kept = f"; data kept in {stack.workdir}" if keep_data else ""
            _say(console, f"Stopped all {count} processes of the demo{kept}.")
    return code


def _say(console: Console, message: str) -> None:
    """Print, unless the terminal is gone (a closed terminal must not stop the clean-up)."""
    with contextlib.suppress(OSError):
        console.print(message, soft_wrap=True, highlight=False)


def _start(stack: DemoStack, console: Console) -> None:
    console.print("[bold]maas-metrics demo[/] · starting (Ctrl-C stops everything)")
    for step in stack.steps():
        began = time.monotonic()
        with console.status(f"{step.description}…"):
            try:
                detail = step.action()
            except OSError as error:  # e.g. an unwritable --grafana-json path
                raise NotReady(f"{step.description}: {error}") from None
        took = time.monotonic() - began
        console.print(
            f"  [green]✓[/] {step.description} [dim]{detail} ({took:.1f} s)[/]", soft_wrap=True
        )


def _first_demo_key(options: DemoOptions) -> str | None:
    try:
        keys = yaml.safe_load(options.keys_path.read_text()).get("keys", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    return next(iter(keys.values()), None) if isinstance(keys, dict) and keys else None


def _print_addresses(stack: DemoStack, options: DemoOptions, console: Console) -> None:
    model = stack.config.models[0].name
    lines = [
        ("Dashboard", stack.dashboard_url),
        ("Gateway", f"{stack.gateway_url}/v1  (OpenAI-compatible; metrics at {stack.metrics_url})"),
        ("Prometheus", stack.prometheus_url),
        ("Grafana JSON", f"{stack.grafana_json}  (Grafana → Dashboards → Import)"),
        ("Logs", f"{stack.logs_dir}  (removed on exit unless --keep-data)"),
    ]
    if stack.ledger_url is not None:
        lines.append(
            ("Ledger", f"{stack.ledger_url}  (one row per request; config {stack.config_path})")
        )
    console.print("\n[bold green]The demo is running.[/]")
    for name, value in lines:
        console.print(f"  [bold]{name:<13}[/]{value}", soft_wrap=True, highlight=False)
    key = _first_demo_key(options)
    if key is not None:
        body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}'
        curl = Text(
            f"curl -s {stack.gateway_url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d '{body}'"
        )
        console.print(Text.assemble("  ", (f"{'Try':<13}", "bold"), curl), soft_wrap=True)
    if stack.ledger_url is not None:
        cfg = stack.config_path
        for command in (
            f"maas-metrics report --source ledger -c {cfg} --from now-1h --by user,model",
            f"maas-metrics reconcile -c {cfg} -p {stack.prometheus_url} --from now-5m --to now-1m"
            "  (after a few minutes)",
        ):
            console.print(
                Text.assemble("  ", (f"{'Try':<13}", "bold"), Text(command)), soft_wrap=True
            )
    console.print("  Press Ctrl-C to stop everything.\n")


def _watch(stack: DemoStack, console: Console) -> int:
    """Show the live status until a signal (raised as Shutdown) or a component failure (returns 1)."""
    started = time.monotonic()
    if console.is_terminal:
        with Live(_status(stack, started), console=console, auto_refresh=False) as live:
            while True:
                failed = _failure(stack)
                if failed:
                    live.stop()
                    console.print(failed, soft_wrap=True)
                    return 1
                live.update(_status(stack, started), refresh=True)
                time.sleep(STATUS_EVERY_SECONDS)
    next_line = 0.0
    while True:
        failed = _failure(stack)
        if failed:
            console.print(failed, soft_wrap=True)
            return 1
        if time.monotonic() >= next_line:
            console.print(_plain_status(stack, started), soft_wrap=True, highlight=False)
            next_line = time.monotonic() + PLAIN_STATUS_EVERY_SECONDS
        time.sleep(STATUS_EVERY_SECONDS)


def _failure(stack: DemoStack) -> str | None:
    child = stack.failed_component()
    if child is not None:
        return (
            f"[red]error:[/] {child.name} exited with code {child.exit_code()}; "
            f"last log lines:\n{child.log_tail()}"
        )
    if not stack.prometheus_running():
        return "[red]error:[/] prometheus exited; see its log in " + str(stack.workdir)
    return None


def _summary(stack: DemoStack) -> dict[str, TierTraffic] | None:
    return fetch_summary(stack.metrics_url, stack.config)


def _status(stack: DemoStack, started: float) -> Group:
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("tier", "users", "served", "limited (429)", "tokens"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    summary = _summary(stack)
    for tier in stack.config.tiers_by_level():
        traffic = (summary or {}).get(tier.name, TierTraffic())
        table.add_row(
            Text(tier.name, style=f"bold {tier.colour}" if _rich_colour(tier.colour) else "bold"),
            str(len(traffic.users)),
            f"{traffic.served:,.0f}",
            f"{traffic.limited:,.0f}",
            f"{traffic.tokens:,.0f}",
        )
    traffic_state = "running" if stack.children["traffic"].running() else "finished"
    header = Text.assemble(
        ("live ", "bold green"),
        f"· up {_duration(time.monotonic() - started)} · traffic {traffic_state} · "
        f"dashboard {stack.dashboard_url} · Ctrl-C stops everything",
    )
    if summary is None:
        header.append("  (gateway not answering)", style="red")
    return Group(header, table)


def _plain_status(stack: DemoStack, started: float) -> str:
    summary = _summary(stack) or {}
    parts = [
        f"{name}: {len(t.users)} users, {t.served:,.0f} served, {t.limited:,.0f} limited, "
        f"{t.tokens:,.0f} tokens"
        for name, t in summary.items()
    ]
    return f"[{_duration(time.monotonic() - started)}] " + "; ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _rich_colour(colour: str) -> bool:
    from rich.color import Color, ColorParseError

    try:
        Color.parse(colour)
    except ColorParseError:
        return False
    return True
