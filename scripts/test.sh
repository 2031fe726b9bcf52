#!/usr/bin/env bash
# The second command: install everything the tests need, then lint, type-check and run the
# whole suite. The suite starts its own throwaway redis-server; this script installs the
# Debian packages the tests use when the machine lacks them (as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: redis-server (the throwaway Redis), haproxy and promtool
# (from prometheus: they check deploy/'s load balancer and Prometheus configs).
packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || packages+=(haproxy)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "ticketgate: installing ${packages[*]} (needed by the tests)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

bash scripts/bootstrap.sh test

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
