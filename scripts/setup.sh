#!/usr/bin/env bash
# Shared set-up for ./demo.sh and ./test.sh: system packages, then a virtualenv in .venv.
# Usage: scripts/setup.sh [--test]   (--test adds the browser and the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# System packages: the real Prometheus (with promtool), Redis and, for tests, Chromium.
needed=()
command -v prometheus >/dev/null || needed+=(prometheus)
command -v promtool >/dev/null || needed+=(prometheus)
if [ "$want_test" = 1 ]; then
  command -v redis-server >/dev/null || needed+=(redis-server)
  # PostgreSQL for the ledger tests (they start it themselves as the `postgres` user, on a free port).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || needed+=(postgresql)
  [ -x /usr/bin/chromium ] || needed+=(chromium)
  # Emoji panel titles render as empty boxes in test screenshots without a colour emoji font.
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || needed+=(fonts-noto-color-emoji)
fi
if [ "${#needed[@]}" -gt 0 ]; then
  mapfile -t needed < <(printf '%s\n' "${needed[@]}" | sort -u)
  if command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "==> installing ${needed[*]} with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${needed[@]}" >/dev/null
  else
    echo "error: please install: ${needed[*]} (Prometheus 2.x with promtool; Redis; PostgreSQL; Chromium), then run this again" >&2
    exit 1
  fi
fi

# Python: a virtualenv, re-installed only when pyproject.toml changed.
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="[demo]"  # the demo runs every part; `pip install '.[gateway]'` alone brings no Dash
[ "$want_test" = 1 ] && extras="[test]"
stamp=".venv/.installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing maas-metrics${extras} into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
