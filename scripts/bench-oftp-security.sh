#!/usr/bin/env bash
# OFTP 2.0 security benchmark (not part of CI).
#
# 1. The physical limit on this machine: `openssl speed` for AES-256-CBC and SHA-256 (16 KiB
#    blocks, what the CMS layers process), and the slower of the two.
# 2. A file (1 GiB by default) sent end to end by `oftp send` to a separate `oftp serve`:
#    signed + encrypted with suite 04 (AES-256-CBC, RSA, SHA-256), signed + compressed +
#    encrypted, and signed + encrypted over TLS. Each run includes the sender's processed copy
#    (sign/compress/encrypt, written and fsynced before SFID, since SFIDFSIZ must be known) and
#    the receiver's opening of the durable file (verify/decompress/decrypt, fsync, rename)
#    before EFPA.
# 3. The server's peak RSS (VmHWM) after all runs.
# Also prints the durable write speed of the data directory's disk (dd conv=fsync): a secured
# file is written three times (the sender's processed copy, the received data, the opened file)
# and fsynced once, so on a slow disk that, not the crypto, is the limit.
#
# Prints MB/s of user data, the ratio to the slowest primitive (target >= 0.7) and the peak RSS
# (target < 64 MiB). Certificates are made with openssl in a temporary directory.
#
#   scripts/bench-oftp-security.sh               # 1 GiB
#   OFTP_BENCH_MIB=256 scripts/bench-oftp-security.sh
#   OFTP_BIN=/path/to/oftp scripts/bench-oftp-security.sh   # skip the release build
#   TMPDIR=/dev/shm scripts/bench-oftp-security.sh           # data on tmpfs: CPU cost only
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${OFTP_BENCH_MIB:-1024}"
if [ -z "${OFTP_BIN:-}" ]; then
    cargo build --release -p oftp-cli
    target="${CARGO_TARGET_DIR:-target}"
    OFTP_BIN="$(cd "$target/release" && pwd)/oftp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/oftp-sec-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    if [ -n "${OFTP_BENCH_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- 1. primitives ------------------------------------------------------------------------
speed() { # prints MB/s for 16384-byte blocks
    openssl speed -seconds 3 -bytes 16384 -evp "$1" 2>/dev/null \
        | awk -v alg="$1" 'tolower($1) == tolower(alg) { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }'
}
aes=$(speed aes-256-cbc)
sha=$(speed sha256)
limit=$(( aes < sha ? aes : sha ))
echo "openssl speed (16 KiB blocks): AES-256-CBC ${aes} MB/s, SHA-256 ${sha} MB/s; limit ${limit} MB/s"

# --- certificates and configuration -------------------------------------------------------
cd "$work"
for n in server client; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.pem" -days 2 \
        -subj "/CN=$n/O=OFTP bench" -addext subjectAltName=DNS:localhost 2>/dev/null
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain_port=$(free_port)
tls_port=$(free_port)
cat > server.toml <<EOF
[local]
ssid = "O0013SERVER"
password = "SRVPW"
[server]
listen = "127.0.0.1:$plain_port"
data_dir = "sdata"
[session]
buffer_size = 99999
credit = 999
[security.identity]
cert = "server.pem"
key = "server.key"
[tls]
enabled = true
listen = "127.0.0.1:$tls_port"
[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"
[partners.security]
certificate = "client.pem"
EOF
cat > client.toml <<EOF
[local]
ssid = "O0013CLIENT"
password = "CLIPW"
[server]
data_dir = "cdata"
[session]
buffer_size = 99999
credit = 999
[security.identity]
cert = "client.pem"
key = "client.key"
[[partners]]
name = "server"
ssid = "O0013SERVER"
password = "SRVPW"
address = "127.0.0.1:$plain_port"
[partners.security]
certificate = "server.pem"
EOF

"$OFTP_BIN" serve -v --config server.toml > server.log 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do grep -q "(TLS)" server.log 2>/dev/null && break; sleep 0.1; done

# Text-like content (EDI is text): compressible, so the compressed run is realistic.
python3 - "$MIB" <<'EOF'
import sys, random
mib = int(sys.argv[1])
rnd = random.Random(42)
words = [bytes(rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(rnd.randint(2, 12))) for _ in range(5000)]
line = lambda: b"+".join(rnd.choice(words) for _ in range(12)) + b"'\n"
block = b"".join(line() for _ in range(20000))
with open("payload.edi", "wb") as f:
    left = mib << 20
    while left > 0:
        f.write(block[:left]); left -= len(block)
EOF
bytes=$(stat -c %s payload.edi)
# The other limit: the receiver's durable write (a plain file is fsynced once, a secured one
# once too, after it was opened).
disk=$(dd if=/dev/zero of=ddtest bs=1M count=256 conv=fsync 2>&1 | awk '/copied/ { v = $(NF-1); u = $NF; if (u == "GB/s") v *= 1000; printf "%.0f", v }')
rm -f ddtest
echo "durable write (dd conv=fsync) in $work: ${disk} MB/s"

run() { # name, extra send options
    local name="$1"; shift
    rm -rf sdata/inbox cdata
    local t0 t1
    t0=$(date +%s.%N)
    "$OFTP_BIN" send ${OFTP_BENCH_VERBOSE:+-v} --config client.toml --partner server "$@" payload.edi > send.out 2>&1 \
        || { cat send.out; echo "run $name failed"; exit 1; }
    t1=$(date +%s.%N)
    grep -q delivered send.out || { cat send.out; exit 1; }
    cmp -s payload.edi sdata/inbox/client/PAYLOAD.EDI || { echo "run $name: content differs"; exit 1; }
    python3 - "$name" "$bytes" "$t0" "$t1" "$limit" "$disk" <<'EOF'
import sys
name, n, t0, t1, limit, disk = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
mbs = n / 1e6 / (t1 - t0)
print(f"{name:42s} {mbs:8.1f} MB/s   ratio to crypto limit {mbs / limit:5.2f}   to durable write {mbs / disk:5.2f}")
EOF
}

echo "file: $MIB MiB; end to end, durable on both sides"
run "plain (no file security)"
run "suite 04 signed+encrypted" --security signed-encrypted --cipher-suite 4
run "suite 04 signed+compressed+encrypted" --security signed-encrypted --cipher-suite 4 --compress-file
run "suite 04 signed+encrypted over TLS" --security signed-encrypted --cipher-suite 4 \
    --tls --host 127.0.0.1 --port "$tls_port" --tls-pin server.pem
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
echo "server peak RSS: $(( rss / 1024 )) MiB (target < 64 MiB)"
