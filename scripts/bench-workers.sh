#!/usr/bin/env bash
# Benchmark of several `mailbackup run --all-users` workers sharing one tenant through mailbox
# leases in PostgreSQL (not a test).
#
# Setup: the Graph emulator with $MAILBOXES mailboxes (default 30) of $MESSAGES messages (default
# 2000), $LATENCY_MS ms latency on every request (default 50) and Graph's limit of 4 concurrent
# requests per mailbox; a throw-away PostgreSQL cluster (initdb/pg_ctl in a temporary folder)
# with a fresh database per scenario; each worker backs up $PARALLEL mailboxes at once (default 2,
# the `run` default), 4 requests in flight in each.
#
# Scenarios ($SCENARIOS, default "local:1 local:2 local:3 s3:1"): N workers writing to one local
# folder, and one worker writing to S3 (moto's server, `python3 -m moto.server`, installed by
# scripts/install-test-deps.sh).
#
# Ceiling: a mailbox allows 4 requests in flight of $LATENCY_MS ms each = 4 / latency requests/s;
# N workers keep min(N x PARALLEL, MAILBOXES) mailboxes in flight, so the ceiling in messages/s is
# mailboxes in flight x 4 / latency x messages / requests (listing requests included). The last
# round of mailboxes leaves slots idle when MAILBOXES is not a multiple of N x PARALLEL; the
# script prints the ceiling with that tail as well. Printed per scenario: wall time, messages/s,
# the ceiling and the ratio, and the CPU time (user + sys) of all workers per message.
#
# Usage: scripts/bench-workers.sh   (env: MAILBOXES, MESSAGES, LATENCY_MS, PARALLEL, SCENARIOS,
#                                    PROFILE (debug), CARGO_TARGET_DIR, PORT)
set -euo pipefail

MAILBOXES=${MAILBOXES:-30}
MESSAGES=${MESSAGES:-2000}
LATENCY_MS=${LATENCY_MS:-50}
PARALLEL=${PARALLEL:-2}
SCENARIOS=${SCENARIOS:-"local:1 local:2 local:3 s3:1"}
PROFILE=${PROFILE:-debug}
PORT=${PORT:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export MAILBOXES

# shellcheck source=lib/mailbackup-bench-emulator.sh
. "$ROOT/scripts/lib/mailbackup-bench-emulator.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: a throw-away cluster in its own temporary folder, trust authentication on
# loopback only; as the `postgres` user when run as root (initdb refuses root).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_PORT=$(free_port)
PGDIR=$(mktemp -d)
AS_PG=()
if [ "$(id -u)" = 0 ]; then chown postgres "$PGDIR"; AS_PG=(runuser -u postgres --); fi
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U mailbackup >/dev/null
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PG_PORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
MOTO_PID=
stop_servers() {
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  cleanup
}
trap stop_servers EXIT

export MAILBACKUP_CLIENT_SECRET=emulator-client-secret
AUTH=(--authority "$AUTHORITY" --tenant "$TENANT" --client-id 9c2e7d4b-3f1a-4e8b-8d6c-5a0b9e2f1c02
      --flow client-credentials)

start_moto() {
  [ -n "$MOTO_PID" ] && return
  MOTO_PORT=$(free_port)
  python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/" && break
    sleep 0.2
  done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
}

scenario() { # $1 = local|s3, $2 = workers
  local kind=$1 n=$2 run=$WORK/run-$1-$2 store=()
  mkdir -p "$run/data/.meta"
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U mailbackup "bench_${kind}_$n"
  if [ "$kind" = s3 ]; then
    start_moto
    curl -s -X PUT "http://127.0.0.1:$MOTO_PORT/bench-$n" >/dev/null
    store=(--store "s3://bench-$n/mail?endpoint=http://127.0.0.1:$MOTO_PORT&region=us-east-1")
  fi
  local load_before start end pids=() i
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    /usr/bin/time -f "%U %S" -o "$run/w$i.time" \
      "$BIN/mailbackup" run -d "$run/data" --working-folder "$run/data/.meta/w$i" --all-users \
      --graph-url "$GRAPH_URL" --index "postgres://mailbackup@127.0.0.1:$PG_PORT/bench_${kind}_$n" \
      --worker-id "w$i" --parallel-mailboxes "$PARALLEL" --no-progress "${store[@]}" \
      "${AUTH[@]}" --token-cache "$run/cache-$i.json" >"$run/w$i.out" 2>"$run/w$i.err" &
    pids+=($!)
  done
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  end=$(date +%s.%N)
  [ "$failed" = 0 ] || { echo "a worker failed:" >&2; tail -n 5 "$run"/w*.err "$run"/w*.out >&2; exit 1; }
  cat "$run"/w*.out | grep '^mailbox' >"$run/summary"
  local saved reqs cpu
  saved=$(sed -n 's/.* messages: \([0-9]*\) saved.*/\1/p' "$run/summary" | paste -sd+ | bc)
  reqs=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' "$run/summary" | paste -sd+ | bc)
  cpu=$(cat "$run"/w*.time | awk '{ s += $1 + $2 } END { print s }')
  awk -v kind="$kind" -v n="$n" -v p="$PARALLEL" -v mb="$MAILBOXES" -v saved="$saved" -v r="$reqs" \
      -v w="$(echo "$end - $start" | bc)" -v lat="$LATENCY_MS" -v cpu="$cpu" -v l0="$load_before" \
      -v l1="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
    slots = n * p; if (slots > mb) slots = mb;
    rounds = int((mb + slots - 1) / slots);
    per_mb = 4 / (lat / 1000.0) * saved / r;            # messages/s of one mailbox at the limit
    ceiling = slots * per_mb;
    tail = mb * per_mb / (rounds * slots);             # the same, with the idle slots of the last round
    rate = saved / w;
    printf "%-5s %d worker(s): %d messages in %.1f s = %.1f msg/s; %d requests; ceiling %d mailboxes x %.1f = %.1f msg/s (%.1f with the last round), ratio %.2f (%.2f); cpu %.2f ms/message; load %s -> %s\n",
      kind, n, saved, w, rate, r, slots, per_mb, ceiling, tail * slots, rate / ceiling, rate / (tail * slots), cpu * 1000 / saved, l0, l1;
  }'
}

echo "workers benchmark: $MAILBOXES mailboxes x $MESSAGES messages, ${LATENCY_MS} ms latency, 4 concurrent requests per mailbox, $PARALLEL mailboxes per worker ($PROFILE build, $(nproc) cores)"
for s in $SCENARIOS; do
  scenario "${s%%:*}" "${s##*:}"
done
