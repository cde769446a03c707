#!/usr/bin/env bash
# Benchmark of `mailbackup run` against the Graph emulator (not a test).
#
# Setup: one mailbox of $MESSAGES messages (default 20000), $LATENCY_MS ms latency on every Graph
# request (default 50) and Graph's limit of 4 concurrent requests per mailbox (the emulator answers
# 429 above it). With 4 requests in flight and 50 ms each, the ceiling is 4 / 0.050 = 80 requests/s;
# a backup needs one $value request per message plus listing requests, so the ceiling in messages/s
# is 80 * messages / requests. The target is >= 0.9 of the ceiling in every one of $RUNS full
# backups (default 5), each into an empty data folder against the same emulator. The script prints:
#   - each full backup: messages/s, the ceiling, their ratio and the CPU time (user + sys) of
#     mailbackup per message; then the minimum ratio over the runs;
#   - no-change incremental run (after the last full backup): requests and seconds.
#
# Usage: scripts/bench-mailbackup.sh            (env: RUNS, MESSAGES, LATENCY_MS, LARGE_EVERY,
#                                                PROFILE, CARGO_TARGET_DIR, PORT)
set -euo pipefail

RUNS=${RUNS:-5}
MESSAGES=${MESSAGES:-20000}
LATENCY_MS=${LATENCY_MS:-50}
LARGE_EVERY=${LARGE_EVERY:-0}      # every N-th message gets a >1 MiB attachment (0 = none)
PROFILE=${PROFILE:-release}
PORT=${PORT:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# shellcheck source=lib/mailbackup-bench-emulator.sh
. "$ROOT/scripts/lib/mailbackup-bench-emulator.sh"
USER_ID=adele.vance@emulator.test

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

echo "mailbackup benchmark: $MESSAGES messages, ${LATENCY_MS} ms latency, 4 concurrent requests per mailbox ($PROFILE build), $RUNS full backups"
RATIOS=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data"
  read -r WALL USR SYS < <(run_backup "$WORK/full.out")
  SUMMARY=$(grep '^mailbox' "$WORK/full.out")
  SAVED=$(sed -n 's/.* messages: \([0-9]*\) saved.*/\1/p' <<<"$SUMMARY")
  REQS=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' <<<"$SUMMARY")
  THROTTLED=$(sed -n 's/.* \([0-9]*\) throttled.*/\1/p' <<<"$SUMMARY")
  echo "run $run/$RUNS: $SUMMARY"
  RATIO=$(awk -v n="$SAVED" -v r="$REQS" -v w="$WALL" -v lat="$LATENCY_MS" \
    'BEGIN { printf "%.3f", (n / w) / (4 / (lat / 1000.0) * n / r) }')
  RATIOS+=("$RATIO")
  awk -v n="$SAVED" -v r="$REQS" -v w="$WALL" -v u="$USR" -v s="$SYS" -v lat="$LATENCY_MS" -v th="$THROTTLED" -v ratio="$RATIO" 'BEGIN {
    reqcap = 4 / (lat / 1000.0);
    ceiling = reqcap * n / r;
    printf "  full backup: %d messages in %.1f s = %.1f msg/s; %d requests (%d listing), %d throttled\n", n, w, n / w, r, r - n, th;
    printf "  ceiling:     %.0f req/s x %d/%d = %.1f msg/s; ratio %s (target >= 0.9)\n", reqcap, n, r, ceiling, ratio;
    printf "  cpu:         %.2f s user + %.2f s sys = %.3f ms per message\n", u, s, (u + s) * 1000 / n;
  }'
done
awk -v runs="$RUNS" -v list="${RATIOS[*]}" 'BEGIN {
  n = split(list, r, " "); min = r[1];
  for (i = 2; i <= n; i++) if (r[i] + 0 < min + 0) min = r[i];
  printf "ratios:        %s (runs 1-%d); minimum %s: target >= 0.9 in every run %s\n", list, runs, min, (min >= 0.9 ? "met" : "NOT met");
}'

read -r WALL2 _ _ < <(run_backup "$WORK/incr.out")
SUMMARY2=$(grep '^mailbox' "$WORK/incr.out")
REQS2=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' <<<"$SUMMARY2")
echo "$SUMMARY2"
echo "no-change run: $REQS2 requests in $WALL2 s"
