#!/usr/bin/env bash
# The HTTP face of `oftp serve` under load (not part of CI; #12 "Performance").
#
# (a) First pages with 100,000 transfers: the journal is filled through the journal API
#     (crates/oftp-gateway/examples/fill_queue.rs, as scripts/bench-control.sh does), a daemon
#     serves it, and each request is timed 20 times over one keep-alive connection (median and
#     worst against the 100 ms limit): the API's first page of transfers
#     (`GET /api/v1/transfers?limit=50`), the console's first page (`GET /` and then the first
#     API page it loads, timed together, with the session cookie of a log-in by the token as
#     a browser has it), and `GET /metrics` (which reads the queue's depth
#     and the open alerts at every scrape). A path the build does not serve yet is reported
#     with its status instead of a time.
# (b) A transfer at full speed: daemon A sends files of OFTP_BENCH_MIB MiB (default 1024) to
#     daemon B (both on 127.0.0.1, data directories on /dev/shm when there is one), alternately
#     with the API idle and with 50 clients polling A's `GET /api/v1/status` every second, each
#     over its own keep-alive connection (OFTP_BENCH_ROUNDS rounds of both, default 3).
#     Throughput is the file's size over the time from its rename into A's outbox until A's
#     journal has it delivered; the ratio polled / idle has the limit 0.95. A's CPU is read
#     from /proc/<pid>/stat (utime + stime) over each transfer: the extra CPU of the polled
#     runs over the idle ones, as % of one core over the polled run's time, has the limit 5 %.
#     Next to it, the polling alone: A's CPU over 20 s of 50 clients with nothing to send.
#
# Uses the release build unless OFTP_BIN names a binary (`cargo build --release -p oftp-cli`
# first, with the same CARGO_TARGET_DIR); the filler is the debug example. Needs python3.
#
#   scripts/bench-http.sh
#   OFTP_BENCH_ROWS=10000 OFTP_BENCH_MIB=256 OFTP_BENCH_ROUNDS=1 scripts/bench-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${OFTP_BENCH_ROWS:-100000}"
mib="${OFTP_BENCH_MIB:-1024}"
rounds="${OFTP_BENCH_ROUNDS:-3}"
target="${CARGO_TARGET_DIR:-target}"
cargo build -q -p oftp-gateway --example fill_queue
fill="$(cd "$target/debug/examples" && pwd)/fill_queue"
if [ -z "${OFTP_BIN:-}" ]; then
    cargo build -q --release -p oftp-cli
    OFTP_BIN="$(cd "$target/release" && pwd)/oftp"
fi
base="${TMPDIR:-/tmp}"
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
work="$(mktemp -d "$base/bench-http.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts `oftp serve --config $1` (HTTP on any free port) and waits for its admin token; sets
# $started (pid), $http (host:port) and $token.
start() {
    OFTP_HTTP_LISTEN=127.0.0.1:0 "$OFTP_BIN" serve --config "$1" >"$1.out" 2>"$1.log" &
    started=$!
    pids+=("$started")
    for _ in $(seq 600); do
        if grep -q '^    ' "$1.out" 2>/dev/null; then
            http="$(sed -n 's|^console and API on http://\(.*\)/$|\1|p' "$1.out")"
            token="$(sed -n 's/^    //p' "$1.out" | head -1)"
            return 0
        fi
        kill -0 "$started" 2>/dev/null || { cat "$1.log"; exit 1; }
        sleep 0.1
    done
    echo "oftp serve --config $1 did not start" >&2
    exit 1
}

echo "== (a) first pages with $rows transfers"
pf="$(port)"
printf '[local]\nssid = "O0013BENCH"\npassword = "PW"\n\n[server]\nlisten = "127.0.0.1:%s"\ndata_dir = "fill"\n\n[[partners]]\nname = "p0000"\nssid = "P0000"\npassword = "PW"\n' "$pf" >fill.toml
t0=$(date +%s)
"$fill" fill 1 "$rows"
echo "filled in $(( $(date +%s) - t0 )) s"
start fill.toml
python3 - "$http" "$token" <<'PY'
import http.client, statistics, sys, time
host, token = sys.argv[1], sys.argv[2]
LIMIT_MS, RUNS = 100.0, 20
conn = http.client.HTTPConnection(host, timeout=30)
auth = {"Authorization": f"Bearer {token}"}

def log_in():
    """The console's session, as a browser gets it: POST /login with the token."""
    conn.request("POST", "/login", body=f"token={token}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    cookie = (r.getheader("Set-Cookie") or "").split(";")[0]
    if not cookie:
        sys.exit(f"console log-in failed: status {r.status}")
    return {"Cookie": cookie}

def timed(paths, headers=auth):
    def get(path):
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status
    status = [get(p) for p in paths]  # warm-up, and what the build serves
    if any(s != 200 for s in status):
        return None, status
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        for p in paths:
            get(p)
        times.append((time.perf_counter() - t) * 1000)
    return (statistics.median(times), max(times)), status

session = log_in()
for name, paths, headers in [
    ("API first page of transfers", ["/api/v1/transfers?limit=50"], auth),
    ("console first page (GET / + first API page, session cookie)",
     ["/", "/api/v1/transfers?limit=50"], session),
    ("GET /metrics", ["/metrics"], auth),
]:
    t, status = timed(paths, headers)
    if t is None:
        print(f"{name}: not served by this build (status {status})")
    else:
        print(f"{name}: median {t[0]:.1f} ms, worst {t[1]:.1f} ms = {t[0] / LIMIT_MS:.2f} of the 100 ms limit")
PY
kill "$started"; wait "$started" 2>/dev/null || true

echo "== (b) $mib MiB transfers, API idle and polled by 50 clients, $rounds round(s)"
pa="$(port)"; pb="$(port)"
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
EOF
cat >a.toml <<EOF
[local]
ssid = "O0013AAA"
password = "APW"
[server]
listen = "127.0.0.1:$pa"
data_dir = "a"
[gateway.outbox]
debounce_ms = 50
poll_interval_secs = 1
[[partners]]
name = "b"
ssid = "O0013BBB"
password = "BPW"
address = "127.0.0.1:$pb"
EOF
start b.toml
start a.toml
python3 - "$http" "$token" "$started" "$mib" "$rounds" <<'PY'
import http.client, os, sqlite3, sys, threading, time
host, token, pid, mib, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

def delivered():
    try:
        db = sqlite3.connect("a/oftp-journal.sqlite3", timeout=10)
        n = db.execute("SELECT count(*) FROM queue WHERE state = 'delivered'").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0

class Pollers:
    """50 clients, each GET /api/v1/status every second on its own keep-alive connection."""
    def __init__(self, n=50):
        self.stop = threading.Event()
        self.errors = 0
        self.requests = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, i):
        time.sleep(i / 50)  # spread over the second
        conn = http.client.HTTPConnection(host, timeout=30)
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                conn.request("GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
                r = conn.getresponse()
                r.read()
                self.requests += 1
                if r.status != 200:
                    self.errors += 1
            except OSError:
                self.errors += 1
                conn = http.client.HTTPConnection(host, timeout=30)
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join()

os.makedirs("a/outbox/b", exist_ok=True)
block = os.urandom(1 << 20)
count = 0

def transfer():
    """One file of `mib` MiB through A to B: (seconds, CPU seconds of A)."""
    global count
    count += 1
    name = f"a/outbox/b/f{count}.dat"
    with open(name + ".tmp", "wb") as f:
        for _ in range(mib):
            f.write(block)
    c0, t0 = cpu(), time.monotonic()
    os.rename(name + ".tmp", name)
    while delivered() < count:
        time.sleep(0.05)
    t1, c1 = time.monotonic(), cpu()
    for d in ("b/inbox/a",):
        for e in os.listdir(d):
            if not e.startswith("."):
                os.remove(os.path.join(d, e))
    return t1 - t0, c1 - c0

transfer()  # warm-up: first call, page cache
idle, polled = [], []
for r in range(rounds):
    idle.append(transfer())
    p = Pollers()
    time.sleep(2)  # every client connected and polling
    polled.append(transfer())
    p.end()
    print(f"round {r + 1}: idle {mib / idle[-1][0]:.0f} MiB/s ({idle[-1][1]:.2f} CPU s), "
          f"polled {mib / polled[-1][0]:.0f} MiB/s ({polled[-1][1]:.2f} CPU s), "
          f"{p.requests} status requests, {p.errors} errors")
mean = lambda xs: sum(xs) / len(xs)
t_idle, t_polled = mean([t for t, _ in idle]), mean([t for t, _ in polled])
c_idle, c_polled = mean([c for _, c in idle]), mean([c for _, c in polled])
ratio = t_idle / t_polled
extra = (c_polled - c_idle) / t_polled * 100
print(f"throughput polled / idle: {ratio:.3f} (limit >= 0.95)")
print(f"A's extra CPU while polled: {extra:.2f} % of one core (limit 5 %); "
      f"A's CPU idle {c_idle / t_idle * 100:.0f} %, polled {c_polled / t_polled * 100:.0f} % of one core")

p = Pollers()
time.sleep(2)
c0, t0 = cpu(), time.monotonic()
time.sleep(20)
c1, t1 = cpu(), time.monotonic()
p.end()
print(f"polling alone (50 clients, nothing to send): A's CPU {(c1 - c0) / (t1 - t0) * 100:.2f} % of one core "
      f"over {t1 - t0:.0f} s, {p.requests} requests, {p.errors} errors")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
