# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file
# Shared helpers for the local stack scripts. Sourced, never executed.
#
# Layout:
#   $STACK_DIR (<checkout>/.stack)   data, logs, pids, sockets, the generated env file
#   $CACHE_DIR (~/.cache/tiktok-pipeline)   downloads reused across clones (Kafka jars)

STACK_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$STACK_SCRIPTS_DIR/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT_DIR/.stack}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline"

# Ports and credentials (docs/CONVENTIONS.md). Everything binds to loopback only.
STACK_HOST=127.0.0.1
KAFKA_PORT="${STACK_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT=15432
PG_USER=tiktok
PG_PASSWORD=tiktok
PG_DB=tiktok
S3_PORT=18333
S3_ACCESS_KEY=tiktok-local
S3_SECRET_KEY=tiktok-local-secret
S3_REGION=us-east-1
S3_BUCKET=media

log() { printf '[stack] %s\n' "$*" >&2; }

# die_with_log <what> <logfile>: name what did not come up, show the tail of its log, exit 1.
die_with_log() {
    local what="$1" logfile="${2:-}"
    printf '[stack] ERROR: %s\n' "$what" >&2
    if [[ -n "$logfile" && -f "$logfile" ]]; then
        printf '[stack] ---- last 30 lines of %s ----\n' "$logfile" >&2
        tail -n 30 "$logfile" >&2 || true
        printf '[stack] ---- end of %s ----\n' "$logfile" >&2
    fi
    exit 1
}

# The Python that runs readiness probes: $STACK_PYTHON, else the checkout's venv.
stack_python() {
    if [[ -n "${STACK_PYTHON:-}" ]]; then
        echo "$STACK_PYTHON"
    elif [[ -x "$ROOT_DIR/.venv/bin/python" ]]; then
        echo "$ROOT_DIR/.venv/bin/python"
    else
        die_with_log "no Python environment: run 'make install' first (or set STACK_PYTHON)"
    fi
}

# pid_alive <pidfile> <pattern>: true if the pid in the file runs and its command line
# contains <pattern> (guards against a recycled pid).
pid_alive() {
    local pidfile="$1" pattern="$2" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# stop_pid <name> <pidfile> <pattern> [timeout]: SIGTERM, wait, then SIGKILL. Fine when not running.
stop_pid() {
    local name="$1" pidfile="$2" pattern="$3" timeout="${4:-30}" pid i
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        log "$name: not running"
        return 0
    fi
    pid="$(cat "$pidfile")"
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pidfile" "$pattern" || break
        sleep 0.1
    done
    if pid_alive "$pidfile" "$pattern"; then
        log "$name: did not stop within ${timeout}s, killing"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# spawn_detached <pidfile> <logfile> <cwd> <command...>: start a server in its own session (so it
# outlives the shell, make, or pytest session that started it), stdin from /dev/null, output appended
# to the log; the pid file holds the server's own pid (written by the process itself before exec,
# which stays right even when setsid has to fork).
spawn_detached() {
    local pidfile="$1" logfile="$2" cwd="$3" what="$4" i
    shift 3
    rm -f "$pidfile"
    (
        cd "$cwd" || exit 1
        # shellcheck disable=SC2016
        exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1
    ) &
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.05
    done
    die_with_log "could not start $what (no pid file after 5s)" "$logfile"
}

# port_open <port>: a TCP connect to 127.0.0.1:<port> succeeds.
port_open() {
    (exec 3<>"/dev/tcp/$STACK_HOST/$1") 2>/dev/null
}

# wait_until <seconds> <command...>: poll the command every 0.5 s until it succeeds.
wait_until() {
    local timeout="$1" deadline
    shift
    deadline=$((SECONDS + timeout))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# require_port_free <name> <port>: fail clearly when something else already listens there.
require_port_free() {
    if port_open "$2"; then
        local who
        who="$(ss -Hltnp "sport = :$2" 2>/dev/null | grep -o 'users:.*' | head -n 1 || true)"
        die_with_log "$1: port $STACK_HOST:$2 is already in use by a process this script did not start (${who:-unknown}); stop it or run 'scripts/stack/stack.sh down' from the checkout that started it"
    fi
}
