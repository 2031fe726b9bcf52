#!/usr/bin/env bash
# The second command: install everything the tests need, then lint, type-check and run the
# whole suite. The suite starts its own throwaway redis-server; this script installs the
# Debian packages the tests use when the machine lacks them (as root or with sudo) and starts
# a throwaway PostgreSQL cluster when none answers (scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: redis-server (the throwaway Redis), haproxy and promtool
# (from prometheus: they check deploy/'s load balancer and Prometheus configs), chromium and
# chromium-driver (the browser tests drive the system browser; none is downloaded),
# fonts-nanum (Korean glyphs for the Korean page) and npm (installs axe-core, below).
packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# PostgreSQL: the accounts, inventory and reservation tests run on it as well as on SQLite.
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 ||
  packages+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || packages+=(haproxy)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
fc-list 2>/dev/null | grep -qi nanum || packages+=(fonts-nanum)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "ticketgate: installing ${packages[*]} (needed by the tests)" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

# axe-core (injected into the pages by the browser tests) and TypeScript (checks the shipped
# JavaScript's JSDoc types), pinned in tests/browser/package-lock.json.
if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ] \
  || [ ! -x tests/browser/node_modules/.bin/tsc ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

bash scripts/bootstrap.sh test

# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
tg_pg_ensure

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
