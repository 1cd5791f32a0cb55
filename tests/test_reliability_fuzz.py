"""Property-based fuzzing of the gateway's HTTP API (hypothesis) against a real running gateway.

Every malformed body, header, key, path or method must get a 4xx answer with
an OpenAI-style JSON error body, never a 5xx, and must leave `/metrics`
byte-for-byte unchanged (no counter moves before both policies admitted a
request). Requests go over real TCP to the gateway served by uvicorn, with
the project's mock model behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway_harness import MODELS, make_config, running_gateway, running_mock, secret

MAX_BODY = 2048
PATHS = ("/v1/chat/completions", "/v1/completions")
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


OPERATOR_URLS: dict[str, str] = {}  # API base URL -> operator listener URL (/metrics)


@pytest.fixture(scope="module")
def gateway() -> Iterator[httpx.Client]:
    with running_mock() as mock:
        config = make_config(mock.url, max_body_bytes=MAX_BODY)
        with running_gateway(config) as url, httpx.Client(base_url=url, timeout=10) as client:
            OPERATOR_URLS[str(client.base_url)] = url.operator
            yield client


def metrics(client: httpx.Client) -> str:
    response = httpx.get(f"{OPERATOR_URLS[str(client.base_url)]}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def send_and_check(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    content: bytes | None = None,
    headers: dict[str, Any] | None = None,
) -> httpx.Response:
    """Send one request; assert a 4xx OpenAI-style JSON error and unchanged /metrics."""
    before = metrics(client)
    response = client.request(method, path, content=content, headers=headers)
    assert 400 <= response.status_code < 500, (content, response.status_code, response.text[:200])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"]
    assert isinstance(body["error"].get("type"), str)
    assert metrics(client) == before
    return response


def valid_auth(user: str = "dave") -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(user)}", "Content-Type": "application/json"}


def not_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return True
    return False


@FUZZ
@given(body=st.binary(max_size=MAX_BODY).filter(not_json), path=st.sampled_from(PATHS))
def test_bytes_that_are_not_json_get_400(gateway: httpx.Client, body: bytes, path: str) -> None:
    response = send_and_check(gateway, "POST", path, content=body, headers=valid_auth())
    assert response.status_code == 400


@FUZZ
@given(value=JSON_VALUES.filter(lambda v: not isinstance(v, dict)), path=st.sampled_from(PATHS))
def test_json_that_is_not_an_object_gets_400(gateway: httpx.Client, value: Any, path: str) -> None:
    body = orjson.dumps(value)
    response = send_and_check(gateway, "POST", path, content=body, headers=valid_auth())
    assert response.status_code in (400, 413)


def _bad_model_object(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object the gateway must refuse before any policy: bad/absent/unknown model or bad stream."""
    obj: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
    obj.pop("model", None)
    obj.pop("stream", None)
    flaw = draw(st.sampled_from(["missing", "not a string", "empty", "unknown", "bad stream"]))
    if flaw == "not a string":
        obj["model"] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, str)))
    elif flaw == "empty":
        obj["model"] = ""
    elif flaw == "unknown":
        obj["model"] = draw(st.text(min_size=1, max_size=40).filter(lambda m: m not in MODELS))
    elif flaw == "bad stream":
        obj["model"] = draw(st.sampled_from(MODELS))
        obj["stream"] = draw(
            JSON_VALUES.filter(lambda v: v is not None and not isinstance(v, bool))
        )
    obj.setdefault("messages", [{"role": "user", "content": "hi"}])
    return obj


bad_model_objects = st.composite(_bad_model_object)()


@FUZZ
@given(obj=bad_model_objects, path=st.sampled_from(PATHS))
def test_objects_without_a_usable_model_get_4xx(
    gateway: httpx.Client, obj: dict[str, Any], path: str
) -> None:
    body = orjson.dumps(obj)
    response = send_and_check(gateway, "POST", path, content=body, headers=valid_auth())
    model = obj.get("model")
    if isinstance(model, str) and model and model not in MODELS and len(body) <= MAX_BODY:
        assert response.status_code == 404
    else:
        assert response.status_code in (400, 413)


SECRETS = {secret(user) for user in ("alice", "bob", "carol", "dave", "frank", "nobody")}
# Bytes allowed in an HTTP field value (RFC 9110: VCHAR, obs-text, SP, HTAB). Bytes outside it
# are invalid HTTP: uvicorn's parser refuses them with a plain-text 400 before the app runs.
FIELD_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100)) + b" \t"
field_values = st.binary(max_size=80).map(
    lambda raw: bytes(FIELD_BYTES[b % len(FIELD_BYTES)] for b in raw).strip(b" \t")
)


def _header_value(draw: st.DrawFn) -> bytes:
    """A valid HTTP field value, often shaped like a bearer key, that holds no valid key."""
    raw = draw(field_values)
    shape = draw(st.sampled_from(["raw", "bearer", "basic", "bearer-ish", "valid-with-junk"]))
    if shape == "bearer":
        value = b"Bearer " + raw
    elif shape == "basic":
        value = b"Basic " + raw
    elif shape == "bearer-ish":
        prefix = draw(st.sampled_from([b"bearer", b"Bearer", b"BEARER ", b"Bearer\t", b"Token "]))
        value = prefix + raw
    elif shape == "valid-with-junk":
        value = b"Bearer " + secret("dave").encode() + (raw or b"x")
    else:
        value = raw
    return value.strip(b" \t")


def holds_no_key(value: bytes) -> bool:
    """False for a value the gateway would read as a configured key (it strips like str.strip)."""
    scheme, _, rest = value.decode("latin-1").partition(" ")
    return not (scheme.lower() == "bearer" and rest.strip() in SECRETS)


bad_authorization = st.composite(_header_value)().filter(holds_no_key)


@FUZZ
@given(
    authorization=st.one_of(st.none(), bad_authorization),
    extra=st.dictionaries(
        st.sampled_from(["X-User", "X-Tier", "X-Forwarded-User", "X-Api-Key", "Api-Key", "Cookie"]),
        field_values,
        max_size=3,
    ),
    path=st.sampled_from((*PATHS, "/v1/models", "/v1/models/granite-8b")),
)
def test_bad_keys_get_401_whatever_other_headers_say(
    gateway: httpx.Client, authorization: bytes | None, extra: dict[str, bytes], path: str
) -> None:
    headers: dict[str, Any] = {"Content-Type": "application/json", **extra}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = orjson.dumps({"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]})
    method = "GET" if path.startswith("/v1/models") else "POST"
    response = send_and_check(
        gateway, method, path, content=body if method == "POST" else None, headers=headers
    )
    assert response.status_code == 401


@FUZZ
@given(size=st.integers(MAX_BODY + 1, 4 * MAX_BODY), path=st.sampled_from(PATHS))
def test_oversized_bodies_get_413(gateway: httpx.Client, size: int, path: str) -> None:
    prefix = b'{"model": "granite-8b", "messages": [{"role": "user", "content": "'
    body = prefix + b"a" * (size - len(prefix) - 4) + b'"}]}'
    response = send_and_check(gateway, "POST", path, content=body, headers=valid_auth())
    assert response.status_code == 413


@FUZZ
@given(
    prefix=st.sampled_from(["/", "/v1/", "/v1/chat/", "/v2/", "/v1/models/"]),
    segment=st.text(min_size=1, max_size=20),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
)
def test_unknown_paths_get_json_404(
    gateway: httpx.Client, prefix: str, segment: str, method: str
) -> None:
    path = prefix + "zz-" + quote(segment, safe="")
    if prefix == "/v1/models/":
        method = "GET"  # an unknown model id
    response = send_and_check(gateway, method, path, content=b"{}", headers=valid_auth())
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (method, path)
        for path, allowed in (
            ("/v1/chat/completions", "POST"),
            ("/v1/completions", "POST"),
            ("/v1/models", "GET"),
            ("/healthz", "GET"),
        )
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH")
        if method != allowed
    ],
)
def test_wrong_methods_get_json_405(gateway: httpx.Client, method: str, path: str) -> None:
    response = send_and_check(gateway, method, path, content=b"{}", headers=valid_auth())
    assert response.status_code == 405


def test_a_tierless_user_gets_403_and_no_counter(gateway: httpx.Client) -> None:
    body = orjson.dumps({"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]})
    response = send_and_check(gateway, "POST", PATHS[0], content=body, headers=valid_auth("nobody"))
    assert response.status_code == 403


def test_the_fuzzed_gateway_still_serves_and_counts(gateway: httpx.Client) -> None:
    """After all of the above, a valid request is admitted and counted: the fuzzing broke nothing."""
    before = metrics(gateway)
    body = orjson.dumps({"model": "granite-8b", "messages": [{"role": "user", "content": "hi"}]})
    response = gateway.post(PATHS[0], content=body, headers=valid_auth("frank"))
    assert response.status_code == 200
    assert metrics(gateway) != before
