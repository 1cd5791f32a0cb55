"""Misbehaving upstreams and a private CA for the hardening tests.

The project's mock model is the only stand-in for an LLM; these tiny servers
stand in only for upstream failures it cannot produce (closing mid-answer,
answering garbage, stalling) and put TLS in front of the mock. The CA and
the server certificate are made by the `openssl` command for each test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.gateway_harness import LoopThread

#: What a broken upstream does after reading the request.
MODES = ("close", "garbage", "cut", "stall")


@dataclass(frozen=True)
class PrivateCA:
    ca_file: Path  # the CA certificate (what `ca_file` in the config points at)
    cert_file: Path  # the server certificate for 127.0.0.1, signed by the CA
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_private_ca(directory: Path) -> PrivateCA:
    """A fresh CA and a server certificate for IP 127.0.0.1 signed by it (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca_cert), "-days", "2", "-subj", "/CN=maas-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return PrivateCA(ca_cert, cert, key)


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))


async def _broken(mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await _read_request(reader)
        if mode == "garbage":
            writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        elif mode == "cut":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"id": "cut'
            )
        elif mode == "stall":
            await asyncio.sleep(3600)
        await writer.drain()
    writer.close()


async def _relay(
    target_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """TLS in front of the mock: bytes both ways, unchanged."""
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        writer.close()
        return

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextmanager
def broken_upstream(mode: str, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """An upstream that reads a request and then misbehaves as `mode` says; yields its port."""
    assert mode in MODES
    thread = LoopThread()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(lambda r, w: _broken(mode, r, w), "127.0.0.1", 0, ssl=tls)

    server = thread.run(start())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        thread.close()


@contextmanager
def tls_front(target_port: int, context: ssl.SSLContext) -> Iterator[int]:
    """TLS on 127.0.0.1 in front of a plain server (the mock model); yields the TLS port."""
    thread = LoopThread()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(
            lambda r, w: _relay(target_port, r, w), "127.0.0.1", 0, ssl=context
        )

    server = thread.run(start())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        thread.close()
