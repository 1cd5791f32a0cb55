"""What exact counting costs: gateway req/s before/after, and `/metrics` with series born at zero.

1. Gateway throughput at concurrency 16, the base commit's gateway and this
   tree's side by side against ONE mock model, measured interleaved (every
   round visits both in rotated order; the figure is the median over rounds):
   JSON answers and SSE streams (a client that does not ask for usage, so the
   new gateway strips `"usage":null` and the usage chunk on every stream).
2. `/metrics` at 10k users x 5 models: every configured user x model x
   namespace series pre-created at 0 (the alternative design) against the
   born-at-zero design, which exposes only the series that saw traffic; and
   the cost of the first scrape that meets 50k brand-new series.

Run (the base tree is the commit before this branch, unpacked once):
    mkdir -p /tmp/gwx-base && git archive 9571c43 | tar -x -C /tmp/gwx-base
    PYTHONPATH=src .venv/bin/python benchmarks/bench_gw_exact.py --base /tmp/gwx-base [--rounds 5 --seconds 4]
Writes benchmarks/results/gw-exact.md.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import yaml

import benchlib
from maas_metrics.config import hash_key
from maas_metrics.telemetry import GatewayMetrics, render
from services import Service

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gw-exact.md"
KEY = "sk-bench-gw-exact-0123456789"
MODELS = ("granite-8b", "llama-3-8b", "mistral-7b", "qwen-7b", "phi-3")
TIERS = ("free", "premium", "enterprise")
REQ_NS, TOK_NS = "maas/requests", "maas/tokens"
JSON_BODY = orjson.dumps(
    {"model": "granite-8b", "messages": [{"role": "user", "content": "Say hello in five words."}]}
)
STREAM_BODY = orjson.dumps(
    {
        "model": "granite-8b",
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "stream": True,
    }
)


def write_config(directory: Path, mock_port: int) -> Path:
    """A config both versions accept: one tier whose limits never bite."""
    config = {
        "tiers": [
            {
                "name": "bench",
                "level": 0,
                "groups": ["bench"],
                "price_per_hit": 0.01,
                "request_limit": {"max": 10**12, "window_seconds": 3600},
                "token_limit": {"max": 10**12, "window_seconds": 3600},
            }
        ],
        "models": [{"name": "granite-8b", "upstream": f"http://127.0.0.1:{mock_port}/v1"}],
        "api_keys": [{"user": "bench", "groups": ["bench"], "sha256": hash_key(KEY)}],
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gateway(name: str, src: Path, config: Path, log: Path) -> Service:
    """`maas-metrics gateway` from the source tree `src`, API and operator listener on free ports.

    Trees from before the operator listener take no `--operator-port`; later ones get a
    free one, as its default (8081) may be taken on a shared machine.
    """
    port = benchlib.free_port()
    argv = [sys.executable, "-m", "maas_metrics", "gateway", "--config", str(config)]
    argv += ["--port", str(port)]
    commands = src / "maas_metrics" / "cli" / "gateway_cmds.py"
    if commands.exists() and "--operator-port" in commands.read_text(encoding="utf-8"):
        argv += ["--operator-port", str(benchlib.free_port())]
    return Service(name, argv, port, "/healthz", log, env={"PYTHONPATH": str(src)})


THROUGHPUT_HEADERS = [
    "answers",
    "base req/s",
    "this branch req/s",
    "ratio",
    "base CPU µs/req",
    "this branch CPU µs/req",
    "CPU ratio",
]


def throughput(base: Path, rounds: int, seconds: float) -> list[list[str]]:
    """Base vs this tree at concurrency 16, JSON and streams (benchlib.loadgen_rounds): rows."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mock = benchlib.mock_model(work)
        config = write_config(work, mock.port)
        targets = {
            "base": gateway("base", base / "src", config, work / "base.log"),
            "this branch": gateway("new", ROOT / "src", config, work / "new.log"),
        }
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        bodies = {"JSON": JSON_BODY, "stream": STREAM_BODY}
        with benchlib.running(mock, *targets.values()):
            runs = benchlib.loadgen_rounds(targets, bodies, headers, rounds, seconds)
    rows = []
    for kind in bodies:
        old, new = runs[(kind, "base")], runs[(kind, "this branch")]
        old_rate, new_rate = statistics.median(old.rates), statistics.median(new.rates)
        old_cpu = statistics.median(old.cpu_per_request)
        new_cpu = statistics.median(new.cpu_per_request)
        rows.append(
            [
                kind,
                f"{old_rate:,.0f}",
                f"{new_rate:,.0f}",
                f"{new_rate / old_rate:.3f}",
                f"{old_cpu * 1e6:.0f}",
                f"{new_cpu * 1e6:.0f}",
                f"{new_cpu / old_cpu:.3f}",
            ]
        )
    return rows


def timed(action: Callable[[], bytes], repeat: int = 5) -> tuple[float, int]:
    """Median seconds of `action` and the size of what it returned."""
    times, size = [], 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        size = len(action())
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def scrape(metrics: GatewayMetrics) -> bytes:
    return render(metrics.families())


def all_pairs(users: int) -> list[tuple[str, str, str]]:
    return [
        (f"user-{u:06d}", TIERS[u % len(TIERS)], model) for u in range(users) for model in MODELS
    ]


def precreated(users: int) -> GatewayMetrics:
    """Every configured user x model x namespace at 0, shown at once (no hold to go through)."""
    metrics = GatewayMetrics()
    for user, tier, model in all_pairs(users):
        for namespace in (REQ_NS, TOK_NS):
            key = (namespace, user, tier, model)
            metrics.authorized_calls.set(key, 0)
            metrics.authorized_hits.set(key, 0)
            metrics.limited_calls.set((*key, f"{tier}-{namespace[5:]}"), 0)
        key = (TOK_NS, user, tier, model)
        for family in (
            metrics.prompt_tokens,
            metrics.completion_tokens,
            metrics.answers_without_usage,
        ):
            family.set(key, 0)
    return metrics


def traffic(metrics: GatewayMetrics, pairs: list[tuple[str, str, str]]) -> None:
    for i, (user, tier, model) in enumerate(pairs):
        metrics.authorized(REQ_NS, (user, tier), model, 1)
        metrics.authorized(TOK_NS, (user, tier), model, 0)
        metrics.reported(TOK_NS, (user, tier), model, 30, 50, 80)
        if i % 10 == 0:
            metrics.limited(REQ_NS, (user, tier), model, f"{tier}-requests")


def exposition(users: int, active_share: float) -> list[list[str]]:
    pairs = all_pairs(users)
    active = pairs[: int(len(pairs) * active_share)]
    rows = []

    pre = precreated(users)
    traffic(pre, active)
    seconds, size = timed(partial(scrape, pre))
    count = sum(len(f) for f in pre.families())
    rows.append(
        [
            "pre-created, every user x model x namespace",
            f"{count:,}",
            f"{size / 1e6:.1f} MB",
            benchlib.fmt_ms(seconds),
        ]
    )

    def born(share_pairs: list[tuple[str, str, str]]) -> GatewayMetrics:
        metrics = GatewayMetrics()
        traffic(metrics, share_pairs)
        render(metrics.families())  # the first scrape reads them at 0
        render(metrics.families())  # the next shows the counts: steady state
        return metrics

    for label, share_pairs in (
        (f"born at zero, {active_share:.0%} of pairs active", active),
        ("born at zero, every pair active", pairs),
    ):
        metrics = born(share_pairs)
        seconds, size = timed(partial(scrape, metrics))
        count = sum(len(f) for f in metrics.families())
        rows.append([label, f"{count:,}", f"{size / 1e6:.1f} MB", benchlib.fmt_ms(seconds)])

    first: list[float] = []
    for _ in range(3):
        metrics = GatewayMetrics()
        traffic(metrics, pairs)
        gc.collect()
        start = time.perf_counter()
        text = render(metrics.families())
        first.append(time.perf_counter() - start)
    count = sum(len(f) for f in metrics.families())
    rows.append(
        [
            "first scrape meeting every series new (all at 0)",
            f"{count:,}",
            f"{len(text) / 1e6:.1f} MB",
            benchlib.fmt_ms(statistics.median(first)),
        ]
    )
    return rows


def main() -> None:
    parser = benchlib.base_tree_parser(__doc__, rounds=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--active", type=float, default=0.2, help="share of user x model pairs with traffic"
    )
    args = parser.parse_args()
    command = benchlib.base_tree_command(
        "9571c43",
        "/tmp/gwx-base",
        "bench_gw_exact.py",
        f"--rounds {args.rounds} --seconds {args.seconds:g}",
    )
    run = benchlib.RunInfo.begin(command)
    rate_rows = throughput(args.base, args.rounds, args.seconds)
    headers = THROUGHPUT_HEADERS
    benchlib.print_table("Gateway at concurrency 16 (median of rounds)", headers, rate_rows)
    render_rows = exposition(args.users, args.active)
    render_headers = ["/metrics at 10k users x 5 models", "series", "size", "render"]
    benchlib.print_table("/metrics", render_headers, render_rows)
    run.end()
    RESULTS.write_text(
        "# gw-exact: what exact counting costs\n\n"
        + run.markdown()
        + f"\nGateway requests/s at concurrency 16, base commit vs this branch, interleaved, median of {args.rounds} rounds of {args.seconds:g} s (in-memory counters, mock model without latency). The gateway's own CPU time per request (from /proc, the gateway process only) is the steadier figure on a shared machine:\n\n"
        + benchlib.markdown_table(headers, rate_rows)
        + "\n`/metrics` render (median of 5) at 10,000 users x 5 models:\n\n"
        + benchlib.markdown_table(render_headers, render_rows),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
