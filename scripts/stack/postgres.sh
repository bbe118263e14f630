#!/usr/bin/env bash
# PostgreSQL (Debian's server binaries, our own cluster in .stack/pg) on 127.0.0.1:15432.
#
#   postgres.sh up       initdb (first time), start, create role/db tiktok, wait for a real login
#   postgres.sh down     stop it (fine when it is not running)
#   postgres.sh status   exit 0 when running and accepting logins
#
# As root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_DIR="$STACK_DIR/pg"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
# Unix sockets have a ~107 byte path limit: use .stack/pg/run unless the checkout path is too long.
PG_SOCK_DIR="$PG_DIR/run"
if ((${#PG_SOCK_DIR} > 80)); then
    PG_SOCK_DIR="/tmp/tiktok-pg-$(printf '%s' "$ROOT_DIR" | sha1sum | cut -c1-12)"
fi
DATABASE_URL="postgresql://$PG_USER:$PG_PASSWORD@$STACK_HOST:$PG_PORT/$PG_DB"

pg_bindir() {
    local dir
    if [[ -n "${PG_BINDIR:-}" ]]; then
        echo "$PG_BINDIR"
        return 0
    fi
    # The newest server installed by Debian's postgresql packages.
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        die_with_log "postgres: no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"
    fi
    echo "$dir"
}

if [[ $EUID -eq 0 ]]; then
    PG_OS_USER=postgres
    id "$PG_OS_USER" >/dev/null 2>&1 || die_with_log "postgres: OS user 'postgres' is missing (apt-get install postgresql creates it)"
    as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }
else
    PG_OS_USER="$(id -un)"
    as_pg() { "$@"; }
fi

# The server user must be able to reach .stack/pg: grant search (x) on any ancestor that lacks it.
ensure_traversable() {
    [[ $EUID -eq 0 ]] || return 0
    mkdir -p "$PG_DIR"
    local dir="$PG_DIR" ancestors=()
    while [[ "$dir" != "/" ]]; do
        dir="$(dirname "$dir")"
        ancestors=("$dir" "${ancestors[@]}")
    done
    # From / downwards, so only the directories that really block are changed.
    for dir in "${ancestors[@]}"; do
        if ! as_pg test -x "$dir"; then
            # Search permission only (no listing): an ACL for just that user when possible.
            if command -v setfacl >/dev/null && setfacl -m "u:$PG_OS_USER:x" "$dir" 2>/dev/null; then
                log "postgres: granted '$PG_OS_USER' search (x) on $dir by ACL so it can reach its data directory"
            else
                log "postgres: granting o+x on $dir so the '$PG_OS_USER' user can reach its data directory"
                chmod o+x "$dir"
            fi
        fi
    done
}

pg_running() {
    [[ -f "$PG_DATA/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

ready() {
    "$BIN/pg_isready" -q -h "$STACK_HOST" -p "$PG_PORT" -t 2 &&
        "$(stack_python)" "$STACK_SCRIPTS_DIR/probe.py" postgres "$DATABASE_URL" 2>/dev/null
}

init_cluster() {
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        return 0
    fi
    log "postgres: initdb in $PG_DATA"
    mkdir -p "$PG_DIR"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    chown "$PG_OS_USER" "$PG_DIR" "$PG_DATA"
    chmod 700 "$PG_DATA"
    # Superuser `postgres` reachable only through the private socket (trust, socket dir is 0700);
    # every TCP login uses a SCRAM password.
    if ! as_pg "$BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1; then
        die_with_log "postgres: initdb failed" "$PG_DIR/initdb.log"
    fi
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- scripts/stack/postgres.sh: a private test/dev cluster ----
listen_addresses = '$STACK_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 300
shared_buffers = 128MB
# Throwaway data: trade durability for speed (tests create and drop a database each).
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

bootstrap_role() {
    # Idempotent: create or fix the application role and database.
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" -p "$PG_PORT" -U postgres -d postgres \
        >>"$PG_DIR/bootstrap.log" 2>&1 <<EOF || die_with_log "postgres: could not create role/database $PG_USER" "$PG_DIR/bootstrap.log"
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', '$PG_USER', '$PG_PASSWORD')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE "$PG_USER" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
}

up() {
    BIN="$(pg_bindir)"
    ensure_traversable
    if pg_running; then
        wait_until "$PG_START_TIMEOUT" ready || die_with_log "postgres: running but not accepting logins on $STACK_HOST:$PG_PORT" "$PG_LOG"
        log "postgres: already running on $STACK_HOST:$PG_PORT"
        return 0
    fi
    require_port_free postgres "$PG_PORT"
    init_cluster
    mkdir -p "$PG_SOCK_DIR"
    chown "$PG_OS_USER" "$PG_SOCK_DIR"
    chmod 700 "$PG_SOCK_DIR"
    touch "$PG_LOG"
    chown "$PG_OS_USER" "$PG_LOG"
    log "postgres: starting $("$BIN/postgres" --version | awk '{print $3}') on $STACK_HOST:$PG_PORT"
    # pg_ctl detaches the server (setsid) so it outlives the shell that started it.
    if ! as_pg "$BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start </dev/null >>"$PG_DIR/pg_ctl.log" 2>&1; then
        cat "$PG_DIR/pg_ctl.log" >>"$PG_LOG" 2>/dev/null || true
        die_with_log "postgres: the server did not start on $STACK_HOST:$PG_PORT" "$PG_LOG"
    fi
    bootstrap_role
    wait_until "$PG_START_TIMEOUT" ready || die_with_log "postgres: no login as $PG_USER on $STACK_HOST:$PG_PORT within ${PG_START_TIMEOUT}s" "$PG_LOG"
    log "postgres: ready on $STACK_HOST:$PG_PORT"
}

down() {
    BIN="$(pg_bindir)"
    if ! pg_running; then
        log "postgres: not running"
        return 0
    fi
    log "postgres: stopping"
    # fast: roll back open transactions and disconnect clients (test databases are throwaway).
    if ! as_pg "$BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >>"$PG_DIR/pg_ctl.log" 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >>"$PG_DIR/pg_ctl.log" 2>&1 ||
            die_with_log "postgres: could not stop the server" "$PG_LOG"
    fi
}

status() {
    BIN="$(pg_bindir)"
    if pg_running && ready; then
        echo "postgres   running  pid $(head -n 1 "$PG_DATA/postmaster.pid")  $STACK_HOST:$PG_PORT"
    else
        echo "postgres   stopped"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
