# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the tests (sourced, not run): initdb in a temporary
# directory as the unprivileged `postgres` user (or as the caller when not root), trust
# authentication, listening on 127.0.0.1 on a free port only. The system's service is
# never used.
#
#   basalt_pg_start   starts it; exports BASALT_TEST_POSTGRES (a URL to its `postgres` database)
#   basalt_pg_stop    stops it and removes its directory (a no-op when none runs; call it
#                     from an EXIT trap)

BASALT_PG_BIN=${BASALT_PG_BIN:-/usr/lib/postgresql/15/bin}
BASALT_PG_DIR=

# Runs a command as the cluster's owner.
_basalt_pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_basalt_pg_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

basalt_pg_start() {
  [ -x "$BASALT_PG_BIN/initdb" ] ||
    { echo "postgres.sh: $BASALT_PG_BIN/initdb not found: run scripts/install-deps.sh" >&2 && return 1; }
  BASALT_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/basalt-pg.XXXXXX")
  [ "$(id -u)" -ne 0 ] || chown postgres: "$BASALT_PG_DIR"
  local port
  port=$(_basalt_pg_free_port)
  # a test cluster: no fsync, the data is thrown away
  _basalt_pg_as "$BASALT_PG_BIN/initdb" -D "$BASALT_PG_DIR/data" -A trust -U postgres \
    -E UTF8 --no-locale --no-sync >"$BASALT_PG_DIR/initdb.log" 2>&1 ||
    { cat "$BASALT_PG_DIR/initdb.log" >&2 && return 1; }
  _basalt_pg_as "$BASALT_PG_BIN/pg_ctl" -D "$BASALT_PG_DIR/data" -l "$BASALT_PG_DIR/server.log" \
    -o "-k $BASALT_PG_DIR -c listen_addresses=127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    -w -t 60 start >/dev/null ||
    { cat "$BASALT_PG_DIR/server.log" >&2 && return 1; }
  export BASALT_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
  echo "postgres.sh: test cluster in $BASALT_PG_DIR, BASALT_TEST_POSTGRES=$BASALT_TEST_POSTGRES"
}

basalt_pg_stop() {
  [ -n "$BASALT_PG_DIR" ] || return 0
  if [ -f "$BASALT_PG_DIR/data/postmaster.pid" ]; then
    if ! _basalt_pg_as "$BASALT_PG_BIN/pg_ctl" -D "$BASALT_PG_DIR/data" -m fast -w stop >/dev/null; then
      echo "postgres.sh: WARNING: the test cluster in $BASALT_PG_DIR did not stop (left in place)" >&2
      return 1
    fi
  fi
  rm -rf "$BASALT_PG_DIR"
  BASALT_PG_DIR=
  unset BASALT_TEST_POSTGRES
  echo "postgres.sh: test cluster stopped"
}
