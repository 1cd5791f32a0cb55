"""A/B: gateway req/s with the seed's labels vs today's schema with every attribution label.

Issue 11 allows the extra labels at most 10 % of the gateway's req/s at c=16.
Two gateways run side by side on ONE mock model (no added latency, so only
the gateway's own cost shows), both policies on, limits far above the load:

  seed schema       tier, user, model (examples/maas.yaml's shape)
  today, all labels subscription, user, model + organization_id, cost_center,
                    group, tenant_name (the most labels a series can carry)

measured INTERLEAVED with Debian's `wrk` (one thread, keep-alive, POST
/v1/chat/completions), every round visiting both at c=1 and c=16; the figure
per cell is the median over rounds, and the ratio today/seed per concurrency.

Run: .venv/bin/python benchmarks/bench_schema_labels.py [--rounds 6 --seconds 4]
Writes benchmarks/results/schema.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

import bench_gateway_overhead as overhead
import benchlib
from services import Service

RESULTS = benchlib.ROOT / "benchmarks" / "results" / "schema.md"
ATTRIBUTES = {
    "organization_id": "acme",
    "cost_center": "cc-100",
    "group": "bench",
    "tenant_name": "tenant-a",
}


def todays_config(upstream: str) -> dict[str, Any]:
    """The overhead benchmark's config with every label today's schema can add."""
    data = overhead.gateway_config(upstream, "memory")
    data["subscriptions"] = data.pop("tiers")
    data["schema"] = {
        "billing_dimension": "subscription",
        "attribution": list(ATTRIBUTES),
        "capture_user": True,
        "calls_carry_model": True,
        "groups": {"bench": {k: v for k, v in ATTRIBUTES.items() if k != "group"}},
    }
    return data


def service(name: str, workdir: Path, config: dict[str, Any]) -> Service:
    """A gateway on `config`, API and operator listener on free ports (8081 may be taken)."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = benchlib.free_port()
    argv = [benchlib.maas_cli(), "gateway", "--config", str(path), "--port", str(port)]
    argv += ["--operator-port", str(benchlib.free_port())]
    return Service(name, argv, port, "/healthz", workdir / f"{name}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    command = (
        f".venv/bin/python benchmarks/bench_schema_labels.py --rounds {args.rounds} "
        f"--seconds {args.seconds:g}"
    )
    info = benchlib.RunInfo.begin(command)
    with tempfile.TemporaryDirectory(prefix="bench-schema-") as tmp:
        workdir = Path(tmp)
        mock = benchlib.mock_model(workdir)
        upstream = f"{mock.url}/v1"
        gateways = {
            "seed schema": service("seed", workdir, overhead.gateway_config(upstream, "memory")),
            "today, all labels": service("today", workdir, todays_config(upstream)),
        }
        with benchlib.running(mock, *gateways.values()):
            script = overhead.script(overhead.BENCH_KEY)
            results = benchlib.wrk_rounds(gateways, script, args.rounds, args.seconds)
    info.end()
    headers = ["gateway", "conc.", "req/s (median)", "p50 ms (median)", "today / seed req/s"]
    rows = []
    for concurrency in (1, 16):
        rates = {
            name: statistics.median(r.rps for r in results[(name, concurrency)])
            for name in gateways
        }
        ratio = rates["today, all labels"] / rates["seed schema"]
        for name in gateways:
            runs = results[(name, concurrency)]
            rows.append(
                [
                    name,
                    str(concurrency),
                    benchlib.fmt_rate(rates[name]),
                    f"{statistics.median(r.p50_us for r in runs) / 1000:.2f}",
                    f"{ratio:.3f}" if name != "seed schema" else "",
                ]
            )
    benchlib.print_table("Schema labels A/B", headers, rows)
    RESULTS.write_text(
        "## Gateway: today's schema with every attribution label vs the seed's labels (A/B)\n\n"
        "Issue 11 allows the extra labels at most 10 % of the gateway's req/s at c=16. Two "
        "gateways side by side on one mock model (no latency), both policies on, limits far above "
        f"the load; wrk, {args.rounds} interleaved rounds x {args.seconds:g} s per concurrency. "
        "`today, all labels`: subscription, user, model, organization_id, cost_center, group, "
        "tenant_name on every counter (the label values are built once per key; a request "
        "only indexes a longer tuple).\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + info.markdown()
    )
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
