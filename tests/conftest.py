from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maas_metrics.config import Config, load_config
from tests.fixtures import EXAMPLE_CONFIG, ROOT
from tests.servers import RedisServer, redis_server

__all__ = ["EXAMPLE_CONFIG", "ROOT"]  # imported from here by older tests


@pytest.fixture(scope="session")
def example_config() -> Config:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real redis-server per test."""
    with redis_server(tmp_path) as server:
        yield server
