#!/usr/bin/env bash
# Benchmark of `mailbackup restore` against the Graph emulator (not a test).
#
# Setup: one mailbox of $MESSAGES messages (default 5000, no large attachments), $LATENCY_MS ms
# latency on every Graph request (default 50) and Graph's limit of 4 concurrent requests per
# mailbox. The mailbox is backed up, then restored into itself below a new folder (JSON mode,
# the default: one create request per message). With 4 requests in flight and 50 ms each the
# ceiling is 4 / 0.050 = 80 requests/s, i.e. 80 * messages / requests messages/s. The script
# prints the restore's messages/s, that ceiling and their ratio (target >= 0.9), then checks that
# a re-run restores nothing.
#
# Usage: scripts/bench-mailbackup-restore.sh   (env: MESSAGES, LATENCY_MS, MODE, PROFILE,
#                                               CARGO_TARGET_DIR, PORT)
set -euo pipefail

MESSAGES=${MESSAGES:-5000}
LATENCY_MS=${LATENCY_MS:-50}
MODE=${MODE:-json}
PROFILE=${PROFILE:-release}
PORT=${PORT:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# shellcheck source=lib/mailbackup-bench-emulator.sh
. "$ROOT/scripts/lib/mailbackup-bench-emulator.sh"

# A delegated token of the mailbox's user with Mail.ReadWrite (the emulator's app-only
# registrations may only read).
AUTH=(--authority "$AUTHORITY" --tenant "$TENANT" --client-id 4b1f6c1e-6a8e-4c62-9f0a-1f5d7e3c2a01
      --flow password --username adele.vance@emulator.test
      --scopes "Mail.ReadWrite offline_access" --token-cache "$WORK/cache.json")
export MAILBACKUP_PASSWORD=emulator-password
"$BIN/mailbackup" login "${AUTH[@]}" >/dev/null
"$BIN/mailbackup" run -d "$WORK/data" --graph-url "$GRAPH_URL" --no-progress "${AUTH[@]}" \
  >"$WORK/backup.out" 2>"$WORK/backup.err" || { cat "$WORK/backup.out" "$WORK/backup.err" >&2; exit 1; }

run_restore() { # $1 = output file; prints the wall time
  local out=$1
  local TIMEFORMAT='%R'
  { time "$BIN/mailbackup" restore -d "$WORK/data" --graph-url "$GRAPH_URL" --mode "$MODE" \
      --into-folder "Restored bench" --no-progress "${AUTH[@]}" >"$out" 2>"$out.err"; } 2>&1
}

echo "mailbackup restore benchmark: $MESSAGES messages, ${LATENCY_MS} ms latency, 4 concurrent requests per mailbox, mode $MODE ($PROFILE build)"
WALL=$(run_restore "$WORK/restore.out")
SUMMARY=$(grep '^restore' "$WORK/restore.out") || { cat "$WORK/restore.out" "$WORK/restore.out.err" >&2; exit 1; }
echo "$SUMMARY"
RESTORED=$(sed -n 's/.* selected: \([0-9]*\) restored.*/\1/p' <<<"$SUMMARY")
REQS=$(sed -n 's/.*; \([0-9]*\) requests.*/\1/p' <<<"$SUMMARY")
awk -v n="$RESTORED" -v r="$REQS" -v w="$WALL" -v lat="$LATENCY_MS" 'BEGIN {
  reqcap = 4 / (lat / 1000.0);
  ceiling = reqcap * n / r;
  rate = n / w;
  printf "restore:  %d messages in %.1f s = %.1f msg/s; %d requests\n", n, w, rate, r;
  printf "ceiling:  %.0f req/s x %d/%d = %.1f msg/s; ratio %.3f (target >= 0.9)\n", reqcap, n, r, ceiling, rate / ceiling;
}'
WALL2=$(run_restore "$WORK/again.out")
echo "re-run:   $(grep '^restore' "$WORK/again.out") (wall ${WALL2} s)"
