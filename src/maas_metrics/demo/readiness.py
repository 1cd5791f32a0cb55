"""Waiting until a started component really serves, failing early when it dies instead."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


class NotReady(Exception):
    """A component did not become ready; `str()` says which and why in one line."""


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise NotReady(f"{what} exited while starting")
        if check():
            return
        if time.monotonic() > deadline:
            raise NotReady(f"{what} not ready after {timeout:g} s")
        time.sleep(interval)


def tcp_open(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((host, port)) == 0

    return check


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check
