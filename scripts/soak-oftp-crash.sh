#!/usr/bin/env bash
# OFTP crash soak (not part of CI): the server is killed with SIGKILL in the middle of
# transfers and restarted, while every file is sent again with `oftp send` until it exits 0.
#
# 100 files of 1 KiB to 50 MiB (sizes spread geometrically, about 480 MiB in all) go from
# `oftp send` (4 files at a time, one shared client journal) to a separate `oftp serve`
# process (release build) on 127.0.0.1. The server is killed 15 times, spread over the run
# (each time 6 more files are confirmed, so it dies while the other senders are mid-transfer)
# and restarted on the same data directory. The server stores files under a name with the
# virtual file's date/time stamp, so a file offered twice as a new file would show up twice.
#
# Passes when every file's loop ended with exit 0 within the allowed tries, the server was
# killed 15 times while files were still being sent, and the inbox holds each file exactly
# once with the same SHA-256 and no other file (temporary .oftp-*.part files are counted, not
# failed). Prints the figures. Bounded in time (SOAK_TIMEOUT seconds, default 1800); removes its
# directory at the end (SOAK_KEEP=1 keeps it).
#
#   scripts/soak-oftp-crash.sh
#   SOAK_FILES=40 SOAK_KILLS=6 SOAK_MAX_MIB=10 scripts/soak-oftp-crash.sh   # a shorter run
#   OFTP_BIN=/path/to/oftp scripts/soak-oftp-crash.sh          # skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."

files=${SOAK_FILES:-100}
kills=${SOAK_KILLS:-15}
max_tries=${SOAK_MAX_TRIES:-40}
workers=${SOAK_WORKERS:-4}
limit=${SOAK_TIMEOUT:-1800}
min_size=1024
max_size=$(( ${SOAK_MAX_MIB:-50} * 1024 * 1024 ))

if [[ -z "${OFTP_BIN:-}" ]]; then
    cargo build --release -p oftp-cli
    target="${CARGO_TARGET_DIR:-target}"
    OFTP_BIN="$(cd "$target/release" && pwd)/oftp"
fi
[[ -x "$OFTP_BIN" ]] || { echo "soak: no oftp binary at $OFTP_BIN" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/oftp-soak.XXXXXX")
server_pid=""
killer_pid=""
cleanup() {
    [[ -n "$killer_pid" ]] && kill "$killer_pid" 2>/dev/null || true
    if [[ -f "$work/server.pid" ]]; then
        kill -9 "$(cat "$work/server.pid")" 2>/dev/null || true
    fi
    if [[ "${SOAK_KEEP:-0}" == 1 ]]; then
        echo "soak: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
deadline=$(( $(date +%s) + limit ))

fail() {
    echo "soak: FAILED: $*" >&2
    touch "$work/failed"
    exit 1
}

# A free port below the ephemeral range: while the server is down, a client's connect to a port
# in that range can get the very same port as its source and connect to itself, taking the port.
port=$(python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for p in random.sample(range(10000, lo), 200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass
    finally:
        s.close()
')
[[ -n "$port" ]] || { echo "soak: no free port below the ephemeral range" >&2; exit 1; }
mkdir -p "$work/src" "$work/server" "$work/client" "$work/tries"
cat >"$work/server/oftp.toml" <<EOF
[local]
ssid = "O0013SOAKSRV"
password = "SRVPW"

[server]
listen = "127.0.0.1:$port"
data_dir = "."
inactivity_timeout_secs = 20
received_file_name_format = "%VirtualFileName%.%VirtualFileDate%"

[session]
buffer_size = 99999
credit = 999

[[partners]]
name = "client"
ssid = "O0013SOAKCLI"
password = "CLIPW"
EOF
cat >"$work/client/oftp.toml" <<EOF
[local]
ssid = "O0013SOAKCLI"
password = "CLIPW"

[server]
data_dir = "."

[session]
buffer_size = 99999
credit = 999

[[partners]]
name = "server"
ssid = "O0013SOAKSRV"
password = "SRVPW"
address = "127.0.0.1:$port"
EOF

# Deterministic sizes from min_size to max_size; random content.
echo "soak: writing $files files to $work/src"
python3 - "$work/src" "$files" "$min_size" "$max_size" <<'EOF'
import os, sys
d, n, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    size = round(lo * (hi / lo) ** (i / max(n - 1, 1)))
    with open(os.path.join(d, "f%03d.bin" % i), "wb") as f:
        f.write(os.urandom(size))
EOF
total_bytes=$(du -cb "$work/src"/*.bin | tail -1 | cut -f1)

# Whether process $1 is gone: every thread exited (a zombie nobody reaped yet holds no socket).
# The main thread of a killed process is a zombie at once, but a thread in an uninterruptible
# call (fsync) lives on, with the listening socket, until the call returns.
gone() {
    local t
    for t in /proc/"$1"/task/*/stat; do
        [[ -r "$t" ]] || continue
        [[ "$(awk '{print $3}' "$t" 2>/dev/null)" == Z ]] || return 1
    done
    return 0
}

start_server() {
    local pid
    for _ in 1 2 3; do
        (cd "$work/server" && exec "$OFTP_BIN" serve --config oftp.toml >>"$work/server.log" 2>&1) &
        pid=$!
        echo "$pid" >"$work/server.pid"
        for _ in $(seq 1 200); do
            gone "$pid" && break
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && ! gone "$pid"; then
                return 0
            fi
            sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
        sleep 1
    done
    fail "the server did not listen on 127.0.0.1:$port (see $work/server.log)"
}

# Sends one file until `oftp send` exits 0; records every exit code.
send_until_delivered() {
    local f=$1 name tries=0 code
    name=$(basename "$f")
    while :; do
        (( $(date +%s) < deadline )) || { echo "$name: time limit" >>"$work/gave-up"; return 1; }
        tries=$((tries + 1))
        if (( tries > max_tries )); then
            echo "$name: no exit 0 in $max_tries tries" >>"$work/gave-up"
            return 1
        fi
        code=0
        (cd "$work/client" && "$OFTP_BIN" send --config oftp.toml --partner server \
            --timeout 20 --connect-timeout 5 "$f" >>"$work/tries/$name.out" 2>&1) || code=$?
        echo "$code" >>"$work/tries/$name.codes"
        if (( code == 0 )); then
            echo "$name" >>"$work/done"
            return 0
        fi
        sleep 0.3
    done
}
export -f send_until_delivered
export work deadline max_tries OFTP_BIN

# Kills the server after every `step` confirmed files (the other senders are then in the middle
# of their files), restarts it at once.
killer() {
    local step=$(( (files - workers) / (kills + 1) )) n=0 done_count pid
    (( step >= 1 )) || step=1
    while (( n < kills )); do
        done_count=$(wc -l <"$work/done" 2>/dev/null || echo 0)
        if (( done_count >= (n + 1) * step )); then
            if (( $(wc -l <"$work/done") >= files )); then
                break
            fi
            pid=$(cat "$work/server.pid")
            kill -9 "$pid" 2>/dev/null || true
            while ! gone "$pid"; do sleep 0.02; done
            n=$((n + 1))
            echo "$n $(date +%s.%N) after $done_count files" >>"$work/kills"
            start_server
        fi
        sleep 0.1
        (( $(date +%s) < deadline )) || return 0
    done
}

touch "$work/done" "$work/kills"
start_server
t0=$(date +%s.%N)
killer &
killer_pid=$!
ls "$work/src"/*.bin | xargs -P "$workers" -I{} bash -c 'send_until_delivered "$@"' _ {} \
    || true
t1=$(date +%s.%N)
kill "$killer_pid" 2>/dev/null || true
wait "$killer_pid" 2>/dev/null || true
killer_pid=""

# ---- verdict ----
[[ -f "$work/failed" ]] && fail "see above"
[[ -f "$work/gave-up" ]] && fail "files without exit 0: $(tr '\n' ' ' <"$work/gave-up")"
n_kills=$(wc -l <"$work/kills")
(( n_kills == kills )) || fail "the server was killed $n_kills times, not $kills (the run ended first)"
inbox="$work/server/inbox/client"
for f in "$work/src"/*.bin; do
    name=$(basename "$f")
    upper=${name^^}
    matches=("$inbox/$upper".*)
    [[ -e "${matches[0]}" ]] || fail "$name is not in the inbox"
    (( ${#matches[@]} == 1 )) || fail "$name is in the inbox ${#matches[@]} times: ${matches[*]}"
    [[ "$(sha256sum <"$f")" == "$(sha256sum <"${matches[0]}")" ]] \
        || fail "$name differs from ${matches[0]}"
done
stored=$(find "$inbox" -maxdepth 1 -type f ! -name '.*' | wc -l)
(( stored == files )) || fail "the inbox holds $stored files, expected $files"
partials=$(find "$inbox" -maxdepth 1 -type f -name '.*' | wc -l)

tries_total=$(cat "$work/tries"/*.codes | wc -l)
retried=$(for c in "$work/tries"/*.codes; do if (( $(wc -l <"$c") > 1 )); then echo; fi; done | wc -l)
max_file_tries=$(for c in "$work/tries"/*.codes; do wc -l <"$c"; done | sort -n | tail -1)
codes=$(cat "$work/tries"/*.codes | sort -n | uniq -c | awk '{printf "%s%s x exit %s", (NR > 1 ? ", " : ""), $1, $2}')
lines() { cat "$work/tries"/*.out | grep -c "$1" || true; }
collected=$(lines 'earlier run')
duplicate_answers=$(grep -c 'SFNA 13' "$work/server.log" || true)
secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
mib=$(python3 -c "print(f'{$total_bytes / 1048576:.1f}')")
echo "soak: PASSED"
echo "  files:                 $files ($mib MiB, $min_size B to $max_size B), each exact (SHA-256) and once in the inbox"
echo "  server kills:          $n_kills (kill -9, restarted each time)"
echo "  oftp send runs:        $tries_total ($codes)"
echo "  files run more than once: $retried (most runs for one file: $max_file_tries)"
echo "  outcome lines:         $(lines '^delivered') delivered, $(lines '^not confirmed') not confirmed, $(lines '^not sent') not sent, $(lines '^rejected') rejected, $(lines '^refused') refused, $(lines '^error:') errors (connect or session)"
echo "  EERPs printed for earlier runs: $collected"
echo "  SFNA 13 (duplicate) answers logged by the server: $duplicate_answers"
echo "  temporary files left:  $partials"
echo "  wall time:             ${secs} s"
