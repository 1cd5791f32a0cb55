"""The cached and gzip renders of /metrics show exactly the series of the uncached render.

Three copies of the gateway's metrics get the same events and the same
scrape times: one is rendered by `render` (every line formatted anew), one by
`Exposition.scrape()` and one by `Exposition.scrape(gzip=True)`. Every scrape
of the three must be byte-identical (gzip after decompression by the standard
library), and each scraped value must match a born-at-zero model the test
keeps on its own. A live gateway then answers Prometheus-style gzip scrapes
with the counts its clients received.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from maas_metrics.telemetry import Family, GatewayMetrics, render
from maas_metrics.telemetry.exposition import BLOCK_SERIES, Exposition, accepts_gzip
from tests.gateway_harness import (
    REQUESTS_NS,
    TIER_OF,
    make_config,
    parse_metrics,
    running_gateway,
    running_mock,
    secret,
)

USERS = [f"u{i}" for i in range(3 * BLOCK_SERIES)]  # enough users for several blocks per family
HOLD = 5.0

# Events: ("auth", user index, model index, hits) | ("limit", user, model) | ("report", user, model, tokens)
#         | ("quota", value) | ("scrape", seconds since the previous scrape)
event = st.one_of(
    st.tuples(
        st.just("auth"), st.integers(0, len(USERS) - 1), st.integers(0, 2), st.integers(0, 1)
    ),
    st.tuples(st.just("limit"), st.integers(0, len(USERS) - 1), st.integers(0, 2)),
    st.tuples(
        st.just("report"), st.integers(0, len(USERS) - 1), st.integers(0, 2), st.integers(0, 500)
    ),
    st.tuples(st.just("quota"), st.integers(1, 1000)),
    st.tuples(st.just("scrape"), st.sampled_from([0.0, 1.0, 2.5, 5.0, 7.0])),
)


class BornAtZeroModel:
    """The test's own truth for authorized_calls: totals plus the scrape a series was first read at 0."""

    def __init__(self) -> None:
        self.total: dict[tuple[str, str], int] = {}
        self.first_zero: dict[tuple[str, str], float] = {}
        self.ripe: set[tuple[str, str]] = set()

    def count(self, user: str, model: str) -> None:
        self.total[user, model] = self.total.get((user, model), 0) + 1

    def scrape(self, now: float) -> dict[tuple[str, str], int]:
        shown: dict[tuple[str, str], int] = {}
        for user, total in self.total.items():
            if user in self.ripe:
                shown[user] = total
            elif user not in self.first_zero:
                self.first_zero[user] = now
                shown[user] = 0
            elif now - self.first_zero[user] >= HOLD:
                self.ripe.add(user)
                shown[user] = total
            else:
                shown[user] = 0
        return shown


def apply(metrics: GatewayMetrics, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "auth":
        _, user, model, hits = step
        metrics.authorized(REQUESTS_NS, (USERS[user], "free"), f"m{model}", hits)
    elif kind == "limit":
        _, user, model = step
        metrics.limited(REQUESTS_NS, (USERS[user], "free"), f"m{model}", "free-requests")
    elif kind == "report":
        _, user, model, tokens = step
        metrics.reported("maas/tokens", (USERS[user], "free"), f"m{model}", tokens, 1, tokens + 1)
    elif kind == "quota":
        metrics.limit_max.set(("maas/requests", "free", "free-requests", "requests"), step[1])


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=1, max_size=1500))
def test_cached_and_gzip_renders_equal_the_uncached_render(steps: list[tuple[Any, ...]]) -> None:
    plain, cached, zipped = (GatewayMetrics(hold_seconds=HOLD) for _ in range(3))
    cache, zip_cache = Exposition(cached.families()), Exposition(zipped.families())
    truth = BornAtZeroModel()
    now = 100.0
    for step in [*steps, ("scrape", 0.0), ("scrape", HOLD), ("scrape", 1.0)]:
        if step[0] != "scrape":
            for metrics in (plain, cached, zipped):
                apply(metrics, step)
            if step[0] == "auth":
                truth.count(USERS[step[1]], f"m{step[2]}")
            continue
        now += step[1]
        expected = render(plain.families(), now)
        assert cache.scrape(now) == expected
        assert gzip.decompress(zip_cache.scrape(now, gzip=True)) == expected
        shown = truth.scrape(now)
        calls = {
            (dict(labels)["user"], dict(labels)["model"]): value
            for (name, labels), value in parse_metrics(expected.decode()).items()
            if name == "authorized_calls"
        }
        assert calls == shown


def test_gzip_body_is_one_member_that_zlib_streaming_readers_accept() -> None:
    """Clients that stop after one gzip member (httpx, curl) read the whole body."""
    metrics = GatewayMetrics()
    for i in range(5 * BLOCK_SERIES):
        metrics.authorized(REQUESTS_NS, (f"user-{i}", "free"), "m", 1)
    exposition = Exposition(metrics.families())
    exposition.scrape()
    body = exposition.scrape(gzip=True)
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    raw = reader.decompress(body) + reader.flush()
    assert reader.eof and reader.unused_data == b""
    assert raw.count(b"\nauthorized_calls{") == 5 * BLOCK_SERIES


def test_accept_encoding_parsing() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("identity, gzip;q=0.5")
    assert accepts_gzip("GZIP")
    assert accepts_gzip("*")
    assert not accepts_gzip(None)
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("br, deflate")


def test_live_gateway_gzip_scrapes_show_what_clients_received() -> None:
    """Prometheus asks for gzip: the gateway compresses, and the counts match the clients' answers."""
    with running_mock() as mock, running_gateway(make_config(mock.url)) as gateway:
        received: dict[str, int] = {}
        bodies: list[bytes] = []
        with httpx.Client(timeout=10) as client:
            for round_ in range(3):
                for user in ("alice", "dave", "frank")[: round_ + 1]:  # series born mid-run
                    response = client.post(
                        f"{gateway}/v1/chat/completions",
                        json={
                            "model": "granite-8b",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                        headers={"Authorization": f"Bearer {secret(user)}"},
                    )
                    assert response.status_code == 200
                    received[user] = received.get(user, 0) + 1
                # Prometheus's request: raw bytes kept to check the encoding ourselves.
                with client.stream(
                    "GET", f"{gateway.operator}/metrics", headers={"Accept-Encoding": "gzip"}
                ) as scrape:
                    assert scrape.headers["content-encoding"] == "gzip"
                    bodies.append(b"".join(scrape.iter_raw()))
            plain = client.get(
                f"{gateway.operator}/metrics", headers={"Accept-Encoding": "identity"}
            )
        assert "content-encoding" not in plain.headers
    last = parse_metrics(plain.text)
    calls = {
        dict(labels)["user"]: value
        for (name, labels), value in last.items()
        if name == "authorized_calls" and dict(labels)["limitador_namespace"] == REQUESTS_NS
    }
    assert calls == received
    assert {dict(labels)["tier"] for name, labels in last if name == "authorized_calls"} == {
        TIER_OF[u] for u in received
    }
    for body in bodies:
        assert gzip.decompress(body).startswith(b"# HELP authorized_hits")


def test_extra_families_are_appended_uncached() -> None:
    """Families built anew per scrape (the ledger's health) follow the cached ones, gzip too."""
    plain, cached = GatewayMetrics(), GatewayMetrics()
    exposition = Exposition(cached.families())
    for step in range(3):
        for metrics in (plain, cached):
            metrics.authorized(REQUESTS_NS, (f"user-{step}", "free"), "m", 1)
        extra = Family("maas_ledger_pending", "Records not yet written.", "gauge", ())
        extra.set((), step * 7)
        now = 50.0 + step
        expected = render([*plain.families(), extra], now)
        if step % 2:
            assert gzip.decompress(exposition.scrape(now, gzip=True, extra=[extra])) == expected
        else:
            assert exposition.scrape(now, extra=[extra]) == expected
