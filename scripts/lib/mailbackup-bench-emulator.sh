# Sourced by the mailbackup benchmark scripts: builds graph-emulator and mailbackup ($PROFILE),
# starts the emulator on 127.0.0.1:$PORT with ${MAILBOXES:-1} mailbox(es) of $MESSAGES messages
# (one: adele.vance@emulator.test; several: user1@emulator.test, ...), $LATENCY_MS ms
# latency, Graph's 4 requests in flight per mailbox and a >1 MiB attachment every
# ${LARGE_EVERY:-0}-th message, and sets BIN, WORK (removed on exit with the emulator),
# GRAPH_URL, AUTHORITY and TENANT. Expects ROOT, TARGET, PROFILE, PORT, MESSAGES, LATENCY_MS.
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

"$BIN/graph-emulator" --listen "127.0.0.1:$PORT" --mailboxes "${MAILBOXES:-1}" --messages "$MESSAGES" --latency-ms "$LATENCY_MS" \
  --concurrency 4 --large-every "${LARGE_EVERY:-0}" >"$WORK/emu.out" 2>"$WORK/emu.err" &
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
[ -n "$GRAPH_URL" ] || { echo "emulator did not start" >&2; cat "$WORK/emu.err" >&2; exit 1; }
