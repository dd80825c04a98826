#!/usr/bin/env bash
# Issue 2 memory benchmark: a flood of requests from random IPv6 client addresses (sent as
# X-Forwarded-For, which this Moat trusts from loopback, because only ::1 can be bound locally),
# with a per-address rate limit so every address is tracked, next to 50 legitimate requests a
# second whose latency is measured. Samples Moat's RSS every 10 s. SECONDS_TOTAL=600 is the
# 10-minute run from the issue; the default is shorter. All traffic stays on 127.0.0.1.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
SECS="${SECONDS_TOTAL:-120}"
command -v nginx >/dev/null || { echo "needs nginx: apt-get install -y nginx-light" >&2; exit 1; }
cargo build --release -q -p moat -p moat-loadgen
MOAT="$CARGO_TARGET_DIR/release/moat"; LOADGEN="$CARGO_TARGET_DIR/release/moat-loadgen"
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
UP=18191; MO=18193; ADMIN=18194
mkdir -p "$work/logs"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
NGINX
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log"
cat >"$work/moat.toml" <<TOML
presets = ["ghost"]
[server]
listen = ["127.0.0.1:$MO"]
upstream = "http://127.0.0.1:$UP"
state_dir = "$work/state"
trusted_proxies = ["127.0.0.1/32"]
client_ip_headers = ["x-forwarded-for"]
[admin]
listen = "127.0.0.1:$ADMIN"
token = "bench-token-0123456789"

[[rate_limit]]
id = "per-address"
key = "ip"
requests = 600
period = "1m"
action = "block"
status = 429

[[rate_limit]]
id = "per-network"
key = "prefix"
requests = 6000
period = "1m"
action = "block"
status = 429
TOML
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/logs/moat.log" 2>&1 & echo $! >"$work/moat.pid"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$MO/" >/dev/null && break; sleep 0.1; done
pid=$(cat "$work/moat.pid")
echo "idle RSS: $(awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status) MB"
"$LOADGEN" flood --url "http://127.0.0.1:$MO/" --seconds "$SECS" --concurrency 64 --legit-rate 50 --pid "$pid" >"$work/result.json"
python3 - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['flood_requests']} requests from random IPv6 addresses in {r['seconds']} s "
      f"({r['flood_requests'] / r['seconds']:.0f}/s)")
print("RSS over time (MB):", " ".join(f"{s['t_s']}s={s['rss_mb']}" for s in r["rss_samples"]))
print(f"legitimate requests: {r['legit_requests']}, p50 {r['legit_p50_ms']:.2f} ms, p99 {r['legit_p99_ms']:.2f} ms")
PY
curl -s -H "Authorization: Bearer bench-token-0123456789" "http://127.0.0.1:$ADMIN/metrics" | grep -E '^moat_ratelimit_keys'
