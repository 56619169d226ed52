#!/bin/bash
# User-space instructions per request of a server build, counted by
# callgrind: steadier than timed CPU on a shared host (where timed CPU per
# request moves by ±10 % from run to run) and usable where the machine has
# no hardware counters (a VM). It counts user space only: a change that
# saves system calls or wake-ups shows in timed CPU, not here.
#
#   bench/instructions.sh API CASE [DATA_DIR]
#
# API: the server binary; CASE: a, b or c of `bench queries`; DATA_DIR: a
# data set `bench queries --data-dir` made (reused; default /tmp/bench-data).
# Env: BENCH (the bench binary, default target/release/bench), CONNECTIONS
# (default 4: at 32 the slowed server saturates its pool and the extra pings
# move the count by ±5 %), SECONDS_MEASURED (default 20).
#
# The server runs under `valgrind --tool=callgrind` through `bench queries
# --api`; once the load runs its counts are zeroed, and dumped
# SECONDS_MEASURED later; the requests in between are read from /metrics.
# Runs of one build agree within ~1 %. Needs valgrind (Debian:
# `apt-get install valgrind`) and curl.
set -euo pipefail
API=$(realpath "$1")
CASE=$2
DATA=${3:-/tmp/bench-data}
BENCH=${BENCH:-target/release/bench}
CONNECTIONS=${CONNECTIONS:-4}
MEASURED=${SECONDS_MEASURED:-20}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/server" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.out "$API" "\$@"
EOF
chmod +x "$WORK/server"

mkdir -p "$DATA"
: > "$DATA/api.log"
"$BENCH" queries --data-dir "$DATA" --api "$WORK/server" --cases "$CASE" --runs 1 \
  --seconds $((MEASURED + 25)) --warmup 5 --no-pgbench --connections "$CONNECTIONS" > "$WORK/bench.log" 2>&1 &
LOAD=$!
until grep -q "serving on" "$DATA/api.log" 2>/dev/null; do
  kill -0 $LOAD 2>/dev/null || { cat "$WORK/bench.log"; exit 1; }
  sleep 0.5
done
ADDRESS=$(grep -o 'serving on [^ ]*' "$DATA/api.log" | head -1 | awk '{print $3}' | tr -d '"')
# Past the start-up, the sign-ins and the warm-up, slowed down 20-50x.
sleep 15
SERVER=$(pgrep -f "callgrind-out-file=$WORK/callgrind.out" | head -1)
requests() { curl -s "$ADDRESS/metrics" | awk '/^api_graphql_request_duration_seconds_count/ {s += $2} END {print s}'; }
BEFORE=$(requests)
callgrind_control -z "$SERVER" > /dev/null 2>&1
sleep "$MEASURED"
AFTER=$(requests)
callgrind_control -d "$SERVER" > /dev/null 2>&1
wait $LOAD || true
DUMP=$(ls -t "$WORK"/callgrind.out.* | head -1)
INSTRUCTIONS=$(callgrind_annotate "$DUMP" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
COUNT=$((AFTER - BEFORE))
echo "case $CASE, $API: $COUNT requests, $INSTRUCTIONS instructions, $((INSTRUCTIONS / COUNT)) per request"
