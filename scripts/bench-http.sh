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
#     and the open alerts at every scrape) and `GET /api/v1/status` (the same, what (b)'s
#     clients poll). A path the build does not serve yet is reported
#     with its status instead of a time.
# (b) A transfer at full speed: daemon A sends files of OFTP_BENCH_MIB MiB (default 1024) to
#     daemon B (both on 127.0.0.1, data directories on /dev/shm when there is one), in pairs of
#     one transfer with the API idle and one with 50 clients polling A's `GET /api/v1/status`
#     every second, each over its own keep-alive connection (OFTP_BENCH_ROUNDS pairs, default
#     6, the order within a pair alternated). The clients run in a process of their own at
#     `nice 19`: they stand for clients on other machines, and on 2 cores their own CPU would
#     otherwise be taken from the two daemons (it is printed). Throughput is the file's size
#     over the time from its rename into A's outbox until A's journal has it delivered; the
#     copies a transfer leaves (A's queue, B's inbox) are removed after it. The ratio polled /
#     idle of each pair, median over the pairs, has the limit 0.95. A's CPU is read from
#     /proc/<pid>/stat (utime + stime) over each transfer: the extra CPU of the polled one over
#     the idle one, as % of one core over the polled one's time, median over the pairs, has the
#     limit 5 %. Next to it, the polling alone: A's CPU over 20 s of 50 clients with nothing to
#     send.
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
rounds="${OFTP_BENCH_ROUNDS:-6}"
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
    ("GET /api/v1/status (what the 50 clients of (b) poll)", ["/api/v1/status"], auth),
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
cat >pollers.py <<'PY'
"""50 API clients, each GET /api/v1/status every second on its own keep-alive connection, until
SIGTERM; then prints "<requests> <errors> <CPU seconds of this process>"."""
import http.client, os, signal, sys, threading, time
host, token = sys.argv[1], sys.argv[2]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
count = {"requests": 0, "errors": 0}

def run(i):
    time.sleep(i / 50)  # spread over the second
    conn = http.client.HTTPConnection(host, timeout=30)
    while not stop.is_set():
        t = time.monotonic()
        try:
            conn.request("GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
            r = conn.getresponse()
            r.read()
            count["requests"] += 1
            if r.status != 200:
                count["errors"] += 1
        except OSError:
            count["errors"] += 1
            conn = http.client.HTTPConnection(host, timeout=30)
        stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
for t in threads:
    t.start()
while not stop.is_set():
    stop.wait(0.2)
for t in threads:
    t.join()
cpu = os.times()
print(count["requests"], count["errors"], f"{cpu.user + cpu.system:.2f}", flush=True)
PY
python3 - "$http" "$token" "$started" "$mib" "$rounds" <<'PY'
import os, signal, sqlite3, shutil, statistics, subprocess, sys, time
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
    """The 50 clients in a process of their own at the lowest priority (`nice 19`): on this
    2-core machine they stand for clients on other machines, so their own CPU should not
    take the transfer's."""
    def __init__(self):
        self.proc = subprocess.Popen(
            ["nice", "-n", "19", sys.executable, "pollers.py", host, token],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # every client connected and polling

    def end(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        requests, errors, cpu_s = out.split()
        return int(requests), int(errors), float(cpu_s)

os.makedirs("a/outbox/b", exist_ok=True)
block = os.urandom(1 << 20)
count = 0

def transfer():
    """One file of `mib` MiB through A to B: (seconds, CPU seconds of A). The copies it leaves
    (A's queue, B's inbox) are removed after, so /dev/shm does not fill round after round."""
    global count
    count += 1
    name = f"a/outbox/b/f{count}.dat"
    with open(name + ".tmp", "wb") as f:
        for _ in range(mib):
            f.write(block)
    c0, t0 = cpu(), time.monotonic()
    os.rename(name + ".tmp", name)
    while delivered() < count:
        time.sleep(0.02)
    t1, c1 = time.monotonic(), cpu()
    for d in ("b/inbox/a", "a/outbox/b/.queue"):
        for e in os.listdir(d):
            path = os.path.join(d, e)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif not e.startswith("."):
                os.remove(path)
    return t1 - t0, c1 - c0

def polled_transfer():
    p = Pollers()
    t = transfer()
    return t, p.end()

transfer()  # warm-up: first call, page cache
ratios, extras, idle_rates, polled_rates = [], [], [], []
for r in range(rounds):
    # Pairs in alternating order (idle first, then polled first), so a drift of the machine's
    # speed during a run favours neither side.
    if r % 2 == 0:
        idle = transfer()
        polled, (requests, errors, client_cpu) = polled_transfer()
    else:
        polled, (requests, errors, client_cpu) = polled_transfer()
        idle = transfer()
    ratios.append(idle[0] / polled[0])
    extras.append((polled[1] - idle[1]) / polled[0] * 100)
    idle_rates.append(mib / idle[0])
    polled_rates.append(mib / polled[0])
    print(f"pair {r + 1}: idle {mib / idle[0]:.0f} MiB/s (A {idle[1]:.2f} CPU s), "
          f"polled {mib / polled[0]:.0f} MiB/s (A {polled[1]:.2f} CPU s): ratio {ratios[-1]:.3f}, "
          f"A's extra CPU {extras[-1]:.1f} % of one core; {requests} status requests, {errors} errors, "
          f"the clients' own CPU {client_cpu:.2f} s", flush=True)
med = statistics.median
print(f"throughput idle: median {med(idle_rates):.0f} MiB/s ({min(idle_rates):.0f}-{max(idle_rates):.0f}); "
      f"polled: median {med(polled_rates):.0f} MiB/s ({min(polled_rates):.0f}-{max(polled_rates):.0f})")
print(f"throughput polled / idle, median of the {rounds} pairs: {med(ratios):.3f} "
      f"({min(ratios):.3f}-{max(ratios):.3f}; limit >= 0.95)")
print(f"A's extra CPU while polled, median of the pairs: {med(extras):.2f} % of one core "
      f"({min(extras):.2f} to {max(extras):.2f}; limit 5 %)")

p = Pollers()
c0, t0 = cpu(), time.monotonic()
time.sleep(20)
c1, t1 = cpu(), time.monotonic()
requests, errors, client_cpu = p.end()
print(f"polling alone (50 clients, nothing to send): A's CPU {(c1 - c0) / (t1 - t0) * 100:.2f} % of one core "
      f"over {t1 - t0:.0f} s, {requests} requests, {errors} errors (the clients' own CPU {client_cpu:.2f} s)")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
