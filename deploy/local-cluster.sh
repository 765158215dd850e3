#!/usr/bin/env bash
# The three nodes of deploy/compose.yaml as processes on this machine, with the same
# settings (CHATSDK_ variables; addresses on 127.0.0.1 instead of the compose network).
#
#   deploy/local-cluster.sh start   # starts them, waits until `chatsdk status` shows three
#                                   # active, reachable nodes with every group settled
#   deploy/local-cluster.sh status  # `chatsdk status` of the cluster
#   deploy/local-cluster.sh stop    # SIGTERM to each node, waits for them to exit
#
# Environment: CHATSDK_BIN (default: the `chatsdk` built in the target directory, else the one
# on PATH), CHATSDK_LOCAL_DIR (data, logs and pids; default ./local-cluster),
# CHATSDK_ADMIN_KEY (default: made once and kept in CHATSDK_LOCAL_DIR/admin-key),
# HTTP_PORTS (default "8081 8082 8083"), CLUSTER_PORTS (default "7401 7402 7403"),
# WAIT_SECONDS (default 90).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CHATSDK_LOCAL_DIR:-$PWD/local-cluster}"
read -r -a http_ports <<<"${HTTP_PORTS:-8081 8082 8083}"
read -r -a cluster_ports <<<"${CLUSTER_PORTS:-7401 7402 7403}"
wait_seconds="${WAIT_SECONDS:-90}"

bin="${CHATSDK_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in "${CARGO_TARGET_DIR:-$root/target}/debug/chatsdk" "${CARGO_TARGET_DIR:-$root/target}/release/chatsdk"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
  bin="${bin:-chatsdk}"
fi

admin_key() {
  if [ -n "${CHATSDK_ADMIN_KEY:-}" ]; then
    echo "$CHATSDK_ADMIN_KEY"
  else
    mkdir -p "$dir"
    if [ ! -s "$dir/admin-key" ]; then
      (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin-key")
    fi
    cat "$dir/admin-key"
  fi
}

# Node i (1..3): the variables of compose.yaml's x-env block plus its own advertise address.
start_node() {
  local i="$1" http="${http_ports[$(($1 - 1))]}" cluster="${cluster_ports[$(($1 - 1))]}"
  mkdir -p "$dir/node-$i"
  env \
    CHATSDK_SERVER__HTTP="127.0.0.1:$http" \
    CHATSDK_SERVER__DATA_DIR="$dir/node-$i/data" \
    CHATSDK_SERVER__ADMIN_API_KEY="$key" \
    CHATSDK_CLUSTER__ADDR="127.0.0.1:$cluster" \
    CHATSDK_CLUSTER__ADVERTISE="127.0.0.1:$cluster" \
    CHATSDK_CLUSTER__JOIN="127.0.0.1:${cluster_ports[0]}" \
    CHATSDK_CLUSTER__JOIN_TOKEN_URL="http://127.0.0.1:${http_ports[0]}" \
    CHATSDK_CLUSTER__BOOTSTRAP=true \
    CHATSDK_QUIC__ENABLED=false \
    CHATSDK_LOG__FORMAT=json \
    "$bin" serve >"$dir/node-$i/out.log" 2>"$dir/node-$i/err.log" &
  echo $! >"$dir/node-$i/pid"
}

status() {
  "$bin" status --url "http://127.0.0.1:${http_ports[0]}" --admin-key "$key"
}

# Three node rows (lines starting with an id) that are active and reachable, and every group
# row settled with three replicas.
healthy() {
  local out
  out="$(status 2>/dev/null)" || return 1
  [ "$(awk '$1 ~ /^[0-9]+$/ && $2 == "active" && $3 == "yes"' <<<"$out" | wc -l)" -eq 3 ] || return 1
  ! awk '$1 ~ /^[0-9]+$/ && ($2 == "directory" || $2 == "shard") && ($NF != "yes" || split($5, r, ",") != 3)' <<<"$out" | grep -q .
}

stop() {
  local pids=()
  for i in 1 2 3; do
    if [ -s "$dir/node-$i/pid" ]; then
      pid="$(cat "$dir/node-$i/pid")"
      if kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
      rm -f "$dir/node-$i/pid"
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

key="$(admin_key)"
case "${1:-}" in
  start)
    for i in 1 2 3; do start_node "$i"; done
    deadline=$((SECONDS + wait_seconds))
    until healthy; do
      for i in 1 2 3; do
        if ! kill -0 "$(cat "$dir/node-$i/pid")" 2>/dev/null; then
          echo "node $i exited; its log:" >&2
          tail -n 20 "$dir/node-$i/err.log" >&2
          stop
          exit 1
        fi
      done
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the cluster did not report three healthy nodes within ${wait_seconds}s" >&2
        status >&2 || true
        stop
        exit 1
      fi
      sleep 0.5
    done
    status
    echo "three nodes up: http://127.0.0.1:${http_ports[0]} (and ${http_ports[1]}, ${http_ports[2]}); admin key in ${CHATSDK_ADMIN_KEY:+CHATSDK_ADMIN_KEY}${CHATSDK_ADMIN_KEY:-$dir/admin-key}"
    ;;
  status) status ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
