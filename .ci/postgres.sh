#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster on 127.0.0.1 for the test suite.
#   .ci/postgres.sh start   -> prints the AUTHSITE_TEST_DATABASE_URL to use
#   .ci/postgres.sh stop    -> stops it (by its postmaster PID) and removes its files
# The cluster runs as the unprivileged `postgres` user that Debian's package creates.
set -euo pipefail

PORT="${AUTHSITE_PG_PORT:-54329}"
DIR="${AUTHSITE_PG_DIR:-/tmp/authsite-pg-$PORT}"

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    if [[ -z "$dir" ]]; then
        echo "PostgreSQL server binaries not found; install the 'postgresql' package" >&2
        exit 1
    fi
    echo "$dir"
}

as_postgres() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin
    bin=$(pg_bin)
    stop_quietly
    mkdir -p "$DIR"
    [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$DIR"
    as_postgres "$bin/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    as_postgres "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >/dev/null \
        || { cat "$DIR/server.log" >&2; exit 1; }
    echo "postgresql+asyncpg://postgres@127.0.0.1:$PORT/postgres"
}

stop_quietly() {
    if [[ -f "$DIR/data/postmaster.pid" ]]; then
        local pid
        pid=$(head -n1 "$DIR/data/postmaster.pid")
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop_quietly ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
