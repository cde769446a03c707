#!/usr/bin/env bash
# Benchmark of `mailbackup run` against the Graph emulator (not a test).
#
# Setup: one mailbox of $MESSAGES messages (default 20000), $LATENCY_MS ms latency on every Graph
# request (default 50) and Graph's limit of 4 concurrent requests per mailbox (the emulator answers
# 429 above it). With 4 requests in flight and 50 ms each, the ceiling is 4 / 0.050 = 80 requests/s;
# a backup needs one $value request per message plus listing requests, so the ceiling in messages/s
# is 80 * messages / requests. The script prints:
#   - full backup: messages/s, the ceiling, and their ratio (target >= 0.9);
#   - no-change incremental run: requests and seconds;
#   - CPU time (user + sys) of mailbackup per message of the full backup.
#
# Usage: scripts/bench-mailbackup.sh            (env: MESSAGES, LATENCY_MS, LARGE_EVERY, PROFILE,
#                                                CARGO_TARGET_DIR, PORT)
set -euo pipefail

MESSAGES=${MESSAGES:-20000}
LATENCY_MS=${LATENCY_MS:-50}
LARGE_EVERY=${LARGE_EVERY:-0}      # every N-th message gets a >1 MiB attachment (0 = none)
PROFILE=${PROFILE:-release}
PORT=${PORT:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

cd "$ROOT"
if [ "$PROFILE" = release ]; then
  cargo build --release -p graph-emulator -p mailbackup-cli >&2
  BIN=$TARGET/release
else
  cargo build -p graph-emulator -p mailbackup-cli >&2
  BIN=$TARGET/debug
fi

WORK=$(mktemp -d)
EMU_PID=
cleanup() {
  if [ -n "$EMU_PID" ]; then kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/graph-emulator" --listen "127.0.0.1:$PORT" --messages "$MESSAGES" --latency-ms "$LATENCY_MS" \
  --concurrency 4 --large-every "$LARGE_EVERY" >"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
# Wait (bounded) for the emulator to print its URLs.
for _ in $(seq 1 600); do
  grep -q "Graph URL" "$WORK/emu.out" 2>/dev/null && break
  kill -0 "$EMU_PID" 2>/dev/null || { cat "$WORK/emu.err" >&2; exit 1; }
  sleep 0.1
done
GRAPH_URL=$(sed -n 's/^ *Graph URL: *//p' "$WORK/emu.out")
AUTHORITY=$(sed -n 's/^ *Authority URL: *//p' "$WORK/emu.out")
TENANT=$(sed -n 's/^ *Tenant id: *//p' "$WORK/emu.out")
USER_ID=adele.vance@emulator.test
[ -n "$GRAPH_URL" ] || { echo "emulator did not start" >&2; cat "$WORK/emu.err" >&2; exit 1; }

AUTH=(--authority "$AUTHORITY" --tenant "$TENANT" --client-id 9c2e7d4b-3f1a-4e8b-8d6c-5a0b9e2f1c02
      --flow client-credentials --token-cache "$WORK/cache.json")
export MAILBACKUP_CLIENT_SECRET=emulator-client-secret
"$BIN/mailbackup" login "${AUTH[@]}" >/dev/null

run_backup() { # $1 = output file; prints "wall user sys" to stdout
  local out=$1
  local TIMEFORMAT='%R %U %S'
  { time "$BIN/mailbackup" run -d "$WORK/data" --graph-url "$GRAPH_URL" --user-id "$USER_ID" \
      --no-progress "${AUTH[@]}" >"$out" 2>"$out.err"; } 2>&1
}

echo "mailbackup benchmark: $MESSAGES messages, ${LATENCY_MS} ms latency, 4 concurrent requests per mailbox ($PROFILE build)"
read -r WALL USR SYS < <(run_backup "$WORK/full.out")
SUMMARY=$(grep '^mailbox' "$WORK/full.out")
SAVED=$(sed -n 's/.* messages: \([0-9]*\) saved.*/\1/p' <<<"$SUMMARY")
REQS=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' <<<"$SUMMARY")
THROTTLED=$(sed -n 's/.* \([0-9]*\) throttled.*/\1/p' <<<"$SUMMARY")
echo "$SUMMARY"
awk -v n="$SAVED" -v r="$REQS" -v w="$WALL" -v u="$USR" -v s="$SYS" -v lat="$LATENCY_MS" -v th="$THROTTLED" 'BEGIN {
  reqcap = 4 / (lat / 1000.0);
  ceiling = reqcap * n / r;
  rate = n / w;
  printf "full backup:   %d messages in %.1f s = %.1f msg/s; %d requests (%d listing), %d throttled\n", n, w, rate, r, r - n, th;
  printf "ceiling:       %.0f req/s x %d/%d = %.1f msg/s; ratio %.3f (target >= 0.9)\n", reqcap, n, r, ceiling, rate / ceiling;
  printf "cpu:           %.2f s user + %.2f s sys = %.3f ms per message\n", u, s, (u + s) * 1000 / n;
}'

read -r WALL2 _ _ < <(run_backup "$WORK/incr.out")
SUMMARY2=$(grep '^mailbox' "$WORK/incr.out")
REQS2=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' <<<"$SUMMARY2")
echo "$SUMMARY2"
echo "no-change run: $REQS2 requests in $WALL2 s"
