#!/usr/bin/env bash
# Issue 2 throughput and latency benchmark, one run, three paths to the same upstream:
#   direct  -> upstream (nginx serving a static 200)
#   nginx   -> proxy_pass with an upstream keep-alive pool -> upstream
#   moat    -> ghost preset + 100 extra rules -> upstream
# wrk measures saturation throughput; moat-loadgen then measures p99 at half of nginx's
# saturation rate (a fixed-rate run, which wrk cannot do). Prints the Moat/nginx ratios.
# Everything listens on 127.0.0.1; every load run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
DUR="${DUR:-10}"
CONNS="${CONNS:-64}"
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  echo "needs wrk and nginx: apt-get install -y wrk nginx-light" >&2; exit 1; }
cargo build --release -q -p moat -p moat-loadgen
MOAT="$CARGO_TARGET_DIR/release/moat"; LOADGEN="$CARGO_TARGET_DIR/release/moat-loadgen"
work=$(mktemp -d); trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null; rm -rf "$work"' EXIT
UP=18091; NG=18092; MO=18093; ADMIN=18094
mkdir -p "$work/logs"
# The upstream and the nginx proxy are separate nginx instances: in one instance the proxy's
# hop to the upstream would stay inside one worker's event loop, a shortcut Moat cannot take.
cat >"$work/upstream.conf" <<NGINX
worker_processes 1;
pid $work/upstream.pid;
error_log $work/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } }
}
NGINX
cat >"$work/proxy.conf" <<NGINX
worker_processes auto;
pid $work/proxy.pid;
error_log $work/logs/proxy-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
NGINX
nginx -p "$work" -c "$work/upstream.conf" -e "$work/logs/upstream-error.log"
nginx -p "$work" -c "$work/proxy.conf" -e "$work/logs/proxy-error.log"
# 100 extra rules that a real policy might hold; none matches GET /, so all are evaluated.
{
  for i in $(seq 1 100); do
    case $((i % 4)) in
      0) e="http.request.uri.path eq \"/private-$i\"" ;;
      1) e="http.request.method eq \"POST\" and starts_with(http.request.uri.path, \"/api/v$i/\")" ;;
      2) e="lower(http.user_agent) contains \"badbot-$i\"" ;;
      3) e="ip.src in {198.51.$i.0/24 2001:db8:$i::/48} and not ssl" ;;
    esac
    printf '[[rule]]\nid = "extra-%d"\nexpression = %s\naction = "block"\n\n' "$i" "'$e'"
  done
} >"$work/extra.toml"
cat >"$work/moat.toml" <<TOML
presets = ["ghost"]
rule_files = ["extra.toml"]
[server]
listen = ["127.0.0.1:$MO"]
upstream = "http://127.0.0.1:$UP"
state_dir = "$work/state"
[admin]
listen = "127.0.0.1:$ADMIN"
token = "bench-token-0123456789"
TOML
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/logs/moat.log" 2>&1 & echo $! >"$work/moat.pid"
for p in $UP $NG $MO; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
done
run_wrk() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$1/" ; }
# CPU time (user+system, in clock ticks) of the processes serving a path, to report the CPU
# each request costs: on 2 shared cores that decides throughput.
ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
pids_of() {
  case $1 in
    direct) pgrep -P "$(cat "$work/upstream.pid")" ;;
    nginx) pgrep -P "$(cat "$work/proxy.pid")" ;;
    moat) cat "$work/moat.pid" ;;
  esac
}
HZ=$(getconf CLK_TCK)
declare -A RPS P50 P99 CPU
for name in direct nginx moat; do
  case $name in direct) p=$UP;; nginx) p=$NG;; moat) p=$MO;; esac
  pids=$(pids_of $name)
  t0=$(ticks $pids)
  out=$(run_wrk $p)
  t1=$(ticks $pids)
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$name]=$(awk -v t=$((t1 - t0)) -v n="$total" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  RPS[$name]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  P50[$name]=$(awk '$1=="50%" {print $2}' <<<"$out")
  P99[$name]=$(awk '$1=="99%" {print $2}' <<<"$out")
done
half=$(awk -v r="${RPS[nginx]}" 'BEGIN {printf "%d", r/2}')
declare -A HP50 HP99
for name in direct nginx moat; do
  case $name in direct) p=$UP;; nginx) p=$NG;; moat) p=$MO;; esac
  j=$("$LOADGEN" rate --url "http://127.0.0.1:$p/" --rate "$half" --seconds "$DUR" --connections "$CONNS")
  HP50[$name]=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["p50_ms"])' "$j")
  HP99[$name]=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["p99_ms"])' "$j")
done
echo
echo "wrk -t1 -c$CONNS -d${DUR}s (saturation), then a fixed $half req/s (half of nginx's saturation)"
printf '%-8s %12s %10s %10s %14s %14s %16s\n' path "req/s" "wrk p50" "wrk p99" "p50@half ms" "p99@half ms" "CPU us/request"
for name in direct nginx moat; do
  printf '%-8s %12s %10s %10s %14s %14s %16s\n' $name "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${HP50[$name]}" "${HP99[$name]}" "${CPU[$name]}"
done
echo "(CPU us/request: the serving processes only; for direct that is the upstream itself)"
awk -v m="${RPS[moat]}" -v n="${RPS[nginx]}" 'BEGIN {printf "\nMoat/nginx throughput ratio: %.2fx\n", m/n}'
awk -v m="${HP99[moat]}" -v d="${HP99[direct]}" 'BEGIN {printf "Moat p99 added over direct at half saturation: %.3f ms\n", m-d}'
