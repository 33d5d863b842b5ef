#!/usr/bin/env bash
# Rolling restart of the compose cluster, one node at a time:
#
#   deploy/docker/roll.sh [compose options, e.g. -p PROJECT]
#
# Each node is stopped with SIGTERM (a controlled shutdown moves its leadership to the
# other in-sync replicas first), started again, and the roll waits, from another node's
# container, until all 3 brokers are back and every partition is in sync before the next
# node. Uses `docker compose` (v2) when present, else `docker-compose` (v1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMEOUT_MS="${SPATE_ROLL_TIMEOUT_MS:-120000}"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
compose+=(-f "$HERE/compose.yaml" "$@")

for n in 1 2 3; do
  other=$(( n % 3 + 1 ))
  "${compose[@]}" stop -t 60 "spate-$n"
  "${compose[@]}" start "spate-$n"
  "${compose[@]}" exec -T "spate-$other" /spate cluster wait \
    --bootstrap spate-1:9092,spate-2:9092,spate-3:9092 --brokers 3 --in-sync \
    --timeout-ms "$TIMEOUT_MS" >/dev/null \
    || { echo "roll.sh: the cluster did not get back in sync after restarting spate-$n; stopping the roll" >&2; exit 1; }
  echo "spate-$n restarted; all brokers up and every partition in sync"
done
