#!/usr/bin/env bash
# The newcomer's first command: install into .venv and run the gateway on the embedded store
# (no Redis, no database), in development mode so the curl walk-through's dev token works.
# Any argument is passed to `ticketgate serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/ticketgate serve --dev "$@"
