"""The `maas-metrics` command: one typer app, one module per area registering its commands."""

from __future__ import annotations

import typer

from maas_metrics.cli import (
    config_cmds,
    dashboard_cmds,
    demo_cmds,
    gateway_cmds,
    ledger_cmds,
    manifests_cmds,
    report_cmds,
    rules_cmds,
    sim_cmds,
)

app = typer.Typer(
    name="maas-metrics",
    help=(
        "Token usage, rate limits, tiers and cost for LLMs served as a service.\n\n"
        "Start with `maas-metrics demo` to see everything live, or `maas-metrics COMMAND --help`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (
    config_cmds,
    gateway_cmds,
    sim_cmds,
    dashboard_cmds,
    demo_cmds,
    report_cmds,
    rules_cmds,
    manifests_cmds,
    ledger_cmds,
):
    module.register(app)


def main() -> None:
    app()
