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
exec .venv/bin/pytest "$@"
