"""The layout's rules, checked on the source: no import cycle, no upward arrow, extras honoured.

The graph is read with `ast` (tests/importgraph.py), so function-level and
TYPE_CHECKING imports count too. The extras are then checked for real: the
CLI runs in a subprocess in which Dash, Plotly and the Grafana SDK cannot be
imported, as in `pip install 'maas-metrics[gateway]'`.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from maas_metrics.cli.extras import EXTRA_MODULES
from tests.importgraph import Kind, build, chain

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "maas_metrics"
GRAPH = build(PACKAGE)
RUNTIME = {Kind.EAGER, Kind.LAZY}
EVERY = {Kind.EAGER, Kind.LAZY, Kind.TYPING}

#: Cycles another branch is removing. When one is gone, its entry must go too.
KNOWN_CYCLES: list[list[str]] = []

#: Third-party code the limiter and the telemetry must never reach (directly or not).
FORBIDDEN_BELOW = {"yaml", "pydantic", "dash", "plotly", "grafana_foundation_sdk", "starlette"}
FORBIDDEN_INTERNAL = {"maas_metrics.web", "maas_metrics.dashboard", "maas_metrics.yamlio"}
#: Layer -> forbidden modules it still reaches, with the branch removing them.
KNOWN_LAYER_BREACHES: dict[str, set[str]] = {
    # issue 10, gw-exact branch: telemetry reaches config/ (pydantic, YAML) through policies.py.
    "maas_metrics.telemetry": {"pydantic", "yaml", "maas_metrics.yamlio"},
}

#: CLI module -> the extras its commands may need (each command checks with `require_extra`).
COMMAND_EXTRAS: dict[str, set[str]] = {
    "maas_metrics.cli.config_cmds": set(),
    "maas_metrics.cli.rules_cmds": set(),
    "maas_metrics.cli.manifests_cmds": set(),
    "maas_metrics.cli.report_cmds": {"web", "postgres", "gateway"},  # --source ledger: as ledger
    "maas_metrics.cli.gateway_cmds": {"gateway"},
    "maas_metrics.cli.sim_cmds": {"gateway"},
    "maas_metrics.cli.dashboard_cmds": {"grafana"},
    "maas_metrics.cli.demo_cmds": {"gateway", "web", "grafana", "demo"},
    "maas_metrics.cli.ledger_cmds": {"postgres", "gateway"},  # gateway: reconcile reads Redis
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return _normal(match.group())


def _distributions(extras: set[str]) -> set[str]:
    """Distribution names the base install plus `extras` bring, self-references resolved."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    todo = list(extras)
    seen: set[str] = set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            self_ref = re.fullmatch(r"maas-metrics\[([a-z,]+)\]", requirement)
            if self_ref:
                todo.extend(self_ref.group(1).split(","))
            else:
                names.add(_requirement_name(requirement))
    return names


def _distribution_of(module: str) -> str:
    found = importlib.metadata.packages_distributions().get(module)
    assert found, f"{module} is imported but no installed distribution provides it"
    return _normal(found[0])


def _under(package: str) -> list[str]:
    return [m for m in GRAPH.files if m == package or m.startswith(package + ".")]


def test_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: a cycle hidden in a function or under TYPE_CHECKING is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import x\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nimport yaml\nx = 1\n"
        "if TYPE_CHECKING:\n    from pkg import a\n"
    )
    graph = build(pkg)
    assert graph.internal["pkg.a"] == {"pkg.sub": Kind.LAZY, "pkg.sub.b": Kind.LAZY}
    assert graph.internal["pkg.sub.b"] == {"pkg.a": Kind.TYPING}
    assert graph.external["pkg.sub.b"] == {"yaml": Kind.EAGER}
    assert graph.cycles() == [["pkg.a", "pkg.sub", "pkg.sub.b"]]


def test_no_import_cycles() -> None:
    cycles = GRAPH.cycles()
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)


def test_known_cycles_are_still_there() -> None:
    """A fixed cycle must leave KNOWN_CYCLES, so it cannot come back unnoticed."""
    gone = [c for c in KNOWN_CYCLES if c not in GRAPH.cycles()]
    assert not gone, f"remove from KNOWN_CYCLES (fixed): {gone}"


@pytest.mark.parametrize("layer", ["maas_metrics.limiter", "maas_metrics.telemetry"])
def test_lower_layers_import_no_web_yaml_or_pydantic(layer: str) -> None:
    reached = GRAPH.reach(_under(layer), RUNTIME)
    third = GRAPH.third_party(reached, RUNTIME)
    how = {m: chain(reached, m) for m in reached for bad in FORBIDDEN_INTERNAL if m.startswith(bad)}
    how |= {b: f"{chain(reached, third[b])} imports {b}" for b in set(third) & FORBIDDEN_BELOW}
    known = KNOWN_LAYER_BREACHES.get(layer, set())
    assert not set(how) - known, "; ".join(how[b] for b in sorted(set(how) - known))
    assert known <= set(how), f"remove from KNOWN_LAYER_BREACHES[{layer!r}]: {known - set(how)}"


def test_every_command_module_declares_its_extras() -> None:
    commands = {m for m in _under("maas_metrics.cli") if m.endswith("_cmds")}
    assert commands == set(COMMAND_EXTRAS)


def test_loading_the_cli_needs_only_the_base_install() -> None:
    """`maas-metrics --help` and every command's --help run on `pip install maas-metrics`."""
    reached = GRAPH.reach(["maas_metrics.cli"], {Kind.EAGER})
    allowed = _distributions(set())
    third = GRAPH.third_party(reached, {Kind.EAGER})
    outside = {m: chain(reached, w) for m, w in third.items() if _distribution_of(m) not in allowed}
    assert not outside, outside


@pytest.mark.parametrize("module", sorted(COMMAND_EXTRAS))
def test_commands_need_only_their_extras(module: str) -> None:
    """Everything a command module may run, lazy imports included, is in base + its extras."""
    reached = GRAPH.reach([module], RUNTIME)
    allowed = _distributions(COMMAND_EXTRAS[module])
    third = GRAPH.third_party(reached, RUNTIME)
    outside = {m: chain(reached, w) for m, w in third.items() if _distribution_of(m) not in allowed}
    assert not outside, outside


def test_extra_modules_match_pyproject() -> None:
    """`require_extra` checks modules that the extra of that name really installs."""
    for extra, modules in EXTRA_MODULES.items():
        extra_only = _distributions({extra}) - _distributions(set())
        for module in modules:
            assert _distribution_of(module) in extra_only, (extra, module)


BLOCK = ("dash", "plotly", "grafana_foundation_sdk", "psycopg")


def _cli_without(blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with `blocked` not importable (`None` in sys.modules), as if not installed."""
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
        "from maas_metrics.cli import main\n"
        f"sys.argv = ['maas-metrics', *{args!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_gateway_help_runs_without_dash_plotly_or_grafana() -> None:
    result = _cli_without(BLOCK, "gateway", "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("dashboard", "-c", "examples/maas.yaml"), "grafana"),
        (("serve", "-c", "examples/maas.yaml", "--prometheus", "http://127.0.0.1:1"), "web"),
        (
            ("report", "-c", "examples/maas.yaml", "-p", "http://127.0.0.1:1", "--format", "html"),
            "web",
        ),
        (("demo",), "demo"),
    ],
)
def test_a_command_without_its_extra_names_it_in_one_line(
    args: tuple[str, ...], extra: str
) -> None:
    result = _cli_without(BLOCK, *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"[{extra}]" in result.stderr and "pip install" in result.stderr
    assert result.stdout == ""


def test_report_csv_does_not_need_plotly() -> None:
    """Only `--format html` draws charts; csv fails on the unreachable Prometheus, not on Plotly."""
    result = _cli_without(
        BLOCK,
        *("report", "-c", "examples/maas.yaml", "-p", "http://127.0.0.1:1", "--from", "now-1h"),
        *("--format", "csv"),
    )
    assert result.returncode == 1
    assert "extra" not in result.stderr and "127.0.0.1:1" in result.stderr, result.stderr
