"""Run the real `prometheus` binary with a generated config, on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    metrics_path: str = "/metrics"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"`{name}` not found: install Prometheus 2.x (Debian/Ubuntu: apt-get install prometheus)"
        )
    return path


class PrometheusProcess:
    """One Prometheus server: data in `data_dir`, config generated from targets and rule files."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        targets: list[ScrapeTarget] | None = None,
        scrape_interval: str = "5s",
        evaluation_interval: str = "15s",
        rule_files: list[Path] | None = None,
        retention: str = "30d",
        log_file: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="maas-prometheus-"))
        self.port = port or _free_port()
        self.targets = targets or []
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = rule_files or []
        self.retention = retention
        self.log_file = log_file or self.data_dir / "prometheus.log"
        self.preexec_fn = (
            preexec_fn  # e.g. die-with-parent, so even `kill -9` of a demo leaves no orphan
        )
        self.extra_args = extra_args  # e.g. `--query.max-samples=...` for a scaled-down limit
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": t.job,
                    "metrics_path": t.metrics_path,
                    "static_configs": [{"targets": [t.address]}],
                }
                for t in self.targets
            ],
        }

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return path

    def backfill(self, openmetrics: str) -> None:
        """Load historical samples (OpenMetrics text ending in `# EOF`) as TSDB blocks; call before start()."""
        source = self.data_dir / "backfill.om"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        source.write_text(openmetrics)
        tsdb = self.data_dir / "tsdb"
        result = subprocess.run(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(source),
                str(tsdb),
            ],
            capture_output=True,
            text=True,
        )
        source.unlink()
        if result.returncode != 0:
            raise RuntimeError(
                f"promtool backfill failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self, timeout: float = 30.0) -> None:
        config = self.write_config()
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                find_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self.preexec_fn,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}; log: {self.log_file}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout}s; log: {self.log_file}")

    def reload(self) -> None:
        self.write_config()
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
