#!/usr/bin/env bash
# OFTP 2.0 security benchmark (not part of CI).
#
# 1. The physical limit on this machine: `openssl speed` for AES-256-CBC and SHA-256 (16 KiB
#    blocks, what the CMS layers process), and the slower of the two; also AES decryption, and
#    deflate/inflate at level 6 with the system zlib on the payload (python3).
# 2. A file (1 GiB by default) sent end to end by `oftp send` to a separate `oftp serve`:
#    signed + encrypted with suite 04 (AES-256-CBC, RSA, SHA-256), signed + compressed +
#    encrypted, and signed + encrypted over TLS. The sender signs/compresses/encrypts while it
#    sends, the receiver verifies/decompresses/decrypts while it receives; each run ends when
#    the opened file is durable (fsync, rename) and the EFPA is in.
# 3. The server's peak RSS (VmHWM) after all runs.
# Also prints the durable write speed of the data directory's disk (dd conv=fsync): a secured
# file is written twice on the receiving side (the received data, the opened file).
#
# Prints MB/s of user data, the ratio to the slowest primitive (target >= 0.7), the CPU time per
# MB (client + server), the ratio to the machine's bound for that run, and the peak RSS (target
# < 64 MiB). The bound: sender and receiver share this machine's cores, so at best they run at
# cores / (CPU per MB of the plain run + SHA-256 on both sides + AES encryption and decryption
# + deflate and inflate when compressing), each primitive at its speed measured above.
# Certificates are made with openssl in a temporary directory.
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
aes_dec=$(openssl speed -seconds 3 -bytes 16384 -decrypt -evp aes-256-cbc 2>/dev/null \
    | awk 'tolower($1) == "aes-256-cbc" { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }')
cores=$(nproc)

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
# Deflate at our level (6) on this payload, with the system zlib: the slowest primitive of a
# compressed run, and the compression ratio (AES then works on the compressed bytes only).
read -r zc zd zratio < <(python3 - <<'EOF'
import time, zlib
data = open("payload.edi", "rb").read(64 << 20)
t = time.perf_counter(); c = zlib.compress(data, 6); tc = time.perf_counter() - t
t = time.perf_counter(); zlib.decompress(c); td = time.perf_counter() - t
print(f"{len(data) / 1e6 / tc:.0f} {len(data) / 1e6 / td:.0f} {len(data) / len(c):.2f}")
EOF
)
echo "zlib level 6 (system zlib via python3) on this payload: deflate ${zc} MB/s, inflate ${zd} MB/s, ratio ${zratio}; AES-256-CBC decrypt ${aes_dec} MB/s; ${cores} cores"

# CPU seconds (user + system) of the server process so far.
server_cpu() { python3 -c 'import os, sys; f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$server_pid"; }

plain_cost=""   # CPU seconds per MB of the plain run (client + server): the transfer itself
run() { # name, kind (plain | sealed | compressed), extra send options
    local name="$1" kind="$2"; shift 2
    rm -rf sdata/inbox cdata
    local t0 t1 s0 s1
    s0=$(server_cpu)
    t0=$(date +%s.%N)
    python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=open("send.out", "w"), stderr=subprocess.STDOUT)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{u.ru_utime + u.ru_stime}\n")
sys.exit(r.returncode)' client.cpu "$OFTP_BIN" send ${OFTP_BENCH_VERBOSE:+-v} --config client.toml --partner server "$@" payload.edi \
        || { cat send.out; echo "run $name failed"; exit 1; }
    t1=$(date +%s.%N)
    s1=$(server_cpu)
    grep -q delivered send.out || { cat send.out; exit 1; }
    cmp -s payload.edi sdata/inbox/client/PAYLOAD.EDI || { echo "run $name: content differs"; exit 1; }
    local out
    out=$(python3 - "$name" "$kind" "$bytes" "$t0" "$t1" "$limit" "$disk" "$(cat client.cpu)" "$s0" "$s1" \
        "$sha" "$aes" "$aes_dec" "$zc" "$zd" "$zratio" "$cores" "$plain_cost" <<'EOF'
import sys
a = sys.argv[1:]
name, kind = a[0], a[1]
n = int(a[2])
t0, t1, limit, disk, ccpu, s0, s1 = map(float, a[3:10])
sha, aes, aes_dec, zc, zd, zratio, cores = map(float, a[10:17])
mb = n / 1e6
mbs = mb / (t1 - t0)
cpu = ccpu + s1 - s0
line = f"{name:38s} {mbs:7.1f} MB/s  to crypto limit {mbs / limit:4.2f}  to durable write {mbs / disk:4.2f}  CPU {cpu / mb * 1000:4.2f} ms/MB"
if kind == "plain":
    print(f"COST {cpu / mb}")
elif a[17]:
    # What sender and receiver must do per MB at least: the plain transfer, SHA-256 on both
    # sides, AES encrypt and decrypt (of the compressed bytes when compressing), deflate and
    # inflate; spread over all cores at best.
    shrink = zratio if kind == "compressed" else 1.0
    cost = float(a[17]) + 2 / sha + (1 / aes + 1 / aes_dec) / shrink
    if kind == "compressed":
        cost += 1 / zc + 1 / zd
    bound = cores / cost
    line += f"  to {int(cores)}-core bound ({bound:.0f} MB/s) {mbs / bound:4.2f}"
print(line)
EOF
)
    if [ "$kind" = plain ]; then plain_cost=$(printf '%s\n' "$out" | awk '/^COST/ { print $2 }'); fi
    printf '%s\n' "$out" | grep -v '^COST'
}

echo "file: $MIB MiB; end to end, durable on both sides"
run "plain (no file security)" plain
run "suite 04 signed+encrypted" sealed --security signed-encrypted --cipher-suite 4
run "suite 04 signed+compressed+encrypted" compressed --security signed-encrypted --cipher-suite 4 --compress-file
run "suite 04 signed+encrypted over TLS" sealed --security signed-encrypted --cipher-suite 4 \
    --tls --host 127.0.0.1 --port "$tls_port" --tls-pin server.pem
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
echo "server peak RSS: $(( rss / 1024 )) MiB (target < 64 MiB)"
