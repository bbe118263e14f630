#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka, PostgreSQL and SeaweedFS (S3) on 127.0.0.1.
#
#   stack.sh up       start all three (idempotent), wait until each answers a real request,
#                     write .stack/env
#   stack.sh down     stop all three (fine when already stopped)
#   stack.sh status   one line per server; exit 1 if any is down
#   stack.sh env      print the environment (export NAME=value lines), e.g. eval "$(stack.sh env)"
#   stack.sh fetch    only download what is needed (the Kafka jars), e.g. in `make install`
#
# Ports, credentials and variables: docs/CONVENTIONS.md. State: .stack/. Downloads:
# ${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/.
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENV_FILE="$STACK_DIR/env"

print_env() {
    cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=$STACK_HOST:$KAFKA_PORT
export KAFKA_MANAGE_TOPICS=true
export DATABASE_URL=postgresql://$PG_USER:$PG_PASSWORD@$STACK_HOST:$PG_PORT/$PG_DB
export S3_ENDPOINT_URL=http://$STACK_HOST:$S3_PORT
export S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export S3_REGION=$S3_REGION
export S3_BUCKET=$S3_BUCKET
export S3_ALLOWED_BUCKETS=$S3_BUCKET
EOF
}

up() {
    mkdir -p "$STACK_DIR"
    local start=$SECONDS
    # One at a time: on 2 cores the JVM start dominates anyway, and a failure names one server.
    "$STACK_SCRIPTS_DIR/postgres.sh" up
    "$STACK_SCRIPTS_DIR/seaweed.sh" up
    "$STACK_SCRIPTS_DIR/kafka.sh" up
    print_env >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    log "stack is up in $((SECONDS - start))s; environment in $ENV_FILE (source it: . $ENV_FILE)"
}

down() {
    local rc=0
    "$STACK_SCRIPTS_DIR/kafka-secure.sh" down || rc=1
    "$STACK_SCRIPTS_DIR/kafka.sh" down || rc=1
    "$STACK_SCRIPTS_DIR/seaweed.sh" down || rc=1
    "$STACK_SCRIPTS_DIR/postgres.sh" down || rc=1
    rm -f "$ENV_FILE"
    return "$rc"
}

status() {
    local rc=0
    "$STACK_SCRIPTS_DIR/kafka.sh" status || rc=1
    "$STACK_SCRIPTS_DIR/postgres.sh" status || rc=1
    "$STACK_SCRIPTS_DIR/seaweed.sh" status || rc=1
    return "$rc"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) print_env ;;
    fetch) "$STACK_SCRIPTS_DIR/kafka.sh" fetch && "$STACK_SCRIPTS_DIR/kafka-secure.sh" fetch ;;
    *) echo "usage: $0 up|down|status|env|fetch" >&2; exit 2 ;;
esac
