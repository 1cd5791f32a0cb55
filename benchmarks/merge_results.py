"""Copy result files that other benchmarks write under benchmarks/results/ into BENCHMARKS.md.

`bench_dashboard_queries.py` writes `results/dashboard_queries.md` (its own
file, with its reproduce command); this puts it in its BENCHMARKS.md section,
headings demoted one level, so BENCHMARKS.md stays the one place to read.
Run after that benchmark: .venv/bin/python benchmarks/merge_results.py
"""

from __future__ import annotations

import re

import benchlib

# BENCHMARKS.md section -> (the script that writes the file, the file)
MERGED = {
    "dashboard-queries": ("bench_dashboard_queries.py", benchlib.RESULTS / "dashboard_queries.md"),
}


def demote(markdown: str) -> str:
    """`# T` -> `## T` and so on, outside fenced code blocks."""
    out: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    for key, (script, path) in MERGED.items():
        if not path.exists():
            benchlib.console.print(f"[yellow]{path.relative_to(benchlib.ROOT)} not found; skipped")
            continue
        text = demote(path.read_text(encoding="utf-8"))
        note = (
            f"\n*Written by `benchmarks/{script}` to "
            f"`{path.relative_to(benchlib.ROOT)}` and merged here by "
            "`.venv/bin/python benchmarks/merge_results.py`.*\n"
        )
        benchlib.update_section(key, text + note)


if __name__ == "__main__":
    main()
