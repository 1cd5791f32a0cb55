"""`maas-metrics manifests` for our gateway: upstreams as the pods reach them, loopback refused.

In a pod, 127.0.0.0/8, ::1 and localhost are the pod itself, so the example
config's `http://127.0.0.1:8001/v1` would make every gateway call itself:
`manifests` refuses it with one line (exit 2) unless told otherwise, and
takes each model's upstream as `--upstream MODEL=URL`.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from maas_metrics.cli import app
from tests.conftest import EXAMPLE_CONFIG
from tests.test_manifests import MODELS, generate, one

runner = CliRunner()


def deployed_upstreams(docs: list[dict[str, Any]]) -> dict[str, str]:
    cm = one(docs, "ConfigMap", "maas-metrics-config")
    return {m["name"]: m["upstream"] for m in yaml.safe_load(cm["data"]["maas.yaml"])["models"]}


def test_upstreams_come_from_the_options() -> None:
    docs = generate(
        EXAMPLE_CONFIG,
        "--image",
        "quay.example/maas:0.1",
        "--upstream",
        "granite-8b=http://granite.llm.svc:8000/v1/",
        "--upstream",
        "llama-3-8b=https://llama.example.com/v1",
        "--upstream",
        "mistral-7b=http://localhost-proxy.llm.svc/v1",  # a name, not the loopback
    )
    assert deployed_upstreams(docs) == {
        "granite-8b": "http://granite.llm.svc:8000/v1",
        "llama-3-8b": "https://llama.example.com/v1",
        "mistral-7b": "http://localhost-proxy.llm.svc/v1",
    }
    dep = one(docs, "Deployment", "maas-gateway")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.example/maas:0.1"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/v1",
        "http://127.42.0.9/v1",
        "http://localhost:8000/v1",
        "http://LOCALHOST./v1",
        "http://api.localhost/v1",
        "http://[::1]:8000/v1",
        "http://0.0.0.0:8000/v1",
    ],
)
def test_a_loopback_upstream_is_refused_with_one_line_unless_allowed(url: str) -> None:
    upstreams = [f"--upstream={m}=http://{m}.llm.svc/v1" for m in MODELS[1:]]
    args = ["manifests", "-c", str(EXAMPLE_CONFIG), "--image", "quay.example/maas:0.1"]
    args += [*upstreams, "--upstream", f"granite-8b={url}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: model 'granite-8b' has the loopback upstream {url}")
    assert "--upstream granite-8b=URL" in lines[0]
    assert result.stdout == ""
    allowed = runner.invoke(app, [*args, "--allow-loopback-upstreams"])
    assert allowed.exit_code == 0, allowed.output
    docs = [d for d in yaml.safe_load_all(allowed.stdout) if d]
    assert deployed_upstreams(docs)["granite-8b"] == url.rstrip("/")


def test_the_example_configs_loopback_upstreams_are_refused() -> None:
    result = runner.invoke(
        app, ["manifests", "-c", str(EXAMPLE_CONFIG), "--image", "quay.example/maas:0.1"]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: model 'granite-8b' has the loopback upstream http://127.0.0.1:8001/v1, which in "
        "a pod is the pod itself: pass --upstream granite-8b=URL (or --allow-loopback-upstreams "
        "for a sidecar)"
    ]
