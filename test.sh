#!/usr/bin/env bash
# The whole check: lint, types, then the test suite against real Prometheus, Redis and Chromium.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
echo "==> ruff"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
# Three workers: most tests wait on real servers (Prometheus scrapes, streams), not on the CPU.
# Each test file stays on one worker, in order (module fixtures are built once).
exec .venv/bin/pytest -n 3 --dist loadfile "$@"
