"""Ports for the demo: the well-known defaults when free, else any free port."""

from __future__ import annotations

import socket


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(preferred: int, taken: set[int], host: str = "127.0.0.1") -> int:
    """`preferred` if nothing listens there and it is not already handed out, else a free port."""
    if preferred not in taken and port_is_free(preferred, host):
        taken.add(preferred)
        return preferred
    while True:
        port = free_port(host)
        if port not in taken:
            taken.add(port)
            return port
