#!/usr/bin/env bash
# A 3-node Spate cluster on 127.0.0.1: every node is a controller voter and a broker.
#
#   deploy/local/cluster.sh up                 start nodes 1-3; prints ADMIN=... and then
#                                              BOOTSTRAP=... as its last two lines
#   deploy/local/cluster.sh down [--purge]     SIGTERM all; --purge also deletes the data
#   deploy/local/cluster.sh status             which nodes run, and `spate cluster info`
#   deploy/local/cluster.sh kill N             SIGKILL node N
#   deploy/local/cluster.sh start N            start node N
#   deploy/local/cluster.sh restart N          SIGTERM node N, then start it
#   deploy/local/cluster.sh roll               rolling restart: node by node, SIGTERM
#                                              (controlled shutdown), start, and wait until
#                                              all 3 brokers are back and every partition
#                                              is in sync before the next node
#   deploy/local/cluster.sh logs N             the last 200 lines of node N's log
#
# Node N: Kafka on 127.0.0.1:$((SPATE_CLUSTER_PORT + N)), controller on
# 127.0.0.1:$((SPATE_CLUSTER_PORT + 100 + N)), replication on
# 127.0.0.1:$((SPATE_CLUSTER_PORT + 200 + N)), HTTP admin (/healthz, /readyz, /metrics,
# /v1/...) on 127.0.0.1:$((SPATE_CLUSTER_PORT + 300 + N)). Data and logs under $SPATE_CLUSTER_DIR
# (default ./.spate-cluster). The binary is $SPATE_BIN, else target/release/spate, else
# target/debug/spate (build it first: cargo build --release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${SPATE_CLUSTER_DIR:-./.spate-cluster}"
PORT="${SPATE_CLUSTER_PORT:-19090}"
NODES=(1 2 3)
UP_TIMEOUT_S="${SPATE_CLUSTER_UP_TIMEOUT:-60}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

bin() {
  if [ -n "${SPATE_BIN:-}" ]; then echo "$SPATE_BIN"; return; fi
  for b in "$ROOT/target/release/spate" "$ROOT/target/debug/spate"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  die "no spate binary: run 'cargo build --release' or set SPATE_BIN"
}

kafka_port() { echo $((PORT + $1)); }
controller_port() { echo $((PORT + 100 + $1)); }
replication_port() { echo $((PORT + 200 + $1)); }
admin_port() { echo $((PORT + 300 + $1)); }
voters() {
  local v=() n
  for n in "${NODES[@]}"; do v+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${v[*]}")
}
bootstrap() {
  local b=() n
  for n in "${NODES[@]}"; do b+=("127.0.0.1:$(kafka_port "$n")"); done
  (IFS=,; echo "${b[*]}")
}
admins() {
  local a=() n
  for n in "${NODES[@]}"; do a+=("127.0.0.1:$(admin_port "$n")"); done
  (IFS=,; echo "${a[*]}")
}
controllers() {
  local c=() n
  for n in "${NODES[@]}"; do c+=("127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${c[*]}")
}
check_node() { [[ "${1:-}" =~ ^[123]$ ]] || die "node must be 1, 2 or 3, got '${1:-}'"; }
pidfile() { echo "$DIR/node$1.pid"; }
running() { local f; f="$(pidfile "$1")"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

start_node() {
  local n="$1"
  if running "$n"; then echo "node $n already running (pid $(cat "$(pidfile "$n")"))"; return; fi
  mkdir -p "$DIR/node$n"
  "$(bin)" server \
    --node-id "$n" \
    --process-roles broker,controller \
    --listeners "127.0.0.1:$(kafka_port "$n")" \
    --controller-listener "127.0.0.1:$(controller_port "$n")" \
    --replication-listener "127.0.0.1:$(replication_port "$n")" \
    --admin-listener "127.0.0.1:$(admin_port "$n")" \
    --controller-quorum-voters "$(voters)" \
    --data-dir "$DIR/node$n/data" \
    >>"$DIR/node$n.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$n")"
  echo "node $n started (pid $!), log $DIR/node$n.log"
}

# SIGTERM starts a controlled shutdown (leadership moves away, bounded by
# controlled.shutdown.timeout.ms, 30 s by default), then logs are flushed.
STOP_TIMEOUT_S="${SPATE_CLUSTER_STOP_TIMEOUT:-45}"
ROLL_TIMEOUT_MS="${SPATE_CLUSTER_ROLL_TIMEOUT_MS:-120000}"

signal_node() {
  local n="$1" sig="$2"
  running "$n" || return 0
  kill "-$sig" "$(cat "$(pidfile "$n")")" 2>/dev/null || true
}

await_stop() {
  local n="$1" sig="$2" pid i
  [ -f "$(pidfile "$n")" ] || return 0
  pid="$(cat "$(pidfile "$n")")"
  for i in $(seq 1 $((STOP_TIMEOUT_S * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node $n did not stop within ${STOP_TIMEOUT_S} s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$n")"
  echo "node $n stopped ($sig)"
}

stop_node() {
  local n="$1" sig="${2:-TERM}"
  running "$n" || { rm -f "$(pidfile "$n")"; return 0; }
  signal_node "$n" "$sig"
  await_stop "$n" "$sig"
}

unfenced_brokers() {
  "$(bin)" cluster info --controllers "$(controllers)" 2>/dev/null | grep -c ' unfenced at ' || true
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up)
    mkdir -p "$DIR"
    for n in "${NODES[@]}"; do start_node "$n"; done
    deadline=$((SECONDS + UP_TIMEOUT_S))
    until [ "$(unfenced_brokers)" -ge 3 ]; do
      [ "$SECONDS" -lt "$deadline" ] || die "3 brokers not registered and unfenced within ${UP_TIMEOUT_S}s (see $DIR/node*.log)"
      sleep 0.2
    done
    # ...and every broker has applied that, so any of them lists all three to clients.
    "$(bin)" cluster wait --bootstrap "$(bootstrap)" --brokers 3 \
      --timeout-ms $(( (deadline - SECONDS > 1 ? deadline - SECONDS : 1) * 1000 )) >/dev/null \
      || die "not every broker lists 3 brokers within ${UP_TIMEOUT_S}s (see $DIR/node*.log)"
    echo "ADMIN=$(admins)"
    echo "BOOTSTRAP=$(bootstrap)"
    ;;
  down)
    # All at once: stopping one by one would leave the last nodes draining without a
    # controller quorum.
    for n in "${NODES[@]}"; do signal_node "$n" TERM; done
    for n in "${NODES[@]}"; do await_stop "$n" TERM; done
    if [ "${1:-}" = "--purge" ]; then rm -rf "$DIR"; echo "removed $DIR"; fi
    ;;
  status)
    for n in "${NODES[@]}"; do
      if running "$n"; then echo "node $n running (pid $(cat "$(pidfile "$n")"))"; else echo "node $n stopped"; fi
    done
    "$(bin)" cluster info --controllers "$(controllers)" || true
    ;;
  kill) check_node "${1:-}"; stop_node "$1" KILL ;;
  start) check_node "${1:-}"; start_node "$1" ;;
  restart) check_node "${1:-}"; stop_node "$1" TERM; start_node "$1" ;;
  roll)
    for n in "${NODES[@]}"; do
      running "$n" || die "node $n is not running; a rolling restart needs the whole cluster up"
    done
    for n in "${NODES[@]}"; do
      stop_node "$n" TERM
      start_node "$n"
      "$(bin)" cluster wait --bootstrap "$(bootstrap)" --brokers 3 --in-sync \
        --timeout-ms "$ROLL_TIMEOUT_MS" >/dev/null \
        || die "after restarting node $n the cluster did not get back in sync within ${ROLL_TIMEOUT_MS} ms (see $DIR/node$n.log); stopping the roll"
      echo "node $n restarted; all brokers up and every partition in sync"
    done
    ;;
  logs) check_node "${1:-}"; tail -n 200 "$DIR/node$1.log" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || exit 2 ;;
esac
