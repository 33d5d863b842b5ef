#!/usr/bin/env bash
# Broker CPU spent per MB produced, per compression codec, for two spate binaries
# (interleaved): what produce-time validation (decompressing and walking compressed
# batches, as Kafka's LogValidator) costs.
#
#   tests/tools/validation_cost.sh OLD_BIN NEW_BIN [ROUNDS] [OUT_FILE]
#
# Each run starts `spate dev` on a fresh directory, produces RECORDS records of 1 KiB with
# acks=1 through `spate bench produce`, and reads the broker's user+system CPU time from
# /proc before and after. The payloads are the bench's (varied, compressible). Prints and
# writes one JSON line per run: bin, codec, round, cpu_ms, mb (uncompressed), cpu_ms_per_mb.
# Bounded: every run has a record count and a timeout.
set -euo pipefail

OLD="$(realpath "$1")"
NEW="$(realpath "$2")"
ROUNDS="${3:-2}"
OUT="${4:-/dev/null}"
RECORDS="${VALIDATION_RECORDS:-200000}"
PORT="${VALIDATION_PORT:-39192}"
TICKS="$(getconf CLK_TCK)"
: >"$OUT"

cpu_ms() { # pid
  awk -v t="$TICKS" '{ print int(($14 + $15) * 1000 / t) }' "/proc/$1/stat"
}

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $PORT never opened" >&2
  return 1
}

run() { # label bin codec round
  local dir pid before after
  dir="$(mktemp -d)"
  "$2" dev --data-dir "$dir" --kafka-addr "127.0.0.1:$PORT" --controller-addr 127.0.0.1:0 \
    --admin-addr 127.0.0.1:0 >"$dir/log" 2>&1 &
  pid=$!
  wait_port
  sleep 1
  "$2" topic create "v-$3" --bootstrap "127.0.0.1:$PORT" --partitions 1 >/dev/null
  before="$(cpu_ms "$pid")"
  timeout 300 "$2" bench produce --bootstrap "127.0.0.1:$PORT" --topic "v-$3" \
    --records "$RECORDS" --record-size 1024 --acks 1 --compression "$3" --json \
    --report-interval-ms 600000 >/dev/null
  after="$(cpu_ms "$pid")"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
  python3 -c 'import json,sys
label,codec,rnd,cpu,records=sys.argv[1],sys.argv[2],int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5])
mb=records*1024/2**20
print(json.dumps(dict(bin=label,codec=codec,round=rnd,cpu_ms=cpu,mb=round(mb,1),cpu_ms_per_mb=round(cpu/mb,3))))' \
    "$1" "$3" "$4" "$((after - before))" "$RECORDS" | tee -a "$OUT"
}

for round in $(seq 1 "$ROUNDS"); do
  for codec in none gzip snappy lz4 zstd; do
    run old "$OLD" "$codec" "$round"
    run new "$NEW" "$codec" "$round"
  done
done
