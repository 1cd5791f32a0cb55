"""A/B: the panel catalogue split by row vs the single-module catalogue it replaced.

Two source trees side by side: the base commit's (`git archive`, one
`catalogue.py`) and this tree's (one module a row). For every example config,
raw and recording-rule variants, each tree builds the catalogue and renders
the Grafana JSON in a child process with its own `PYTHONPATH`; the child
prints a SHA-256 of every JSON (the two trees must agree byte for byte, or
the script stops) and the best seconds of the build and of the render of --repeat runs
(the best, not the median: the code is deterministic, and what a loaded
machine adds is noise). Rounds are interleaved, the order rotated each round; the figure is the
median over rounds and the ratio this tree / base.

Run:
    mkdir -p /tmp/catalogue-base && git archive b6914a4 | tar -x -C /tmp/catalogue-base
    PYTHONPATH=src .venv/bin/python benchmarks/bench_catalogue_build.py --base /tmp/catalogue-base [--rounds 5 --repeat 20]
Writes benchmarks/results/structure3.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import benchlib

RESULTS = benchlib.RESULTS / "structure3.md"
BASE_COMMIT = "b6914a4"

#: Run in the child: build + render every (config, variant) `repeat` times; print JSON.
CHILD = """
import hashlib, json, sys, time
from datetime import date
from pathlib import Path
from maas_metrics.config import load_config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.dashboard.grafana import render_json

repeat, paths = int(sys.argv[1]), sys.argv[2:]
out = {}
for path in paths:
    config = load_config(path)
    for rules in (False, True):
        builds, renders = [], []
        for _ in range(repeat):
            began = time.perf_counter()
            catalogue = build_catalogue(config, recording_rules=rules, price_date=date(2026, 5, 1))
            built = time.perf_counter()
            text = render_json(catalogue)
            builds.append(built - began)
            renders.append(time.perf_counter() - built)
        key = f"{Path(path).name} {'rules' if rules else 'raw'}"
        out[key] = [hashlib.sha256(text.encode()).hexdigest(), min(builds), min(renders)]
print(json.dumps(out))
"""


def examples() -> list[Path]:
    """The example configs that are whole configs (demo-keys.yaml holds only demo secrets)."""
    return sorted(p for p in (benchlib.ROOT / "examples").glob("maas*.yaml"))


def measure(src: Path, repeat: int) -> dict[str, tuple[str, float, float]]:
    """(config, series) -> (SHA-256 of the JSON, best build seconds, best render seconds)."""
    argv = [sys.executable, "-c", CHILD, str(repeat), *map(str, examples())]
    done = subprocess.run(
        argv, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(src)}
    )
    return {k: (v[0], v[1], v[2]) for k, v in json.loads(done.stdout).items()}


def main() -> None:
    parser = benchlib.base_tree_parser(__doc__, rounds=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    command = benchlib.base_tree_command(
        BASE_COMMIT,
        "/tmp/catalogue-base",
        "bench_catalogue_build.py",
        f"--rounds {args.rounds} --repeat {args.repeat}",
    )
    run = benchlib.RunInfo.begin(command)
    trees = {"base": args.base / "src", "this tree": benchlib.ROOT / "src"}
    seconds: dict[tuple[str, str, str], list[float]] = {}  # (key, part, tree) -> per round
    for round_no in range(args.rounds):
        hashes: dict[str, dict[str, str]] = {}
        for name in benchlib.rotated(list(trees), round_no):
            result = measure(trees[name], args.repeat)
            hashes[name] = {key: digest for key, (digest, _, _) in result.items()}
            for key, (_, build, render) in result.items():
                seconds.setdefault((key, "build", name), []).append(build)
                seconds.setdefault((key, "render", name), []).append(render)
        if hashes["base"] != hashes["this tree"]:
            raise SystemExit(f"error: the Grafana JSON differs: {hashes}")
    run.end()
    headers = ["config, series", "part", "base ms", "this tree ms", "ratio", "JSON"]
    rows = []
    for key in sorted({key for key, _, _ in seconds}):
        for part in ("build", "render"):
            old = statistics.median(seconds[(key, part, "base")])
            new = statistics.median(seconds[(key, part, "this tree")])
            rows.append(
                [key, part, f"{old * 1e3:.3f}", f"{new * 1e3:.3f}", f"{new / old:.3f}", "identical"]
            )
    benchlib.print_table("build_catalogue, render_json (median of rounds)", headers, rows)
    RESULTS.write_text(
        "# structure3: the catalogue split by row\n\n"
        "`build_catalogue` (build) and `render_json` (render, the Grafana SDK; unchanged code) "
        "per example config, base commit "
        f"{BASE_COMMIT} (one `catalogue.py`) vs this tree (one module a row), each in its own "
        f"child process, interleaved; median of {args.rounds} rounds of the best of "
        f"{args.repeat} builds (deterministic code: the best is the least disturbed by load). `JSON`: the SHA-256 of every Grafana JSON is the same for "
        "both trees in every round (the script stops otherwise).\n\n"
        + benchlib.markdown_table(headers, rows)
        + "\n"
        + run.markdown(),
        encoding="utf-8",
    )
    benchlib.console.print(f"wrote {RESULTS.relative_to(benchlib.ROOT)}")


if __name__ == "__main__":
    main()
