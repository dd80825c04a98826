#!/usr/bin/env bash
# Issue 2 throughput and latency benchmark, one run, three paths to the same upstream:
#   direct  -> upstream (nginx serving a static 200)
#   nginx   -> proxy_pass with an upstream keep-alive pool -> upstream
#   moat    -> ghost preset + 100 extra rules -> upstream
# wrk measures saturation throughput (nginx and Moat twice each, in the order nginx, Moat, Moat,
# nginx, so a steady drift of this shared machine hits both alike); moat-loadgen then measures
# p99 at half of nginx's saturation rate (a fixed-rate run, which wrk cannot do). Prints the
# Moat/nginx ratios.
# Then, for the browser proof (issue 3), an 8 KiB HTML page through two Moat instances with the
# same policy, one injecting the page script and one not, and their ratio.
# MOAT_BIN2=path (issue 15) runs a second Moat binary (the static build: MOAT_BIN2=$(scripts/
# build-static.sh)) with the same policy on its own port, measures it in the same run (order
# nginx, moat, moat2, moat2, moat, nginx) and prints its throughput and CPU against the first's,
# and both binaries' size and idle RSS.
# Everything listens on 127.0.0.1; every load run is bounded in time.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
DUR="${DUR:-10}"
CONNS="${CONNS:-64}"
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  echo "needs wrk and nginx: apt-get install -y wrk nginx-light" >&2; exit 1; }
cargo build --release -q -p moat -p moat-loadgen
MOAT="$CARGO_TARGET_DIR/release/moat"; LOADGEN="$CARGO_TARGET_DIR/release/moat-loadgen"
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
UP=18091; NG=18092; MO=18093; ADMIN=18094; MOI=18095; ADMIN2=18096; MO2=18097; ADMIN3=18098
MOAT2="${MOAT_BIN2:-}"
if [[ -n $MOAT2 ]]; then
  [[ -x $MOAT2 ]] || { echo "MOAT_BIN2=$MOAT2 is not an executable" >&2; exit 1; }
  MOAT2=$(realpath "$MOAT2")
fi
mkdir -p "$work/www"; chmod 755 "$work" "$work/www"  # nginx workers (www-data) read the page
python3 - "$work/www/page.html" <<'PY'
import sys
para = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8 + "</p>\n"
head = "<!doctype html><html lang=en><head><meta charset=utf-8><title>A post</title>"
head += "<link rel=stylesheet href=/assets/app.css></head><body><article>"
body = head + para * ((8192 - len(head)) // len(para)) + "</article></body></html>\n"
open(sys.argv[1], "w").write(body)
PY
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
  # nginx closes a keep-alive connection after 1000 requests by default; the load generator
  # does not reconnect, so every later request on it would fail and drop out of the latency.
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    location / { return 200 "hello from the upstream\n"; }
    location /www/ { root $work; default_type text/html; etag off; }
  }
}
NGINX
cat >"$work/proxy.conf" <<NGINX
worker_processes auto;
pid $work/proxy.pid;
error_log $work/logs/proxy-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 256; keepalive_requests 1000000; }
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
# The same policy with the page script off, for the injection comparison.
sed -e "s/127.0.0.1:$MO/127.0.0.1:$MOI/; s/127.0.0.1:$ADMIN/127.0.0.1:$ADMIN2/; s#$work/state#$work/state2#" \
  "$work/moat.toml" >"$work/moat-noinject.toml"
printf '[proof]\ninject = []\n' >>"$work/moat-noinject.toml"
RUST_LOG=warn "$MOAT" run --config "$work/moat.toml" >"$work/logs/moat.log" 2>&1 & echo $! >"$work/moat.pid"
RUST_LOG=warn "$MOAT" run --config "$work/moat-noinject.toml" >"$work/logs/moat2.log" 2>&1 & echo $! >"$work/moat2.pid"
PORTS="$UP $NG $MO $MOI"
PATHS="direct nginx moat"
if [[ -n $MOAT2 ]]; then
  # The same policy as `moat`, served by the second binary.
  sed -e "s/127.0.0.1:$MO/127.0.0.1:$MO2/; s/127.0.0.1:$ADMIN/127.0.0.1:$ADMIN3/; s#$work/state#$work/state3#" \
    "$work/moat.toml" >"$work/moat-bin2.toml"
  RUST_LOG=warn "$MOAT2" run --config "$work/moat-bin2.toml" >"$work/logs/moat-bin2.log" 2>&1 & echo $! >"$work/moat3.pid"
  PORTS="$PORTS $MO2"
  PATHS="$PATHS moat2"
fi
for p in $PORTS; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
done
# Idle memory, after one request each: the ghost preset plus the 100 extra rules loaded.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
IDLE_RSS1=$(rss_kb "$(cat "$work/moat.pid")")
[[ -z $MOAT2 ]] || IDLE_RSS2=$(rss_kb "$(cat "$work/moat3.pid")")
run_wrk() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$1/" ; }
# CPU time (user+system, in clock ticks) of the processes serving a path, to report the CPU
# each request costs: on 2 shared cores that decides throughput.
ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
pids_of() {
  case $1 in
    direct) pgrep -P "$(cat "$work/upstream.pid")" ;;
    nginx) pgrep -P "$(cat "$work/proxy.pid")" ;;
    moat) cat "$work/moat.pid" ;;
    moat2) cat "$work/moat3.pid" ;;
  esac
}
HZ=$(getconf CLK_TCK)
declare -A RPS P50 P99 CPU
# A percentile of wrk's latency distribution (`50%`, `99%`) in milliseconds; wrk prints it
# with a unit (us, ms or s).
wrk_ms() {
  awk -v p="$1" '$1 == p {x = $2; print x ~ /us$/ ? x / 1000 : x ~ /ms$/ ? x + 0 : x * 1000}' <<<"$2"
}
# One saturation run of a path; adds its figures to the path's running sums.
measure() {
  local name=$1 p pids t0 t1 out total
  case $name in direct) p=$UP;; nginx) p=$NG;; moat) p=$MO;; moat2) p=$MO2;; esac
  pids=$(pids_of "$name")
  t0=$(ticks $pids)
  out=$(run_wrk $p)
  t1=$(ticks $pids)
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$name]=$(awk -v s="${CPU[$name]:-0}" -v t=$((t1 - t0)) -v n="$total" -v hz="$HZ" 'BEGIN {print s + t / hz * 1e6 / n}')
  RPS[$name]=$(awk -v s="${RPS[$name]:-0}" -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" 'BEGIN {print s + r}')
  P50[$name]=$(awk -v s="${P50[$name]:-0}" -v l="$(wrk_ms 50% "$out")" 'BEGIN {print s + l}')
  P99[$name]=$(awk -v s="${P99[$name]:-0}" -v l="$(wrk_ms 99% "$out")" 'BEGIN {print s + l}')
}
# nginx and Moat in the order nginx, Moat, Moat, nginx, and each figure the mean of its two runs:
# the machine drifts over a run of the script, and this order cancels a steady drift.
# With a second binary: nginx, moat, moat2, moat2, moat, nginx (symmetric, so the same holds).
measure direct
if [[ -n $MOAT2 ]]; then ORDER="nginx moat moat2 moat2 moat nginx"; else ORDER="nginx moat moat nginx"; fi
for name in $ORDER; do measure $name; done
for name in ${PATHS#direct }; do
  for v in RPS P50 P99 CPU; do
    declare -n a=$v
    a[$name]=$(awk -v s="${a[$name]}" 'BEGIN {print s / 2}')
  done
done
unset -n a
half=$(awk -v r="${RPS[nginx]}" 'BEGIN {printf "%d", r/2}')
declare -A HP50 HP99 WORST
for name in $PATHS; do
  case $name in direct) p=$UP;; nginx) p=$NG;; moat) p=$MO;; moat2) p=$MO2;; esac
  j=$("$LOADGEN" rate --url "http://127.0.0.1:$p/" --rate "$half" --seconds "$DUR" --connections "$CONNS")
  HP50[$name]=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["p50_ms"])' "$j")
  HP99[$name]=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["p99_ms"])' "$j")
  WORST[$name]=$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])["per_second"]
i = max(range(len(s)), key=lambda k: s[k]["p99_ms"])
print("%.1f ms (second %d)" % (s[i]["p99_ms"], i))' "$j")
  errs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$j")
  [[ $errs == 0 ]] || echo "warning: $errs failed requests on the $name path at the fixed rate" >&2
done
echo
echo "wrk -t1 -c$CONNS -d${DUR}s (saturation), then a fixed $half req/s (half of nginx's saturation)"
echo "(nginx and moat: the mean of two saturation runs each, in the order ${ORDER// /, })"
printf '%-8s %12s %12s %12s %14s %14s %16s\n' path "req/s" "wrk p50 ms" "wrk p99 ms" "p50@half ms" "p99@half ms" "CPU us/request"
for name in $PATHS; do
  printf '%-8s %12.0f %12.3f %12.3f %14s %14s %16.1f\n' $name "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${HP50[$name]}" "${HP99[$name]}" "${CPU[$name]}"
done
echo "(CPU us/request: the serving processes only; for direct that is the upstream itself)"
echo "worst one-second p99 at half load: direct ${WORST[direct]}, nginx ${WORST[nginx]}, moat ${WORST[moat]}"
awk -v m="${RPS[moat]}" -v n="${RPS[nginx]}" 'BEGIN {printf "\nMoat/nginx throughput ratio: %.2fx\n", m/n}'
awk -v m="${HP99[moat]}" -v d="${HP99[direct]}" 'BEGIN {printf "Moat p99 added over direct at half saturation: %.3f ms\n", m-d}'
if [[ -n $MOAT2 ]]; then
  echo
  echo "moat  = $MOAT ($(stat -c %s "$MOAT") bytes, idle RSS $IDLE_RSS1 kB)"
  echo "moat2 = $MOAT2 ($(stat -c %s "$MOAT2") bytes, idle RSS $IDLE_RSS2 kB)"
  awk -v a="${RPS[moat2]}" -v b="${RPS[moat]}" 'BEGIN {printf "moat2/moat throughput ratio: %.3fx\n", a/b}'
  awk -v a="${CPU[moat2]}" -v b="${CPU[moat]}" 'BEGIN {printf "moat2/moat CPU per request: %.3fx\n", a/b}'
  awk -v a="${HP99[moat2]}" -v b="${HP99[moat]}" 'BEGIN {printf "moat2 - moat p99 at half saturation: %.3f ms\n", a-b}'
fi

# Issue 3: the page script injected into HTML (same policy, same upstream page).
page_wrk() { wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Accept: text/html" "http://127.0.0.1:$1/www/page.html"; }
with=$(curl -s -H "Accept: text/html" "http://127.0.0.1:$MO/www/page.html"); without=$(curl -s -H "Accept: text/html" "http://127.0.0.1:$MOI/www/page.html")
[[ $with == *"/.moat/proof.js"* ]] || { echo "no injection on $MO: ${with:0:300}" >&2; exit 1; }
[[ $without != *"/.moat/proof.js"* ]] || { echo "injection on $MOI" >&2; exit 1; }
# Alternated, two rounds each, so drift on a shared machine hits both alike.
rps() { page_wrk "$1" | awk '/Requests\/sec/ {print $2}'; }
p1=$(rps $MOI); i1=$(rps $MO); i2=$(rps $MO); p2=$(rps $MOI)
plain=$(awk -v a="$p1" -v b="$p2" 'BEGIN {printf "%.0f", (a + b) / 2}')
injected=$(awk -v a="$i1" -v b="$i2" 'BEGIN {printf "%.0f", (a + b) / 2}')
echo
echo "8 KiB HTML page, wrk -t1 -c$CONNS -d${DUR}s, mean of two alternated runs each ($p1 $p2 / $i1 $i2):"
printf '%-22s %12s\n' "moat, no page script" "$plain" "moat, page script" "$injected"
awk -v i="$injected" -v p="$plain" 'BEGIN {printf "Injected/plain throughput ratio: %.2fx\n", i/p}'
