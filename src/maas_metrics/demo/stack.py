"""The demo stack: mock model, gateway, Prometheus, web dashboard and traffic, started in order.

Every component is a real process (Prometheus is the real binary); the stack
only wires them together: a copy of the config whose model upstreams point at
the mock, a Prometheus config scraping the gateway every few seconds, the
dashboard reading that Prometheus, and (unless the config names one) a
SQLite usage ledger in the demo's temp folder, so every request is on record
with no set-up. `stop()` always leaves no process behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from maas_metrics.config import Config, UsageSource, load_config
from maas_metrics.contract import CALLS
from maas_metrics.demo.grafana_file import write_grafana_json
from maas_metrics.demo.ports import pick_port
from maas_metrics.demo.processes import Child, cli_command, die_with_parent
from maas_metrics.demo.readiness import NotReady, http_ok, tcp_open, wait_until
from maas_metrics.prometheus import PrometheusAPI, PrometheusError, PrometheusProcess, ScrapeTarget

HOST = "127.0.0.1"
DEFAULT_PORTS = {
    "dashboard": 8050,
    "gateway": 8080,
    "mock": 8001,
    "prometheus": 9090,
    "operator": 8081,
}
# With --port-base B: dashboard B, gateway B+1, mock model B+2, Prometheus B+3,
# gateway operator listener (/metrics) B+4.
PORT_OFFSETS = {"dashboard": 0, "gateway": 1, "mock": 2, "prometheus": 3, "operator": 4}


@dataclass(frozen=True)
class DemoOptions:
    config_path: Path
    keys_path: Path
    rate: float = 4.0
    latency_ms: float = 20.0
    port_base: int | None = None
    scrape_interval_seconds: int = 2
    start_timeout: float = 60.0
    grafana_json: Path | None = None


@dataclass(frozen=True)
class DemoPorts:
    dashboard: int
    gateway: int
    mock: int
    prometheus: int
    operator: int

    @classmethod
    def choose(cls, port_base: int | None) -> DemoPorts:
        """The defaults (or the --port-base block) where free; any free port otherwise."""
        taken: set[int] = set()
        ports = {
            name: pick_port(
                default if port_base is None else port_base + PORT_OFFSETS[name], taken, HOST
            )
            for name, default in DEFAULT_PORTS.items()
        }
        return cls(**ports)


@dataclass(frozen=True)
class Step:
    """One start-up step: what the user sees while it runs, and the action."""

    description: str
    action: Callable[[], str]  # returns a short detail to show once done (URL, count, path)


def demo_config(
    config: Config, mock_port: int, gateway_port: int, operator_port: int | None = None
) -> Config:
    """The config with every model upstream pointed at the mock and the gateway on its ports."""
    models = []
    for model in config.models:
        parts = urlsplit(model.upstream)
        upstream = urlunsplit(parts._replace(netloc=f"{HOST}:{mock_port}"))
        models.append(model.model_copy(update={"upstream": upstream}))
    operator = config.gateway.operator.model_copy(
        update={"host": HOST, "port": operator_port if operator_port is not None else 0}
    )
    gateway = config.gateway.model_copy(
        update={"host": HOST, "port": gateway_port, "operator": operator}
    )
    return config.model_copy(update={"models": models, "gateway": gateway})


def with_demo_ledger(config: Config, workdir: Path) -> Config:
    """The config with a SQLite ledger in `workdir`, unless it already configures one."""
    if config.ledger.enabled:
        return config
    ledger = config.ledger.model_copy(
        update={
            "url": f"sqlite:///{workdir / 'ledger.db'}",
            "spool_path": str(workdir / "ledger.spool"),
        }
    )
    return config.model_copy(update={"ledger": ledger})


class DemoStack:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.config = load_config(options.config_path)
        self.workdir = Path(tempfile.mkdtemp(prefix="maas-demo-"))
        self.ports = DemoPorts.choose(options.port_base)
        self.children: dict[str, Child] = {}
        self.prometheus: PrometheusProcess | None = None
        self.config_path = self.workdir / "maas.yaml"
        self.grafana_json = options.grafana_json or Path(tempfile.gettempdir()) / (
            "maas-metrics-demo-grafana.json"
        )

    # --- addresses ----------------------------------------------------------------

    @property
    def dashboard_url(self) -> str:
        return f"http://{HOST}:{self.ports.dashboard}/"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.ports.gateway}"

    @property
    def metrics_url(self) -> str:
        """The gateway's `/metrics`, on its operator listener (not reachable through the API)."""
        return f"http://{HOST}:{self.ports.operator}/metrics"

    @property
    def mock_url(self) -> str:
        return f"http://{HOST}:{self.ports.mock}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.ports.prometheus}"

    @property
    def ledger_url(self) -> str | None:
        """The ledger the demo's gateway writes (set once the config is written)."""
        return self.config.ledger.url

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    # --- start-up ---------------------------------------------------------------

    def steps(self) -> list[Step]:
        return [
            Step("Writing the demo config and the Grafana dashboard JSON", self._prepare),
            Step("Starting the mock model", self._start_mock),
            Step("Starting the gateway", self._start_gateway),
            Step("Starting Prometheus", self._start_prometheus),
            Step("Starting the web dashboard", self._start_dashboard),
            Step("Starting synthetic traffic", self._start_traffic),
            Step("Waiting for the first scrape with traffic", self._wait_for_data),
        ]

    def _prepare(self) -> str:
        config = demo_config(self.config, self.ports.mock, self.ports.gateway, self.ports.operator)
        # /v1/usage and the My usage page read their history from the demo's Prometheus.
        interval = self.options.scrape_interval_seconds
        usage = UsageSource(
            prometheus_url=self.prometheus_url,
            resolution_seconds=interval if 86400 % interval == 0 else 1,
        )
        config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"usage": usage})}
        )
        config = with_demo_ledger(config, self.workdir)
        self.config_path.write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        )
        self.config = load_config(self.config_path)
        write_grafana_json(self.config, self.grafana_json)
        return str(self.grafana_json)

    def _spawn(self, name: str, *args: str) -> Child:
        child = Child(name, cli_command(*args), self.logs_dir / f"{name}.log")
        self.children[name] = child
        child.start()
        return child

    def _wait(self, child: Child, what: str, check: Callable[[], bool]) -> None:
        try:
            wait_until(what, check, self.options.start_timeout, alive=child.running)
        except NotReady as error:
            raise NotReady(f"{error}; last log lines:\n{child.log_tail()}") from None

    def _start_mock(self) -> str:
        child = self._spawn(
            "mock-model",
            "mock-model",
            "--host", HOST,
            "--port", str(self.ports.mock),
            "--latency-ms", f"{self.options.latency_ms:g}",
        )  # fmt: skip
        self._wait(child, "the mock model", tcp_open(self.ports.mock))
        return self.mock_url

    def _start_gateway(self) -> str:
        child = self._spawn(
            "gateway",
            "gateway",
            "--config", str(self.config_path),
            "--host", HOST,
            "--port", str(self.ports.gateway),
            "--operator-port", str(self.ports.operator),
        )  # fmt: skip
        self._wait(child, "the gateway", http_ok(f"{self.gateway_url}/healthz"))
        self._wait(child, "the gateway's operator listener", http_ok(self.metrics_url))
        return self.gateway_url

    def _start_prometheus(self) -> str:
        interval = f"{self.options.scrape_interval_seconds}s"
        self.prometheus = PrometheusProcess(
            self.workdir / "prometheus",
            port=self.ports.prometheus,
            targets=[ScrapeTarget("maas-gateway", f"{HOST}:{self.ports.operator}")],
            scrape_interval=interval,
            evaluation_interval=interval,
            retention="1d",
            preexec_fn=die_with_parent(),
        )
        try:
            self.prometheus.start(timeout=self.options.start_timeout)
        except (RuntimeError, TimeoutError) as error:
            raise NotReady(str(error)) from None
        return self.prometheus_url

    def _start_dashboard(self) -> str:
        child = self._spawn(
            "dashboard",
            "serve",
            "--config", str(self.config_path),
            "--prometheus", self.prometheus_url,
            "--host", HOST,
            "--port", str(self.ports.dashboard),
            "--scrape-interval", str(self.options.scrape_interval_seconds),
        )  # fmt: skip
        self._wait(child, "the web dashboard", http_ok(f"{self.dashboard_url}healthz"))
        return self.dashboard_url

    def _start_traffic(self) -> str:
        child = self._spawn(
            "traffic",
            "traffic",
            "--gateway", self.gateway_url,
            "--keys", str(self.options.keys_path),
            "--config", str(self.config_path),
            "--rate", f"{self.options.rate:g}",
        )  # fmt: skip
        self._wait(child, "the traffic", self._gateway_has_traffic)
        return f"{self.options.rate:g} requests/s"

    def _gateway_has_traffic(self) -> bool:
        from maas_metrics.demo.status import fetch_summary

        summary = fetch_summary(self.metrics_url, self.config)
        return summary is not None and any(t.served or t.limited for t in summary.values())

    def _wait_for_data(self) -> str:
        api = PrometheusAPI(self.prometheus_url, timeout=5)

        def scraped() -> bool:
            try:
                return bool(api.query(CALLS))
            except PrometheusError:
                return False

        try:
            wait_until(
                "the first Prometheus scrape with traffic", scraped, self.options.start_timeout
            )
        finally:
            api.close()
        return f"every {self.options.scrape_interval_seconds} s"

    # --- running and stopping ------------------------------------------------------

    def failed_component(self) -> Child | None:
        """A child that should be running but exited (traffic may end cleanly)."""
        for child in self.children.values():
            code = child.exit_code()
            if code is None or (child.name == "traffic" and code == 0):
                continue
            return child
        return None

    def prometheus_running(self) -> bool:
        process = self.prometheus.process if self.prometheus else None
        return process is not None and process.poll() is None

    def pids(self) -> dict[str, int]:
        out = {name: child.pid for name, child in self.children.items() if child.pid is not None}
        if self.prometheus is not None and self.prometheus.process is not None:
            out["prometheus"] = self.prometheus.process.pid
        return out

    def stop(self, keep_data: bool = False) -> None:
        """Stop every child: SIGTERM to all process groups at once, then wait (SIGKILL stragglers)."""
        children = list(self.children.values())
        for child in children:
            child.terminate()
        if self.prometheus is not None:
            self.prometheus.stop()
        for child in children:
            child.wait_stopped()
        if not keep_data:
            shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["DEFAULT_PORTS", "DemoOptions", "DemoPorts", "DemoStack", "NotReady", "Step"]
