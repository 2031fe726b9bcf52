#!/usr/bin/env bash
# Sourced by scripts/test.sh after the venv exists: make TEST_DATABASE_URL point at a
# PostgreSQL the tests can use. When TEST_DATABASE_URL is set, it is used as given. Otherwise
# the default (postgresql://postgres@127.0.0.1:5432/test) is tried, and when nothing answers
# there a throwaway cluster is started, as the suite does for redis-server: trust auth, bound
# to 127.0.0.1 on a free port, in a temporary directory, no fsync; stopped and removed when
# test.sh exits. PostgreSQL's binaries come from the Debian `postgresql` package (installed
# by test.sh): pg_ctl on PATH, else the newest /usr/lib/postgresql/*/bin.

TG_DEFAULT_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test"

tg_pg_bindir() {
  local ctl
  ctl="$(command -v pg_ctl 2>/dev/null || true)"
  if [ -z "$ctl" ]; then
    ctl="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)"
  fi
  [ -n "$ctl" ] && dirname "$(readlink -f "$ctl")"
}

tg_pg_answers() {  # $1: URL; true when a connection and SELECT 1 succeed within 3 s
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import asyncio, sys
import asyncpg

async def probe(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()

asyncio.run(probe(sys.argv[1]))
PY
}

tg_pg_stop() {
  if [ -n "${TG_PG_DIR:-}" ] && [ -d "$TG_PG_DIR/data" ]; then
    "${TG_PG_RUN[@]}" "$TG_PG_BIN/pg_ctl" -D "$TG_PG_DIR/data" -m immediate -w stop \
      >/dev/null 2>&1 || true
  fi
  [ -n "${TG_PG_DIR:-}" ] && rm -rf "$TG_PG_DIR"
}

tg_pg_start() {
  TG_PG_BIN="$(tg_pg_bindir)"
  if [ -z "$TG_PG_BIN" ]; then
    echo "ticketgate: PostgreSQL binaries not found (apt-get install postgresql)" >&2
    return 1
  fi
  TG_PG_DIR="$(mktemp -d /tmp/tg-postgres-XXXXXX)"
  TG_PG_RUN=()
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: the cluster belongs to the postgres system user.
    id postgres >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres "$TG_PG_DIR"
    TG_PG_RUN=(runuser -u postgres --)
  fi
  trap tg_pg_stop EXIT
  local port
  port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "${TG_PG_RUN[@]}" "$TG_PG_BIN/initdb" -D "$TG_PG_DIR/data" -U postgres -A trust --no-sync \
    -E UTF8 >"$TG_PG_DIR/initdb.log" 2>&1 ||
    { cat "$TG_PG_DIR/initdb.log" >&2; return 1; }
  "${TG_PG_RUN[@]}" "$TG_PG_BIN/pg_ctl" -D "$TG_PG_DIR/data" -l "$TG_PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $TG_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$TG_PG_DIR/server.log" >&2; return 1; }
  "${TG_PG_RUN[@]}" "$TG_PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres test
  export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/test"
  echo "ticketgate: started a throwaway PostgreSQL at $TEST_DATABASE_URL" >&2
}

tg_pg_ensure() {
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    return 0
  fi
  if tg_pg_answers "$TG_DEFAULT_DATABASE_URL"; then
    export TEST_DATABASE_URL="$TG_DEFAULT_DATABASE_URL"
    return 0
  fi
  tg_pg_start
}
