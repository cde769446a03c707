#!/usr/bin/env bash
# The operator commands against a loaded daemon (not part of CI; #11 "Performance"):
# `oftp transfers` and `oftp status` must answer in under 100 ms with 1,000 partners configured
# and 100,000 files in the journal's history.
#
# The journal is filled through the journal API (crates/oftp-gateway/examples/fill_queue.rs:
# each row enqueued and moved through its states, so it has a history of 1 to 4 transitions;
# 80 % delivered, 10 % failed, 10 % queued; one alert per 1,000 rows). The work directory is
# on /dev/shm when there is one (the filler commits each change, and fsync on a disk would make
# filling take many minutes; the commands read a journal the page cache holds either way).
# Each command is run 10 times as a separate process (what an operator runs, process start and
# reading the configuration included); the median and the worst are reported with their ratio
# to the 100 ms limit, next to `oftp --version` (process start alone) in the same run.
#
# Uses the debug build unless OFTP_BIN names a binary (the release build is
# `cargo build --release -p oftp-cli`); the filler is always the debug example. Needs python3.
#
#   scripts/bench-control.sh
#   OFTP_BENCH_PARTNERS=100 OFTP_BENCH_ROWS=10000 scripts/bench-control.sh
set -euo pipefail
cd "$(dirname "$0")/.."
partners="${OFTP_BENCH_PARTNERS:-1000}"
rows="${OFTP_BENCH_ROWS:-100000}"
target="${CARGO_TARGET_DIR:-target}"
cargo build -q -p oftp-gateway --example fill_queue
fill="$(cd "$target/debug/examples" && pwd)/fill_queue"
if [ -z "${OFTP_BIN:-}" ]; then
    cargo build -q -p oftp-cli
    OFTP_BIN="$(cd "$target/debug" && pwd)/oftp"
fi
base="${TMPDIR:-/tmp}"
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
work="$(mktemp -d "$base/bench-control.XXXXXX")"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
{
    printf '[local]\nssid = "O0013BENCH"\npassword = "PW"\n\n'
    printf '[server]\nlisten = "127.0.0.1:%s"\ndata_dir = "data"\n\n' "$port"
    for i in $(seq 0 $((partners - 1))); do
        printf '[[partners]]\nname = "p%04d"\nssid = "P%04d"\npassword = "PW"\n\n' "$i" "$i"
    done
} >oftp.toml

echo "filling the journal: $rows rows over $partners partners ..."
t0=$(date +%s)
"$fill" data "$partners" "$rows"
echo "filled in $(( $(date +%s) - t0 )) s"

"$OFTP_BIN" serve --config oftp.toml >serve.out 2>serve.log &
pid=$!
for _ in $(seq 600); do
    grep -q '^listening on' serve.out 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat serve.log; exit 1; }
    sleep 0.1
done
grep -q '^listening on' serve.out || { echo "oftp serve did not start" >&2; exit 1; }

python3 - "$OFTP_BIN" <<'PY'
import statistics, subprocess, sys, time
oftp = sys.argv[1]
LIMIT_MS = 100.0
RUNS = 10

def timed(args):
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        out = subprocess.run([oftp, *args], capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
        if out.returncode != 0:
            sys.exit(f"oftp {' '.join(args)} failed: {out.stderr.decode()}")
    return statistics.median(times), max(times)

cfg = ["--config", "oftp.toml"]
cases = [
    ("oftp --version (process start)", ["--version"]),
    ("oftp transfers", ["transfers", *cfg]),
    ("oftp transfers --state failed", ["transfers", "--state", "failed", *cfg]),
    ("oftp transfers --partner p0500", ["transfers", "--partner", "p0500", *cfg]),
    ("oftp status", ["status", *cfg]),
    ("oftp status --json", ["status", "--json", *cfg]),
]
print(f"{'command':34} {'median ms':>10} {'worst ms':>9} {'median/limit':>13}")
worst_ratio = 0.0
for name, args in cases:
    median, worst = timed(args)
    ratio = median / LIMIT_MS
    if not args[0].startswith("--"):
        worst_ratio = max(worst_ratio, ratio)
    print(f"{name:34} {median:10.1f} {worst:9.1f} {ratio:13.2f}")
print(f"limit {LIMIT_MS:.0f} ms; worst median/limit of the commands: {worst_ratio:.2f} "
      f"({'within' if worst_ratio < 1 else 'OVER'} the limit)")
PY
