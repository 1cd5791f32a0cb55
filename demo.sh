#!/usr/bin/env bash
# The live demo: mock model, gateway, traffic, Prometheus and the web dashboard. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/maas-metrics demo "$@"
