#!/usr/bin/env bash
# Interleaved A/B benchmark of two spate binaries on this machine:
#
#   tests/tools/bench_compare.sh OLD_BIN NEW_BIN [ROUNDS] [OUT_DIR]
#
# Each round runs, for OLD then NEW: a single node (`spate dev`, RF=1) and a 3-node local
# cluster (deploy/local/cluster.sh, RF=3, min.insync.replicas=2), each with an unlimited
# acks=all run and a fixed-rate acks=all run (fsync before ack, the default), then tears
# the cluster down. Results are `spate bench produce --json` lines in OUT_DIR/results.jsonl
# (one object per run, with "bin", "shape", "load" and "round" added). Bounded: every run
# has a record count, every wait a timeout. Client and brokers share the machine's cores,
# so compare the two binaries with each other, not with other machines. BENCH_SHAPES
# (default "one-node three-nodes") runs only some shapes, e.g. more rounds of one.
set -euo pipefail

OLD="$(realpath "$1")"
NEW="$(realpath "$2")"
ROUNDS="${3:-2}"
OUT="${4:-$(mktemp -d)}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECORDS="${BENCH_RECORDS:-300000}"
RATE="${BENCH_RATE:-20000}"
RATE_RECORDS="${BENCH_RATE_RECORDS:-200000}"
# Which shapes to run, e.g. BENCH_SHAPES=three-nodes for more rounds of the noisy one.
SHAPES="${BENCH_SHAPES:-one-node three-nodes}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

record() { # bin shape load round json
  python3 -c 'import json,sys; d=json.loads(sys.argv[5]); d.update(bin=sys.argv[1], shape=sys.argv[2], load=sys.argv[3], round=int(sys.argv[4])); print(json.dumps(d))' \
    "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
}

wait_port() { # host port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1:$2 never opened" >&2
  return 1
}

bench() { # label bin bootstrap topic shape round rf
  local label="$1" bin="$2" bootstrap="$3" topic="$4" shape="$5" round="$6" rf="$7"
  "$bin" topic create "$topic" --bootstrap "$bootstrap" --partitions 3 \
    --replication-factor "$rf" --config min.insync.replicas="$(( rf > 1 ? 2 : 1 ))" >/dev/null
  local j
  j="$(timeout 300 "$bin" bench produce --bootstrap "$bootstrap" --topic "$topic" \
      --records "$RECORDS" --acks all --json --report-interval-ms 600000)"
  record "$label" "$shape" unlimited "$round" "$j"
  j="$(timeout 300 "$bin" bench produce --bootstrap "$bootstrap" --topic "$topic-rate" \
      --partitions 3 --replication-factor "$rf" --records "$RATE_RECORDS" --acks all \
      --throughput "$RATE" --json --report-interval-ms 600000)"
  record "$label" "$shape" "rate-$RATE" "$round" "$j"
}

one_node() { # label bin round
  local dir pid
  dir="$(mktemp -d)"
  "$2" dev --data-dir "$dir" --kafka-addr 127.0.0.1:39092 --controller-addr 127.0.0.1:0 \
    --admin-addr 127.0.0.1:0 >"$dir/log" 2>&1 &
  pid=$!
  wait_port 127.0.0.1 39092
  sleep 1
  bench "$1" "$2" 127.0.0.1:39092 "b1-$3" one-node "$3" 1
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

three_nodes() { # label bin round
  local dir
  dir="$(mktemp -d)"
  SPATE_BIN="$2" SPATE_CLUSTER_DIR="$dir" SPATE_CLUSTER_PORT=29090 \
    timeout 120 bash "$ROOT/deploy/local/cluster.sh" up >/dev/null
  bench "$1" "$2" 127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093 "b3-$3" three-nodes "$3" 3
  SPATE_BIN="$2" SPATE_CLUSTER_DIR="$dir" SPATE_CLUSTER_PORT=29090 \
    timeout 120 bash "$ROOT/deploy/local/cluster.sh" down >/dev/null || true
  rm -rf "$dir"
}

for round in $(seq 1 "$ROUNDS"); do
  for shape in $SHAPES; do
    for pair in "old:$OLD" "new:$NEW"; do
      case "$shape" in
        one-node) one_node "${pair%%:*}" "${pair#*:}" "$round" ;;
        three-nodes) three_nodes "${pair%%:*}" "${pair#*:}" "$round" ;;
        *) echo "unknown shape '$shape' in BENCH_SHAPES" >&2; exit 2 ;;
      esac
    done
  done
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["shape"], r["load"]) for r in rows})
print(f"{'shape':12} {'load':12} {'bin':4} {'records/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
for shape, load in keys:
    for b in ("old", "new"):
        for r in (x for x in rows if (x["shape"], x["load"], x["bin"]) == (shape, load, b)):
            lat = r.get("latency_ms", {})
            print(f"{shape:12} {load:12} {b:4} {r.get('records_per_sec', 0):12.0f} "
                  f"{lat.get('p50', 0):8.2f} {lat.get('p99', 0):8.2f} {lat.get('p999', 0):9.2f}")
EOF
echo "results: $RESULTS"
