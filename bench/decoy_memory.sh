#!/usr/bin/env bash
# Issue 18: what delayed decoys cost. N (default 10,000) scripted POSTs held at once, each
# answered with a decoy that waits DELAY (default 20 s) the way a decoy waits as long as the
# app; prints Moat's RSS idle and while all N wait (target: the N cost <= 50 MB), and checks
# that every one got its decoy. IDLE=1 opens the N connections without sending anything, for
# what a connection itself costs. Clients come from 500 loopback addresses; everything listens
# on 127.0.0.1; the run is bounded by DELAY plus a minute.
set -euo pipefail
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
N="${N:-10000}"
DELAY="${DELAY:-20}"
ulimit -n "$(ulimit -Hn)"
if [[ -n ${MOAT_BIN:-} ]]; then MOAT=$(realpath "$MOAT_BIN"); else
  cargo build --release -q -p moat; MOAT="$CARGO_TARGET_DIR/release/moat"; fi
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
PORT=18291
cat >"$work/moat.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
upstream = "http://127.0.0.1:9"
state_dir = "$work/state"

[limits]
max_connections = $((N * 2))

[[decoy]]
id = "slow"
status = 201
body = "Created."
headers = [["X-Powered-By", "Express"], ["Date", ""], ["Content-Length", ""]]
delay = "${DELAY}s"

[[rule]]
id = "scripts"
expression = 'http.request.method eq "POST"'
action = "decoy"
decoy = "slow"
TOML
"$MOAT" run --config "$work/moat.toml" >"$work/moat.log" 2>&1 &
echo $! >"$work/moat.pid"
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" 2>/dev/null && break
  sleep 0.1
done
pid=$(cat "$work/moat.pid")
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
idle=$(rss)
python3 - "$PORT" "$N" "$DELAY" "$pid" "$idle" <<'PY'
import asyncio, os, sys, time
port, n, delay, pid, idle = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

body = b'{"email":"victim@example.org"}'
idle_only = os.environ.get("IDLE") == "1"

async def one(i):
    src = f"127.90.{i // 20 // 250}.{i // 20 % 250 + 1}"
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
    if idle_only:
        await asyncio.sleep(delay)
        w.close()
        return True
    w.write(b"POST /members/api/send-magic-link/ HTTP/1.1\r\nHost: x\r\nUser-Agent: python-requests/2.32\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), delay + 60)
    w.close()
    return head.startswith(b"HTTP/1.1 201")

async def main():
    t0 = time.monotonic()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    sent = time.monotonic() - t0
    await asyncio.sleep(max(1.0, delay / 4))
    peak = rss()
    ok = sum(await asyncio.gather(*tasks))
    took = time.monotonic() - t0
    print(f"{n} delayed decoys held at once ({delay:.0f} s each), all sent in {sent:.1f} s")
    print(f"Moat RSS: idle {idle / 1024:.1f} MB, with all {n} waiting {peak / 1024:.1f} MB "
          f"(+{(peak - idle) / 1024:.1f} MB, {(peak - idle) * 1024 / n / 1024:.1f} KB each)")
    print(f"answered with the decoy: {ok} of {n}, last after {took:.1f} s")
    assert ok == n, "some held requests did not get their decoy"

asyncio.run(main())
PY
