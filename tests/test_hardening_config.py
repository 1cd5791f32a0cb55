"""One validation path: what `config check` accepts, `gateway`, `serve` and `demo` run; secrets stay masked.

The property test mutates the example config's fields that those commands
read with awkward values (Grafana ranges the page cannot show, zero and
negative numbers, odd hosts, surrogates, huge values). Whatever
`parse_config` (the function behind `config check`) accepts must start the
gateway (uvicorn, both listeners), build and render the web dashboard and
the demo's config and Grafana JSON; whatever it rejects must be one line
naming a field. Real processes are started for sample configs.
"""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maas_metrics.config import Config, ConfigError, mask_secrets, parse_config
from maas_metrics.demo.grafana_file import write_grafana_json
from maas_metrics.demo.stack import demo_config
from maas_metrics.web.app import create_app as create_web_app
from tests.conftest import EXAMPLE_CONFIG
from tests.gateway_harness import running_gateway
from tests.servers import free_port, wait_for_port

CLI = str(Path(sys.executable).parent / "maas-metrics")
PASSWORD = "s3cr3t-Pa55word"
EXAMPLE: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())

# --- the property: accepted -> every command starts; rejected -> one line ----------------------

TEXT = st.one_of(
    st.sampled_from(
        ["", " ", "now-1M", "now-0h", "now-1h ", "1h30m", "0s", "30s", "\ud800", "x" * 300]
    ),
    st.text(max_size=12),
)
NUMBER = st.one_of(
    st.integers(min_value=-2, max_value=70_000),
    st.floats(min_value=-1, max_value=1e6, allow_nan=False),
    st.sampled_from([0, 1, 0.001, 10**12]),
)
#: Field path -> values tried there (None deletes the field, falling back to its default).
FIELDS: dict[tuple[str | int, ...], st.SearchStrategy[Any]] = {
    ("dashboard", "title"): TEXT,
    ("dashboard", "uid"): TEXT,
    ("dashboard", "refresh"): st.one_of(TEXT, st.sampled_from(["", "5s", "1m", "1h30m", "0m"])),
    ("dashboard", "default_range"): st.one_of(
        TEXT, st.sampled_from(["now-5m", "now-7d", "now-90d", "now-1y", "now-1w", "now-01h"])
    ),
    ("gateway", "host"): st.sampled_from(["127.0.0.1", "localhost", "::1", "0.0.0.0", "", "a b"]),
    ("gateway", "max_body_bytes"): NUMBER,
    ("gateway", "upstream_timeout_seconds"): NUMBER,
    ("gateway", "shutdown_scrape_wait_seconds"): NUMBER,
    ("gateway", "retry_hint_max_seconds"): NUMBER,
    ("gateway", "operator", "port"): NUMBER,
    ("gateway", "connections", "header_timeout_seconds"): NUMBER,
    ("gateway", "connections", "body_timeout_seconds"): NUMBER,
    ("gateway", "connections", "keep_alive_timeout_seconds"): NUMBER,
    ("gateway", "connections", "max_connections"): NUMBER,
    ("gateway", "connections", "max_header_bytes"): NUMBER,
    ("storage", "on_failure"): st.sampled_from(["deny", "allow", "maybe"]),
    ("namespaces", "requests"): TEXT,
    ("namespaces", "tokens"): TEXT,
    ("tiers", 0, "colour"): st.one_of(TEXT, st.sampled_from(["#123456", "red", "#zzz"])),
    ("tiers", 1, "name"): TEXT,
    ("tiers", 1, "price_per_hit"): NUMBER,
    ("tiers", 2, "level"): NUMBER,
    ("tiers", 0, "request_limit", "max"): NUMBER,
    ("tiers", 0, "token_limit", "window_seconds"): NUMBER,
    ("models", 0, "name"): TEXT,
    ("models", 1, "upstream"): st.sampled_from(
        ["http://127.0.0.1:1/v1", "https://llm.example/v1/", "ftp://x", "http://"]
    ),
}


def mutate(changes: dict[tuple[str | int, ...], Any]) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE)
    for path, value in changes.items():
        node: Any = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[path[-1]] = value
    return data


MUTATIONS = st.dictionaries(
    st.sampled_from(list(FIELDS)), st.just(None), min_size=1, max_size=4
).flatmap(lambda chosen: st.fixed_dictionaries({path: FIELDS[path] for path in chosen}))


def starts_everything(config: Config, workdir: Path) -> None:
    """What `gateway`, `serve` and `demo` do with a config before serving, each for real."""
    # gateway: both listeners bound and answering (API and operator).
    config = config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"host": "127.0.0.1"})}
    )
    with running_gateway(config) as gateway:
        assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{gateway.operator}/metrics", timeout=10).status_code == 200
    # serve: the page and its layout render.
    web = create_web_app(config, "http://127.0.0.1:9")
    client = web.server.test_client()
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    # demo: its copy of the config still validates, and the Grafana JSON renders.
    copied = demo_config(config, 8001, 8080, 8081).model_dump(mode="json")
    write_grafana_json(parse_config(copied), workdir / "grafana.json")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=MUTATIONS)
def test_every_accepted_config_starts_gateway_serve_and_demo(
    changes: dict[tuple[str | int, ...], Any], tmp_path: Path
) -> None:
    data = mutate(changes)
    try:
        config = parse_config(data)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and ":" in message and "Traceback" not in message
        return
    starts_everything(config, tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("dashboard", "default_range"), "now-1M"),  # Grafana's month: the page cannot show it
        (("dashboard", "default_range"), "now-0h"),
        (("dashboard", "refresh"), "0s"),
        (("dashboard", "refresh"), "soon"),
        (("gateway", "host"), "not a host"),
        (("gateway", "operator", "port"), 8080),  # the API's port: metrics would be on the API
        (("gateway", "connections", "header_timeout_seconds"), 0),
        (("gateway", "connections", "max_connections"), 0),
    ],
)
def test_config_check_rejects_what_a_command_could_not_run(
    field: tuple[str, ...], value: Any, tmp_path: Path
) -> None:
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(mutate({field: value})))
    result = subprocess.run([CLI, "config", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ".".join(field[-2:]) in lines[0], result.stderr


# --- real processes for sample configs ----------------------------------------------------------


@pytest.fixture
def sample_config(tmp_path: Path) -> Iterator[Path]:
    """Every field the commands read set away from its default."""
    data = mutate(
        {
            ("dashboard", "default_range"): "now-7d",
            ("dashboard", "refresh"): "1m",
            ("dashboard", "title"): "Usage ✨ <b>",
            ("gateway", "retry_hint_max_seconds"): 5,
            ("gateway", "connections", "header_timeout_seconds"): 5,
            ("gateway", "connections", "max_connections"): 50,
            ("storage", "url"): f"redis://maas:{PASSWORD}@127.0.0.1:{free_port()}/0",
            ("storage", "on_failure"): "allow",
        }
    )
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    yield path


def test_sample_config_runs_check_gateway_and_serve_as_processes(sample_config: Path) -> None:
    check = subprocess.run(
        [CLI, "config", "check", str(sample_config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert PASSWORD not in check.stdout + check.stderr
    assert "maas:***@" in check.stdout

    port, operator_port, web_port = free_port(), free_port(), free_port()
    gateway = subprocess.Popen(
        [
            CLI,
            "gateway",
            "-c",
            str(sample_config),
            "--port",
            str(port),
            "--operator-port",
            str(operator_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    serve = subprocess.Popen(
        [
            CLI,
            "serve",
            "-c",
            str(sample_config),
            "--prometheus",
            "http://127.0.0.1:9",
            "--port",
            str(web_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process=gateway)
        wait_for_port(operator_port, process=gateway)
        wait_for_port(web_port, timeout=60, process=serve)
        # Redis is down and on_failure is allow: served, and the log never shows the password.
        health = httpx.get(f"http://127.0.0.1:{operator_port}/healthz", timeout=10).json()
        assert health["store_reachable"] is False
        assert httpx.get(f"http://127.0.0.1:{web_port}/", timeout=30).status_code == 200
    finally:
        gateway.terminate()
        serve.terminate()
        out, err = gateway.communicate(timeout=15)
        web_out, web_err = serve.communicate(timeout=15)
    output = (out + err + web_out + web_err).decode(errors="replace")
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert "maas:***@" in out.decode()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@h:6379/0",
        f"redis://user:{PASSWORD}@h/0",
        f"rediss://user:{PASSWORD}@h:6380/1?password={PASSWORD}",
        f"redis://{PASSWORD}@h/0",
        f"redis://:{PASSWORD}@@h/0",
    ],
)
def test_mask_secrets_hides_every_password_form(url: str) -> None:
    masked = mask_secrets(url)
    assert PASSWORD not in masked
    assert masked.endswith(url.rsplit("@", 1)[1].split("?")[0]) or "?" in masked


def test_a_rejected_config_does_not_print_its_password(tmp_path: Path) -> None:
    data = mutate({("storage", "url"): f"mysql://root:{PASSWORD}@db/0"})
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run([CLI, "config", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "storage.url" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_a_taken_operator_port_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                CLI,
                "gateway",
                "-c",
                str(EXAMPLE_CONFIG),
                "--port",
                "0",
                "--operator-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("operator listener"), result.stderr
    assert "Traceback" not in result.stderr
