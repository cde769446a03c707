#!/usr/bin/env bash
# The gateway of `oftp serve` (not part of CI; #11 "Performance").
#
# 1. Drain: N small files (default 10,000 of 1 KiB) dropped into daemon A's outbox for B at
#    once (written as *.tmp, then renamed), all delivered to daemon B on 127.0.0.1 by A's own
#    calls: seconds from the first rename until A's journal has every row delivered. Next to
#    it, the same files sent to B with one `oftp send` (as another partner of B).
# 2. Idle: daemon A with 1,000 partners configured (each with an address and an outbox, no
#    schedule, nothing to send): CPU % of one core over 60 s and RSS at the end.
#
# Uses the debug build unless OFTP_BIN names a binary (the release build is
# `cargo build --release -p oftp-cli`). Needs python3 and sqlite3.
#
#   scripts/bench-gateway.sh
#   OFTP_BENCH_FILES=1000 OFTP_BENCH_IDLE_SECS=10 scripts/bench-gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
files="${OFTP_BENCH_FILES:-10000}"
idle_secs="${OFTP_BENCH_IDLE_SECS:-60}"
if [ -z "${OFTP_BIN:-}" ]; then
    cargo build -q -p oftp-cli
    OFTP_BIN="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)/oftp"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-gateway.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa="$(port)"; pb="$(port)"

# Starts `oftp serve --config $1` and waits for its "listening on" line; sets $started.
start() {
    "$OFTP_BIN" serve --config "$1" >"$1.out" 2>"$1.log" &
    started=$!
    pids+=("$started")
    for _ in $(seq 600); do
        grep -q '^listening on' "$1.out" 2>/dev/null && return 0
        kill -0 "$started" 2>/dev/null || { cat "$1.log"; exit 1; }
        sleep 0.1
    done
    echo "oftp serve --config $1 did not start" >&2
    exit 1
}

cat >b.toml <<EOF
[local]
ssid = "O0013BBB"
password = "BPW"
[server]
listen = "127.0.0.1:$pb"
data_dir = "b"
[[partners]]
name = "a"
ssid = "O0013AAA"
password = "APW"
[[partners]]
name = "c"
ssid = "O0013CCC"
password = "CPW"
EOF
cat >a.toml <<EOF
[local]
ssid = "O0013AAA"
password = "APW"
[server]
listen = "127.0.0.1:$pa"
data_dir = "a"
[[partners]]
name = "b"
ssid = "O0013BBB"
password = "BPW"
address = "127.0.0.1:$pb"
EOF
start b.toml
start a.toml
a_pid=$started

mkdir -p a/outbox/b src
python3 - "$files" <<'EOF'
import os, sys
n = int(sys.argv[1])
for i in range(n):
    data = (b"%08d " % i) * 114  # 1,026 octets
    for d in ("a/outbox/b", "src"):
        with open(f"{d}/f{i:05d}.dat.tmp", "wb") as f:
            f.write(data)
for i in range(n):
    os.rename(f"src/f{i:05d}.dat.tmp", f"src/f{i:05d}.dat")
EOF
delivered() { sqlite3 a/oftp-journal.sqlite3 "SELECT count(*) FROM queue WHERE state = 'delivered'" 2>/dev/null || echo 0; }
t0=$(date +%s.%N)
python3 - "$files" <<'EOF'
import os, sys
for i in range(int(sys.argv[1])):
    os.rename(f"a/outbox/b/f{i:05d}.dat.tmp", f"a/outbox/b/f{i:05d}.dat")
EOF
while [ "$(delivered)" -lt "$files" ]; do
    sleep 0.5
    kill -0 "$a_pid" || { echo "daemon A died" >&2; exit 1; }
done
t1=$(date +%s.%N)
drain=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
at_b=$(find b/inbox/a -type f ! -name '.*' | wc -l)

t0=$(date +%s.%N)
(cd src && "$OFTP_BIN" send --host 127.0.0.1 --port "$pb" --ssid O0013CCC --password CPW \
    --partner-ssid O0013BBB --partner-password BPW --data-dir ../cdata f*.dat >/dev/null) || true
t1=$(date +%s.%N)
send=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
at_c=$(find b/inbox/c -type f ! -name '.*' | wc -l)
kill "$a_pid"; wait "$a_pid" 2>/dev/null || true

# Idle: 1,000 partners.
python3 - "$pb" <<'EOF'
import sys
pb = sys.argv[1]
with open("idle.toml", "w") as f:
    f.write('[local]\nssid = "O0013IDLE"\npassword = "IPW"\n[server]\nlisten = "127.0.0.1:0"\ndata_dir = "idle"\n')
    for i in range(1000):
        f.write(f'[[partners]]\nname = "p{i:04d}"\nssid = "O0013P{i:04d}"\npassword = "PW"\naddress = "127.0.0.1:{pb}"\n')
EOF
start idle.toml
idle_pid=$started
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$idle_pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks)
sleep "$idle_secs"
c1=$(ticks)
cpu=$(python3 -c "print(f'{($c1 - $c0) / $hz / $idle_secs * 100:.2f}')")
rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$idle_pid/status")

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "drain: $files files of 1 KiB dropped into A's outbox, all delivered to B by A's calls: ${drain} s ($at_b at B)"
echo "one oftp send with the same $files files to B: ${send} s ($at_c at B)"
echo "ratio drain / oftp send: $(python3 -c "print(f'{$drain / $send:.2f}')")"
echo "idle daemon, 1,000 partners: CPU ${cpu} % of one core over ${idle_secs} s, RSS ${rss} MiB"
