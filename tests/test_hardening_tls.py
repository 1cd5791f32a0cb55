"""An upstream behind TLS signed by a private CA: trusted through `ca_file`, refused without it.

The CA and the server certificate for 127.0.0.1 are made by `openssl` for
the test; TLS is terminated in front of the project's mock model, which
answers as usual. Token counts are compared with the usage the client got.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from maas_metrics.config import parse_config
from tests.gateway_harness import (
    TOKENS_NS,
    GatewayURL,
    make_config,
    running_gateway,
    running_mock,
    scrape,
    secret,
    usage_key,
    write_config,
)
from tests.hardening_upstreams import PrivateCA, make_private_ca, tls_front

CLI = str(Path(sys.executable).parent / "maas-metrics")


@dataclass
class Setup:
    gateway: GatewayURL
    ca: PrivateCA
    upstream: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    ca = make_private_ca(tmp_path_factory.mktemp("ca"))
    with running_mock() as mock:
        mock_port = int(mock.url.split(":")[2].split("/")[0])
        with (
            tls_front(mock_port, ca.server_context()) as port,
            tls_front(mock_port, ca.server_context()) as other_port,
        ):
            upstream = f"https://127.0.0.1:{port}/v1"
            data: dict[str, Any] = make_config(mock.url).model_dump(mode="json")
            data["models"] += [
                {"name": "private-tls", "upstream": upstream, "ca_file": str(ca.ca_file)},
                {"name": "untrusted-tls", "upstream": f"https://127.0.0.1:{other_port}/v1"},
            ]
            with running_gateway(parse_config(data)) as gateway:
                yield Setup(gateway, ca, upstream)


def tokens(gateway: GatewayURL, model: str) -> float:
    return scrape(gateway).get(usage_key("authorized_hits", TOKENS_NS, "frank", model), 0.0)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_private_ca_upstream_is_served_and_counted(setup: Setup, stream: bool) -> None:
    client = openai.OpenAI(base_url=f"{setup.gateway}/v1", api_key=secret("frank"))
    before = tokens(setup.gateway, "private-tls")
    messages: Any = [{"role": "user", "content": "hello over TLS"}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="private-tls",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model="private-tls", messages=messages).usage
    assert usage is not None and usage.total_tokens > 0
    assert tokens(setup.gateway, "private-tls") - before == usage.total_tokens


def test_without_the_ca_the_same_upstream_is_refused(setup: Setup) -> None:
    client = openai.OpenAI(base_url=f"{setup.gateway}/v1", api_key=secret("frank"), max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="untrusted-tls", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 502
    message = raised.value.message
    assert "TLS certificate is not trusted" in message
    assert "127.0.0.1" not in message and ":" not in message.split("failed:", 1)[1]


def check(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "config", "check", str(config_path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("ca_file", "upstream", "problem"),
    [
        ("missing.pem", "https://llm.example/v1", "does not exist"),
        ("not-pem.pem", "https://llm.example/v1", "holds no PEM certificate"),
        ("ca.pem", "http://llm.example/v1", "only used with an https:// upstream"),
    ],
)
def test_config_check_rejects_a_ca_file_the_gateway_could_not_use(
    setup: Setup, tmp_path: Path, ca_file: str, upstream: str, problem: str
) -> None:
    (tmp_path / "not-pem.pem").write_text("hello\n")
    (tmp_path / "ca.pem").write_bytes(setup.ca.ca_file.read_bytes())
    data: dict[str, Any] = make_config("http://127.0.0.1:1/v1").model_dump(mode="json")
    data["models"][0].update({"upstream": upstream, "ca_file": str(tmp_path / ca_file)})
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "models[0]" in lines[0] and problem in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_rejects_two_trusts_for_one_endpoint(setup: Setup, tmp_path: Path) -> None:
    data: dict[str, Any] = make_config("http://127.0.0.1:1/v1").model_dump(mode="json")
    data["models"][0].update({"upstream": setup.upstream, "ca_file": str(setup.ca.ca_file)})
    data["models"][1].update({"upstream": setup.upstream})  # same endpoint, system CAs
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(path)
    assert result.returncode == 2
    assert "must all use the same ca_file" in result.stderr


def test_config_check_accepts_the_private_ca(setup: Setup, tmp_path: Path) -> None:
    data: dict[str, Any] = make_config("http://127.0.0.1:1/v1").model_dump(mode="json")
    data["models"][0].update({"upstream": setup.upstream, "ca_file": str(setup.ca.ca_file)})
    result = check(write_config(parse_config(data), tmp_path / "maas.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
