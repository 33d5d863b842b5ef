#!/usr/bin/env bash
# Produce latency on a compacted topic while its log cleaner works, against the same load
# on a delete-policy topic, interleaved on one `spate dev` node:
#
#   tests/tools/compaction_latency.sh SPATE_BIN [ROUNDS] [OUT_DIR]
#
# Each round runs, delete then compact: `spate bench produce` at a fixed rate, acks=all,
# 3 partitions, 1000 keys, 1 MiB segments (so segments seal every few seconds) and
# min.cleanable.dirty.ratio 0.01 (so the cleaner is busy the whole run) on a new topic.
# The node's cleaner looks for work every 500 ms. Results: one `--json` line per run in
# OUT_DIR/results.jsonl with "policy" and "round" added, then the cleaner's counters
# from /metrics. Bounded: every run has a record count, every wait a timeout.
set -euo pipefail

BIN="$(realpath "$1")"
ROUNDS="${2:-2}"
OUT="${3:-$(mktemp -d)}"
RECORDS="${BENCH_RECORDS:-200000}"
RATE="${BENCH_RATE:-10000}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
DATA="$(mktemp -d)"
KAFKA_PORT=$((20000 + RANDOM % 20000))
ADMIN_PORT=$((KAFKA_PORT + 1))

"$BIN" dev --data-dir "$DATA" --kafka-addr "127.0.0.1:$KAFKA_PORT" \
  --controller-addr 127.0.0.1:0 --admin-addr "127.0.0.1:$ADMIN_PORT" \
  --log-cleaner-backoff-ms 500 >"$OUT/node.log" 2>&1 &
NODE=$!
trap 'kill "$NODE" 2>/dev/null || true; wait "$NODE" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 300); do
  grep -q "spate dev ready" "$OUT/node.log" && break
  sleep 0.1
done
grep -q "spate dev ready" "$OUT/node.log" || { echo "node did not start" >&2; exit 1; }

run() { # policy round
  local topic="lat-$1-$2"
  local json
  json="$("$BIN" bench produce --bootstrap "127.0.0.1:$KAFKA_PORT" --topic "$topic" \
    --records "$RECORDS" --record-size 512 --throughput "$RATE" --partitions 3 --keys 1000 \
    --topic-config "cleanup.policy=$1" --topic-config segment.bytes=1048576 \
    --topic-config min.cleanable.dirty.ratio=0.01 --report-interval-ms 60000 --json | tail -1)"
  python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d.update(policy=sys.argv[1], round=int(sys.argv[2])); print(json.dumps(d))' \
    "$1" "$2" "$json" >>"$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
  run delete "$round"
  run compact "$round"
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^spate_log_cleaner_[a-z_]*_total' \
  >"$OUT/cleaner-metrics.txt" || true
cat "$RESULTS"
cat "$OUT/cleaner-metrics.txt"
