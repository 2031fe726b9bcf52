#!/usr/bin/env bash
# The second command: install everything the tests need, then lint, type-check and run the
# whole suite. The suite starts its own throwaway redis-server; this script installs the
# binary when the machine lacks it (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "ticketgate: installing redis-server (needed by the tests)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

bash scripts/bootstrap.sh test

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
