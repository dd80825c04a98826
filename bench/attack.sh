#!/usr/bin/env bash
# Issue 15: the path users hit under attack. Scripted POSTs to the ghost preset's protected
# route (`/members/api/send-magic-link/`, user agent python-requests, a JSON body naming a
# victim), as fast as wrk sends them, against:
#   nginx -> the blog owner's Cloudflare rule as nginx writes it
#            (`if ($http_user_agent ~* python) { return 201 "Created."; }`), else proxy_pass
#   moat  -> `--preset ghost`, logging at its default level (info, JSON, to a file: the
#            bounded decision log is part of what is measured)
# Both in one run, in the order nginx, Moat, Moat, nginx (a steady drift of this shared machine
# hits both alike), each figure the mean of its two runs. Prints requests/s, the serving
# processes' CPU per request, the log bytes Moat wrote, and the Moat/nginx ratio.
# MOAT_BIN=path measures another build (the static one: MOAT_BIN=$(scripts/build-static.sh)).
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
if [[ -n ${MOAT_BIN:-} ]]; then MOAT=$(realpath "$MOAT_BIN"); else
  cargo build --release -q -p moat; MOAT="$CARGO_TARGET_DIR/release/moat"; fi
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
UP=18191; NG=18192; MO=18193; ADMIN=18194
mkdir -p "$work/logs"; chmod 755 "$work"
cat >"$work/upstream.conf" <<NGINX
worker_processes 1;
pid $work/upstream.pid;
error_log $work/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 201 "{}"; } }
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
      if (\$http_user_agent ~* python) { return 201 "Created."; }
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
# The ghost preset's decoys wait as long as Ghost (300 ms until genuine answers are timed):
# each attacker connection then gets about three answers a second, and wrk would measure that
# wait. By default the preset is loaded as a rule file without it, so this measures what a
# decoy costs Moat; DECOY_WAIT=1 keeps the wait (and prints what it does to the attack).
if [[ ${DECOY_WAIT:-0} == 1 ]]; then policy='presets = ["ghost"]'; else
  sed '/^delay = /d' presets/ghost.toml >"$work/ghost.toml"; policy="rule_files = [\"$work/ghost.toml\"]"; fi
cat >"$work/moat.toml" <<TOML
$policy
[server]
listen = ["127.0.0.1:$MO"]
upstream = "http://127.0.0.1:$UP"
state_dir = "$work/state"
[admin]
listen = "127.0.0.1:$ADMIN"
token = "bench-token-0123456789"
TOML
cat >"$work/post.lua" <<'LUA'
-- A victim's address per request, as a script walking a stolen list sends them.
local n = 0
request = function()
  n = n + 1
  local body = '{"email":"victim' .. n .. '@example.com","emailType":"signup"}'
  return wrk.format("POST", "/members/api/send-magic-link/", {
    ["User-Agent"] = "python-requests/2.32.3",
    ["Content-Type"] = "application/json",
    ["Accept"] = "*/*",
  }, body)
end
LUA
nginx -p "$work" -c "$work/upstream.conf" -e "$work/logs/upstream-error.log"
nginx -p "$work" -c "$work/proxy.conf" -e "$work/logs/proxy-error.log"
"$MOAT" run --config "$work/moat.toml" >"$work/logs/moat.log" 2>&1 & echo $! >"$work/moat.pid"
for p in $UP $NG $MO; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
# The answers must be the decoy on both before anything is timed.
for p in $NG $MO; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -A python-requests/2.32.3 -H 'Content-Type: application/json' \
    -d '{"email":"a@example.com"}' "http://127.0.0.1:$p/members/api/send-magic-link/")
  [[ $code == 201 ]] || { echo "port $p answered $code to a scripted send, not 201" >&2; exit 1; }
done
ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
pids_of() { case $1 in nginx) pgrep -P "$(cat "$work/proxy.pid")" ;; moat) cat "$work/moat.pid" ;; esac; }
HZ=$(getconf CLK_TCK)
declare -A RPS CPU LOG
measure() {
  local name=$1 p pids t0 t1 out total l0
  case $name in nginx) p=$NG;; moat) p=$MO;; esac
  pids=$(pids_of "$name")
  l0=$(stat -c %s "$work/logs/moat.log")
  t0=$(ticks $pids)
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$work/post.lua" "http://127.0.0.1:$p/")
  t1=$(ticks $pids)
  if grep -q "Non-2xx" <<<"$out"; then echo "$name answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$name]=$(awk -v s="${CPU[$name]:-0}" -v t=$((t1 - t0)) -v n="$total" -v hz="$HZ" 'BEGIN {print s + t / hz * 1e6 / n}')
  RPS[$name]=$(awk -v s="${RPS[$name]:-0}" -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" 'BEGIN {print s + r}')
  LOG[$name]=$(( ${LOG[$name]:-0} + $(stat -c %s "$work/logs/moat.log") - l0 ))
}
for name in nginx moat moat nginx; do measure $name; done
echo
echo "wrk -t1 -c$CONNS -d${DUR}s -s post.lua: scripted POSTs to /members/api/send-magic-link/"
echo "(each figure the mean of two runs, in the order nginx, moat, moat, nginx)"
printf '%-8s %12s %16s %22s\n' path "req/s" "CPU us/request" "log bytes per run"
for name in nginx moat; do
  printf '%-8s %12.0f %16.1f %22d\n' $name "$(awk -v s="${RPS[$name]}" 'BEGIN {print s/2}')" \
    "$(awk -v s="${CPU[$name]}" 'BEGIN {print s/2}')" $(( ${LOG[$name]} / 2 ))
done
awk -v m="${RPS[moat]}" -v n="${RPS[nginx]}" 'BEGIN {printf "\nMoat/nginx throughput ratio on the attack path: %.2fx\n", m/n}'
