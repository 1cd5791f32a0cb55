"""A/B: the inference fast path (applied, `gateway/fastpath.py`) vs. every request through Starlette.

The profile (profile_gateway.py) put about a tenth of the gateway's samples in
Starlette: `ServerErrorMiddleware`, `ExceptionMiddleware` and the router
wrap every request before `Gateway._infer` runs. The gateway now serves
`POST /v1/chat/completions` and `POST /v1/completions` straight from the
app's `__call__` (same error handling). The reference is a copy of the
package in a temporary directory whose `FastPathStarlette` sends every
request through Starlette (the path before); both gateways run side by side
on one mock model, measured interleaved with wrk.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_fastpath.py [--rounds 8 --seconds 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import bench_gateway_overhead as overhead
import benchlib

ANCHOR = """            handler = self._hot.get(scope["path"])"""
STARLETTE_PATH = """            handler = None  # A/B: every request through Starlette's stack"""


def patched_copy(workdir: Path) -> Path:
    """A copy of the package whose app sends every request through Starlette (the path before)."""
    source = benchlib.ROOT / "src" / "maas_metrics"
    target = workdir / "maas_metrics"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    module = target / "gateway" / "fastpath.py"
    text = module.read_text()
    if ANCHOR not in text:
        raise SystemExit("error: gateway/fastpath.py changed; update ANCHOR")
    module.write_text(text.replace(ANCHOR, STARLETTE_PATH, 1))
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", default=str(benchlib.RESULTS / "scale-rest.md"))
    args = parser.parse_args()
    info = benchlib.RunInfo.begin(
        "PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_fastpath.py "
        f"--rounds {args.rounds} --seconds {args.seconds:g}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fastpath-") as tmp:
        workdir = Path(tmp)
        copy = patched_copy(workdir / "patched")
        mock = benchlib.mock_model(workdir)
        upstream = f"{mock.url}/v1"
        gateways = {
            "Starlette path": overhead.gateway_service("starlette", workdir, upstream, "memory"),
            "fast path": overhead.gateway_service("fast-path", workdir, upstream, "memory"),
        }
        gateways["Starlette path"].env = {"PYTHONPATH": str(copy)}
        with benchlib.running(mock, *gateways.values()):
            script = overhead.script(overhead.BENCH_KEY)
            results = benchlib.wrk_rounds(gateways, script, args.rounds, args.seconds)
    info.end()
    headers = ["gateway", "conc.", "req/s (median)", "p50 ms (median)", "runs won on req/s"]
    rows = []
    for concurrency in (1, 16):
        a, b = (results[(name, concurrency)] for name in gateways)
        wins = {"Starlette path": sum(x.rps > y.rps for x, y in zip(a, b, strict=True))}
        wins["fast path"] = args.rounds - wins["Starlette path"]
        for name in gateways:
            runs = results[(name, concurrency)]
            rows.append(
                [
                    name,
                    str(concurrency),
                    benchlib.fmt_rate(statistics.median(r.rps for r in runs)),
                    f"{statistics.median(r.p50_us for r in runs) / 1000:.2f}",
                    f"{wins[name]} of {args.rounds}",
                ]
            )
    benchlib.print_table("Starlette fast path A/B", headers, rows)
    body = (
        "## Gateway: inference routes past Starlette's middleware (A/B, applied)\n\n"
        "`gateway/fastpath.py` serves `POST /v1/chat/completions` and `POST /v1/completions` "
        "straight from the app's `__call__` (a `GatewayError` through the app's handler, anything "
        "else through its 500 handler, also before the response starts); every other request "
        "goes through Starlette. Reference: a copy of the package with every request through "
        "Starlette (the path before). Both gateways side by side "
        f"on one mock model, wrk, {args.rounds} interleaved rounds x {args.seconds:g} s per "
        "concurrency.\n\n" + benchlib.markdown_table(headers, rows) + "\n" + info.markdown()
    )
    benchlib.update_section("fastpath", body, Path(args.out))


if __name__ == "__main__":
    main()
