"""The traffic generator against a small real gateway stand-in and against the mock model.

The stand-in (a Starlette app served by uvicorn) limits free users after two
requests, fails one model with 502 and records every request it saw, so the
generator's tallies can be checked against what really arrived.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

from maas_metrics.cli import app
from maas_metrics.config import Config
from maas_metrics.simulate.keys import SimUser, TrafficError, load_keys, users_from_config
from maas_metrics.simulate.mock_model import compute_usage, start_server
from maas_metrics.simulate.planner import RequestPlanner
from maas_metrics.simulate.stats import Result
from maas_metrics.simulate.traffic import TrafficGenerator, run_traffic
from tests.fixtures import CLI, DEMO_KEYS, EXAMPLE_CONFIG
from tests.servers import free_port, wait_for_port

USERS = [
    SimUser("ann", "k-ann", "free"),
    SimUser("ben", "k-ben", "free"),
    SimUser("pat", "k-pat", "premium"),
    SimUser("eve", "k-eve", "enterprise"),
]
MODELS = ["m-one", "m-two", "broken-model"]
FREE_LIMIT = 2


@dataclass
class Seen:
    user: str
    tier: str
    model: str
    stream: bool
    include_usage: bool
    status: int
    prompt_tokens: int
    completion_tokens: int


class FakeGateway:
    """Counts per user; free users get 429 after FREE_LIMIT requests; broken-model gets 502."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.users = {u.key: u for u in USERS}
        route = Route("/v1/chat/completions", self.complete, methods=["POST"])
        self.app = Starlette(
            routes=[
                route,
                Route("/v1/completions", self.complete, methods=["POST"]),
                Route("/v1/models", self.models),
            ]
        )

    async def models(self, request: Request) -> Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.users:
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        return JSONResponse({"object": "list", "data": []})

    async def complete(self, request: Request) -> Response:
        user = self.users.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if user is None:
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        raw = await request.body()
        body = orjson.loads(raw)
        self.counts[user.name] += 1
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if user.tier == "free" and self.counts[user.name] > FREE_LIMIT:
            status = 429
        elif body["model"] == "broken-model":
            status = 502
        else:
            status = 200
        # Token counts of this stand-in: arbitrary but known per request.
        prompt_tokens = len(raw) % 97 + 1 if status == 200 else 0
        completion_tokens = 5 + self.counts[user.name] if status == 200 else 0
        self.seen.append(
            Seen(
                user.name, user.tier, body["model"], stream, include_usage, status,
                prompt_tokens, completion_tokens,
            )
        )  # fmt: skip
        if status != 200:
            message = "limited" if status == 429 else "upstream failed"
            return JSONResponse({"error": {"message": message}}, status_code=status)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not stream:
            return JSONResponse({"choices": [{"message": {"content": "hi"}}], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            yield b": a comment line, to be ignored\n\n"
            for word in ("one ", "two ", "three"):
                yield (
                    b"data: " + orjson.dumps({"choices": [{"delta": {"content": word}}]}) + b"\n\n"
                )
            if include_usage:
                yield b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
async def fake_gateway() -> AsyncIterator[tuple[str, FakeGateway]]:
    fake = FakeGateway()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the fake gateway did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", fake
    finally:
        server.should_exit = True
        await task


async def test_counts_add_up_and_every_tier_and_model_shows(
    fake_gateway: tuple[str, FakeGateway],
) -> None:
    url, fake = fake_gateway
    results: list[Result] = []
    stats = await run_traffic(
        url, USERS, MODELS, rate=80, duration=1.5, stream_fraction=0.4, seed=3,
        on_result=results.append,
    )  # fmt: skip
    assert stats.unfinished == 0
    assert len(results) == len(fake.seen) == stats.total.requests
    assert stats.total.requests >= 30
    for tier in ("free", "premium", "enterprise"):
        seen = [s for s in fake.seen if s.tier == tier]
        counts = stats.tiers[tier]
        assert counts.requests == len(seen) > 0
        assert counts.ok == sum(s.status == 200 for s in seen)
        assert counts.limited == sum(s.status == 429 for s in seen)
        assert counts.errors == sum(s.status == 502 for s in seen)
        assert counts.requests == counts.ok + counts.limited + counts.errors
        assert counts.streamed == sum(s.stream for s in seen)
        assert counts.prompt_tokens == sum(s.prompt_tokens for s in seen)
        assert counts.completion_tokens == sum(s.completion_tokens for s in seen)
    assert stats.tiers["free"].limited == stats.total.limited > 0
    assert stats.total.errors == sum(s.status == 502 for s in fake.seen) > 0
    assert all(s.model == "broken-model" for s in fake.seen if s.status == 502)
    assert set(stats.models) == set(MODELS)
    assert {s.model for s in fake.seen} == set(MODELS)
    assert set(stats.users) == {u.name for u in USERS}
    streamed = [s for s in fake.seen if s.stream]
    assert streamed and all(s.include_usage for s in streamed)
    # Each result is attributed to the user and tier that the gateway saw.
    assert sorted((r.user, r.model, r.status) for r in results) == sorted(
        (s.user, s.model, s.status) for s in fake.seen
    )
    assert all(r.error for r in results if r.status != 200)


async def test_against_the_mock_model_tokens_match_its_formula() -> None:
    server = await start_server("127.0.0.1", 0)
    results: list[Result] = []
    try:
        generator = TrafficGenerator(
            server.url, USERS, ["granite-8b", "llama-3-8b"], rate=60,
            stream_fraction=0.5, completions_fraction=0.3, seed=11, on_result=results.append,
        )  # fmt: skip
        await generator.check_gateway()
        stats = await generator.run(duration=1.0)
    finally:
        await server.close()
    assert stats.total.requests == len(results) >= 20
    assert stats.total.ok == len(results)
    assert {r.endpoint for r in results} == {"chat", "completions"}
    assert {r.stream for r in results} == {True, False}
    for result in results:
        usage = compute_usage(result.body, result.endpoint)
        assert (result.prompt_tokens, result.completion_tokens) == (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
    assert stats.total.total_tokens == sum(r.total_tokens for r in results)


async def test_stop_ends_an_open_ended_run() -> None:
    server = await start_server("127.0.0.1", 0)
    try:
        generator = TrafficGenerator(server.url, USERS, ["m"], rate=50, seed=1)
        run = asyncio.create_task(generator.run(duration=None))
        await asyncio.sleep(0.5)
        generator.stop()
        stats = await asyncio.wait_for(run, 10)
    finally:
        await server.close()
    assert stats.total.requests > 0
    assert stats.total.ok == stats.total.requests


async def test_unreachable_gateway_is_reported() -> None:
    generator = TrafficGenerator(f"http://127.0.0.1:{free_port()}", USERS, ["m"], rate=1)
    with pytest.raises(TrafficError, match="cannot reach the gateway"):
        await generator.check_gateway()


async def test_a_gateway_that_rejects_the_keys_is_reported(
    fake_gateway: tuple[str, FakeGateway],
) -> None:
    url, _ = fake_gateway
    await TrafficGenerator(url, USERS, MODELS, rate=1).check_gateway()  # known keys pass
    stranger = [SimUser("zed", "k-unknown", "free")]
    with pytest.raises(TrafficError, match="rejects the key of user 'zed' \\(401\\)"):
        await TrafficGenerator(url, stranger, MODELS, rate=1).check_gateway()


# --- what gets sent -----------------------------------------------------------------------


def _planner(seed: int, stream_fraction: float = 0.2) -> RequestPlanner:
    import random

    return RequestPlanner(USERS, MODELS, stream_fraction, 0.1, random.Random(seed))


def test_planner_covers_every_tier_and_model_evenly_and_varies_prompts() -> None:
    planner = _planner(5)
    planned = [planner.next() for _ in range(600)]
    for start in range(0, 600, 3):
        assert {p.user.tier for p in planned[start : start + 3]} == {
            "free",
            "premium",
            "enterprise",
        }
        assert {p.model for p in planned[start : start + 3]} == set(MODELS)
    assert {p.user.name for p in planned} == {u.name for u in USERS}
    prompts = [
        "\n".join(m["content"] for m in p.body["messages"])
        if p.endpoint == "chat"
        else p.body["prompt"]
        for p in planned
    ]
    assert min(map(len, prompts)) < 100
    assert max(map(len, prompts)) > 2000
    streamed = sum(p.stream for p in planned)
    assert 0.12 * 600 < streamed < 0.28 * 600
    assert all(p.body["stream_options"] == {"include_usage": True} for p in planned if p.stream)
    assert {p.endpoint for p in planned} == {"chat", "completions"}


def test_same_seed_same_requests() -> None:
    first, second, other = _planner(9), _planner(9), _planner(10)
    a = [first.next() for _ in range(50)]
    assert a == [second.next() for _ in range(50)]
    assert a != [other.next() for _ in range(50)]


def test_generator_rejects_bad_settings() -> None:
    with pytest.raises(TrafficError, match="rate"):
        TrafficGenerator("http://x", USERS, MODELS, rate=0)
    with pytest.raises(TrafficError, match="stream fraction"):
        TrafficGenerator("http://x", USERS, MODELS, rate=1, stream_fraction=1.5)
    with pytest.raises(TrafficError, match="http://"):
        TrafficGenerator("ftp://x", USERS, MODELS, rate=1)
    with pytest.raises(TrafficError, match="no users"):
        TrafficGenerator("http://x", [], MODELS, rate=1)


# --- keys and config ------------------------------------------------------------------------


def test_demo_keys_map_to_their_tiers(example_config: Config) -> None:
    users = users_from_config(example_config, load_keys(DEMO_KEYS))
    assert {u.name: u.tier for u in users} == {
        "alice": "free",
        "bob": "free",
        "carol": "free",
        "dave": "premium",
        "erin": "premium",
        "frank": "enterprise",
        "grace": "enterprise",
    }
    assert all(u.key.startswith("sk-demo-") for u in users)


def test_keys_not_in_the_config_are_rejected(example_config: Config) -> None:
    with pytest.raises(TrafficError, match=r"keys\.mallory: this key is not in the config"):
        users_from_config(example_config, {"mallory": "sk-not-configured"})
    with pytest.raises(TrafficError, match="gives this key to user 'alice'"):
        users_from_config(example_config, {"bob": "sk-demo-alice-not-secret"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- alice\n- bob\n", "expected a mapping `keys: {user: secret}`"),
        ("alice: sk-1\n", "expected a mapping `keys: {user: secret}`"),
        ("keys: {}\n", "expected a mapping"),
        ("keys: {alice: 5}\n", "keys.alice: user and secret must be non-empty strings"),
        ("keys: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_keys_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(TrafficError) as caught:
        load_keys(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- the CLI ------------------------------------------------------------------------------


def _traffic_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["traffic", *args])
    return result.exit_code, result.stderr


@pytest.fixture
def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_cli_bad_input_gives_one_error_line(tmp_path: Path, unreachable: str) -> None:
    config = str(EXAMPLE_CONFIG)
    keys = str(DEMO_KEYS)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- a list\n")
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("tiers: []\nmodels: []\n")
    cases: list[tuple[list[str], int, str]] = [
        (["--keys", str(tmp_path / "missing.yaml")], 1, "cannot read keys file"),
        (["--keys", str(wrong)], 1, "expected a mapping `keys: {user: secret}`"),
        (["--keys", keys, "--gateway", unreachable], 1, "cannot reach the gateway"),
        (["--keys", keys, "--rate", "0"], 1, "rate must be > 0"),
        (["--keys", keys, "--stream-fraction", "2"], 1, "stream fraction must be between 0 and 1"),
        (["--keys", keys, "--duration", "0"], 1, "--duration must be > 0"),
        (["--keys", keys, "--config", str(bad_config)], 2, "tiers"),
    ]
    for args, code, message in cases:
        options = {"--gateway": unreachable, "--config": config}
        for i in range(0, len(args), 2):
            options[args[i]] = args[i + 1]
        exit_code, stderr = _traffic_cli(*[x for kv in options.items() for x in kv])
        assert exit_code == code, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (args, stderr)
        assert lines[0].startswith("error: ") and message in lines[0], (args, stderr)


@pytest.fixture
def mock_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([CLI, "mock-model", "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_runs_until_ctrl_c_and_prints_the_summary(mock_process: str) -> None:
    process = subprocess.Popen(
        [CLI, "traffic", "--gateway", mock_process, "--keys", str(DEMO_KEYS),
         "--config", str(EXAMPLE_CONFIG), "--rate", "40", "--seed", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("traffic to "), first
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traffic summary" in out
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in out.splitlines()
        if line.startswith("│")
    }
    assert set(rows) == {"free", "premium", "enterprise", "all"}
    for tier in ("free", "premium", "enterprise"):
        requests, ok = int(rows[tier][0]), int(rows[tier][1])
        assert requests > 0 and ok == requests  # the mock limits no one
    assert int(rows["all"][0].replace(",", "")) == sum(
        int(rows[t][0]) for t in ("free", "premium", "enterprise")
    )
