"""The Prometheus client names the problem when a URL answers JSON that is not Prometheus's.

A proxy, a wrong port or another service may answer JSON of any shape; the
client must raise `PrometheusError` (one line, the URL, no internals), never
AttributeError/KeyError/TypeError. The wrong-port case uses the project's
real mock model and the gateway's operator listener; the odd shapes come
from a tiny server in the test, the one thing a real service will not send
on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from maas_metrics.prometheus import PrometheusAPI, PrometheusError
from tests.gateway_harness import make_config, running_gateway, running_mock

SHAPES = {
    "/list": b"[1, 2, 3]",
    "/string": b'"hello"',
    "/null": b"null",
    "/number": b"42",
    "/no-status": b'{"data": {"resultType": "vector", "result": []}}',
    "/no-data": b'{"status": "success"}',
    "/bad-result": b'{"status": "success", "data": {"resultType": "vector", "result": [{"x": 1}]}}',
    "/result-not-list": b'{"status": "success", "data": {"resultType": "vector", "result": 7}}',
    "/data-not-object": b'{"status": "success", "data": [1]}',
}


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        prefix = "/" + self.path.split("/")[1]
        body = SHAPES.get(prefix, b"{}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture(scope="module")
def odd_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def every_call(api: PrometheusAPI) -> list[object]:
    """Each public call, so a failure in any of them is seen."""
    outcomes: list[object] = []
    for call in (
        lambda: api.query("up"),
        lambda: api.query_range("up", 0, 60, 15),
        lambda: api.label_values("user"),
    ):
        try:
            outcomes.append(call())
        except PrometheusError as error:
            outcomes.append(error)
    return outcomes


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_odd_json_is_a_clear_prometheus_error(odd_server: str, shape: str) -> None:
    with PrometheusAPI(f"{odd_server}{shape}", timeout=10) as api:
        outcomes = every_call(api)
    for outcome in outcomes:
        assert isinstance(outcome, PrometheusError), (shape, outcome)
        message = str(outcome)
        assert "\n" not in message and "Traceback" not in message


def test_the_wrong_service_is_a_clear_prometheus_error() -> None:
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        for url in (mock.url.removesuffix("/v1"), gateway, gateway.operator):
            with PrometheusAPI(url, timeout=10) as api:
                for outcome in every_call(api):
                    assert isinstance(outcome, PrometheusError), (url, outcome)


def test_a_password_in_the_prometheus_url_is_never_shown(odd_server: str) -> None:
    secret_url = odd_server.replace("http://", "http://reader:pr0m-s3cret@") + "/list"
    with PrometheusAPI(secret_url, timeout=10) as api:
        assert "pr0m-s3cret" not in api.url
        outcomes = every_call(api)
    assert all(isinstance(o, PrometheusError) for o in outcomes)
    assert not any("pr0m-s3cret" in str(o) for o in outcomes)
    assert any("reader:***@" in str(o) for o in outcomes)
