"""What the per-connection deadlines cost: the gateway with its guarded protocol vs uvicorn's plain one.

Two gateway processes from the same config run side by side against one mock
model: `guarded` is `maas-metrics gateway` as shipped (header/body/send
deadlines, header size cap, connection cap, operator listener); `plain` is
the same app served by uvicorn's own httptools protocol (this script's
`--plain` mode). Debian's `wrk` (one thread, keep-alive) loads each in turn,
interleaved over rounds, at two concurrencies, on two paths: GET /v1/models
(HTTP layer only) and POST /v1/chat/completions (the whole metered path).
The figure per cell is the median over rounds; the ratio is guarded / plain.
Besides requests/s, each server's CPU time per request (user + system, from
/proc/PID/stat over the run) is reported: on a shared, loaded machine it
moves far less than throughput does.

Run:   .venv/bin/python benchmarks/bench_guarded_protocol.py [--rounds 5 --seconds 4]
Writes benchmarks/results/hardening.md (the lead merges it into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
import uvicorn
import yaml

import benchlib
from maas_metrics.config import hash_key, load_config
from services import Service
from wrkload import lua_script, require_wrk, run_wrk

KEY = "sk-bench-guarded-0123456789abcdef"
CHAT = orjson.dumps(
    {"model": "granite-8b", "messages": [{"role": "user", "content": "Hello there"}]}
).decode()
CONCURRENCY = (1, 16)
RESULT = benchlib.RESULTS / "hardening.md"


def write_config(workdir: Path, mock_port: int) -> Path:
    """One tier with limits far above the load, one key, the mock as every model's upstream."""
    data = {
        "tiers": [
            {
                "name": "bench",
                "level": 0,
                "groups": ["bench"],
                "price_per_hit": 0.001,
                "request_limit": {"max": 10**9, "window_seconds": 3600},
                "token_limit": {"max": 10**12, "window_seconds": 3600},
            }
        ],
        "models": [{"name": "granite-8b", "upstream": f"http://127.0.0.1:{mock_port}/v1"}],
        "api_keys": [{"user": "bench", "groups": ["bench"], "sha256": hash_key(KEY)}],
        "gateway": {"operator": {"port": 0}},
    }
    path = workdir / "maas.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def serve_plain(config_path: str, port: int) -> None:
    """The same gateway app on uvicorn's stock httptools protocol (no deadlines, no caps)."""
    from maas_metrics.gateway.app import create_app

    config = load_config(config_path)
    uvicorn.run(
        create_app(config),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=30,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--plain", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        serve_plain(args.plain[0], int(args.plain[1]))
        return
    require_wrk()
    run = benchlib.RunInfo.begin(
        f".venv/bin/python benchmarks/bench_guarded_protocol.py --rounds {args.rounds} "
        f"--seconds {args.seconds:g}"
    )
    cli = benchlib.maas_cli()
    with tempfile.TemporaryDirectory(prefix="bench-guarded-") as tmp:
        workdir = Path(tmp)
        mock = benchlib.mock_model(workdir, "/v1/models")
        config = write_config(workdir, mock.port)
        guarded_port, plain_port = benchlib.free_port(), benchlib.free_port()
        targets = {
            "guarded": Service(
                "guarded",
                [
                    cli,
                    "gateway",
                    "-c",
                    str(config),
                    "--port",
                    str(guarded_port),
                    "--operator-port",
                    "0",
                ],
                guarded_port,
                "/healthz",
                workdir / "guarded.log",
            ),
            "plain": Service(
                "plain",
                [sys.executable, __file__, "--plain", str(config), str(plain_port)],
                plain_port,
                "/healthz",
                workdir / "plain.log",
            ),
        }
        auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        scripts = {
            "GET /v1/models": ("/v1/models", lua_script("", auth, "GET")),
            "POST /v1/chat/completions": ("/v1/chat/completions", lua_script(CHAT, auth)),
        }
        results: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
        with benchlib.running(mock, *targets.values()):
            for round_ in range(args.rounds):
                order = benchlib.rotated(list(targets), round_)
                for label, (path, script) in scripts.items():
                    for connections in CONCURRENCY:
                        for name in order:
                            cpu = benchlib.service_cpu(targets[name])
                            result = run_wrk(
                                targets[name].url + path, script, connections, args.seconds
                            )
                            cpu = benchlib.service_cpu(targets[name]) - cpu
                            if result.non_2xx or result.socket_errors:
                                raise SystemExit(f"{name} {label}: errors in the run: {result}")
                            results.setdefault((label, name, connections), []).append(
                                (result.rps, result.p99_us / 1000, 1e6 * cpu / result.requests)
                            )
    run.end()
    rows = []
    for label in scripts:
        for connections in CONCURRENCY:
            guarded = results[(label, "guarded", connections)]
            plain = results[(label, "plain", connections)]
            g_rps = benchlib.median([r for r, _, _ in guarded])
            p_rps = benchlib.median([r for r, _, _ in plain])
            g_p99 = benchlib.median([p for _, p, _ in guarded])
            p_p99 = benchlib.median([p for _, p, _ in plain])
            g_cpu = benchlib.median([c for _, _, c in guarded])
            p_cpu = benchlib.median([c for _, _, c in plain])
            rows.append(
                [
                    label,
                    str(connections),
                    f"{p_rps:,.0f}",
                    f"{g_rps:,.0f}",
                    f"{g_rps / p_rps:.2f}",
                    f"{p_cpu:.0f}",
                    f"{g_cpu:.0f}",
                    f"{g_cpu / p_cpu:.2f}",
                    f"{p_p99:.2f}",
                    f"{g_p99:.2f}",
                ]
            )
    headers = [
        "path",
        "conns",
        "plain req/s",
        "guarded req/s",
        "req/s ratio",
        "plain CPU µs/req",
        "guarded CPU µs/req",
        "CPU ratio",
        "plain p99 ms",
        "guarded p99 ms",
    ]
    benchlib.print_table("guarded vs plain uvicorn protocol", headers, rows)
    RESULT.write_text(
        "## Hardening: cost of the per-connection deadlines (guarded protocol)\n\n"
        "The gateway as shipped (`guarded`: header/body/send deadlines, header size and "
        "connection caps) vs the same app on uvicorn's stock httptools protocol (`plain`), "
        "side by side against one mock model, `wrk` with keep-alive connections, interleaved; "
        f"median of {args.rounds} rounds of {args.seconds:g} s. Ratios = guarded / plain; "
        "CPU µs/req = the server process's user+system CPU time over the run / requests "
        "(less sensitive than req/s to other load on the machine).\n\n"
        + run.markdown()
        + "\n"
        + benchlib.markdown_table(headers, rows),
        encoding="utf-8",
    )
    benchlib.console.print(f"wrote {RESULT.relative_to(benchlib.ROOT)}")


if __name__ == "__main__":
    main()
