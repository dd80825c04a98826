#!/usr/bin/env bash
# Issue 20: what the dashboard costs the proxy. One Moat (ghost preset) in front of an nginx
# upstream; wrk saturates GET / four times, in the order closed, open, open, closed, where
# "open" is a logged-in browser's load on the admin listener: the live page every 2 s and the
# who page every 3 s (as their refresh asks), plus /api/series?range=month every 2 s (a second
# tab). Prints requests/s each way and the ratio open/closed (the target: >= 0.98).
# Then the series file: 30 days of minutes written (43,200 rows) and its size on disk.
# Everything listens on 127.0.0.1; every load run is bounded in time.
set -euo pipefail
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
DUR="${DUR:-10}"
CONNS="${CONNS:-64}"
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  echo "needs wrk and nginx: apt-get install -y wrk nginx-light" >&2; exit 1; }
cargo build --release -q -p moat
cargo build --release -q -p moat-web --example series_size
MOAT="$CARGO_TARGET_DIR/release/moat"
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
UP=18191; MO=18193; ADMIN=18194
mkdir -p "$work/logs"
cat >"$work/upstream.conf" <<NGINX
worker_processes 1;
pid $work/upstream.pid;
error_log $work/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } }
}
NGINX
nginx -p "$work" -c "$work/upstream.conf" -e "$work/logs/upstream-error.log"
cat >"$work/moat.toml" <<TOML
presets = ["ghost"]
[server]
listen = ["127.0.0.1:$MO"]
upstream = "http://127.0.0.1:$UP"
state_dir = "$work/state"
[admin]
listen = "127.0.0.1:$ADMIN"
token = "bench-token-0123456789"
TOML
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/logs/moat.log" 2>&1 & echo $! >"$work/moat.pid"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$MO/" >/dev/null && break; sleep 0.1; done
jar="$work/cookies"
curl -sf -c "$jar" -o /dev/null -d token=bench-token-0123456789 "http://127.0.0.1:$ADMIN/dashboard/login"
browser() {  # until killed: what an open dashboard asks for
  local n=0
  while :; do
    curl -sf -b "$jar" -o /dev/null "http://127.0.0.1:$ADMIN/dashboard/live"
    curl -sf -H "Authorization: Bearer bench-token-0123456789" -o /dev/null \
      "http://127.0.0.1:$ADMIN/api/series?range=month"
    if (( n % 3 == 0 )); then curl -sf -b "$jar" -o /dev/null "http://127.0.0.1:$ADMIN/dashboard/who"; fi
    n=$((n + 1)); sleep 2
  done
}
rps() { wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$MO/" | awk '/Requests\/sec/ {print $2}'; }
closed=(); open=()
closed+=("$(rps)")
browser & bpid=$!; echo $bpid >"$work/browser.pid"
open+=("$(rps)"); open+=("$(rps)")
kill $bpid; wait $bpid 2>/dev/null || true; rm -f "$work/browser.pid"
closed+=("$(rps)")
# The pages answered while under load (a logged-in session that works).
curl -sf -b "$jar" "http://127.0.0.1:$ADMIN/dashboard/live" | grep -q 'id="live-chart"\|id=live-chart'
python3 - "${closed[@]}" "${open[@]}" <<'PY'
import sys
c, o = [float(x) for x in sys.argv[1:3]], [float(x) for x in sys.argv[3:5]]
mc, mo = sum(c) / 2, sum(o) / 2
print(f"dashboard closed: {c[0]:.0f}, {c[1]:.0f} req/s (mean {mc:.0f})")
print(f"dashboard open:   {o[0]:.0f}, {o[1]:.0f} req/s (mean {mo:.0f})")
print(f"open/closed: {mo / mc:.3f}")
PY
"$CARGO_TARGET_DIR/release/examples/series_size" "$work/series.sqlite"
