"""Calls to the model upstreams over pooled keep-alive connections, failures mapped to 502/504.

aiohttp's client is used because its connection pool and C HTTP parser cost
a fraction of httpx/httpcore per request (httpcore's pool rescans every
connection on each request, which capped the gateway at ~550 req/s at
concurrency 16 on the reference 2-core machine).

Client headers are never forwarded: the upstream sees only the JSON body, so
nothing else the client sends reaches the model, and the client's gateway key
is never disclosed to it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import orjson
from starlette.responses import Response

from maas_metrics.gateway import errors

log = logging.getLogger(__name__)

_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete (non-streamed) upstream response."""

    status: int
    content: bytes
    content_type: str


class UpstreamStream:
    """An upstream response whose status and headers arrived and whose body is still coming."""

    def __init__(self, response: aiohttp.ClientResponse, upstreams: Upstreams) -> None:
        self._response = response
        self._upstreams = upstreams
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "")

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; a broken or stalled upstream raises `GatewayError` (502/504)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self._upstreams.failure(error) from None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self._upstreams.failure(error) from None
        finally:
            self._response.release()

    def close(self) -> None:
        """Release the connection to the pool when the body was read, else drop it (no await)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class Upstreams:
    """One connection pool shared by all models; connect and read timeouts from the config.

    The session belongs to the serving event loop, so it is made there: by the
    app's lifespan, or on first use under a server that runs no lifespan.
    """

    def __init__(
        self, timeout_seconds: float, tls: Mapping[str, ssl.SSLContext] | None = None
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        # Upstream base URL -> the TLS context trusting its private CA (`ca_file`).
        self._tls = {base.rstrip("/") + "/": context for base, context in (tls or {}).items()}

    async def start(self) -> None:
        self._open()

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.timeout_seconds,
                sock_read=self.timeout_seconds,
            ),
            headers=_HEADERS,
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )
        return self._session

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session if self._session is not None else self._open()

    def _ssl(self, url: str) -> ssl.SSLContext | bool:
        """The private-CA context of the upstream `url` belongs to; True (system CAs) otherwise."""
        for base, context in self._tls.items():
            if url.startswith(base):
                return context
        return True

    def failure(self, error: BaseException) -> errors.GatewayError:
        """The client's 502/504; the detail (with the upstream's address) goes to the log only."""
        if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
            return errors.upstream_timeout(self.timeout_seconds)
        log.warning("upstream request failed: %s", str(error) or type(error).__name__)
        return errors.upstream_unreachable(failure_kind(error))

    async def post(self, url: str, body: bytes) -> Reply:
        """POST and read the whole answer; raises 502 (unreachable, broken) or 504 (timeout)."""
        try:
            async with self.session.post(
                url, data=body, allow_redirects=False, ssl=self._ssl(url)
            ) as response:
                content = await response.read()
                return Reply(
                    response.status,
                    content,
                    response.headers.get("Content-Type", "application/json"),
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self.failure(error) from None

    async def open_stream(self, url: str, body: bytes) -> UpstreamStream:
        """POST and return once status and headers arrived; the caller must `close()` it."""
        try:
            response = await self.session.post(
                url, data=body, allow_redirects=False, ssl=self._ssl(url)
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self.failure(error) from None
        return UpstreamStream(response, self)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def failure_kind(error: BaseException) -> str:
    """What went wrong, in words that name no host, port, path or library internals."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "its TLS certificate is not trusted"
    if isinstance(error, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "cannot connect"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the connection closed before the answer was complete"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut off or malformed"
    if isinstance(error, aiohttp.ClientResponseError):
        return "the answer is not valid HTTP"
    return "the connection failed"


def upstream_error(status: int, content: bytes) -> Response:
    """An upstream 4xx/5xx passed through with its status, as an OpenAI-style JSON error.

    An upstream body that already is `{"error": {...}}` is passed unchanged;
    anything else is wrapped so the client always gets the same shape.
    """
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        body = content
    else:
        body = errors.error_body(
            f"Upstream model server answered HTTP {status}.", "upstream_error", status
        )
    return Response(body, status_code=status, media_type=errors.JSON)
