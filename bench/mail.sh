#!/usr/bin/env bash
# Mail shield throughput and latency: a mail-only Moat (Postfix policy + Dovecot auth policy),
# loaded closed-loop by moat-loadgen over persistent connections, one outstanding request per
# connection. Prints the measured figures next to the issue's targets:
#   Postfix policy  >= 50,000 req/s over 8 connections, p99 < 1 ms
#   Dovecot policy  >= 20,000 req/s, p99 < 2 ms
# and the CPU time the Moat process spent per request (user+system from /proc/PID/stat).
# The load generator runs on the same machine (one thread), so on few cores it competes with
# Moat for CPU: the figures are a lower bound on what Moat alone could do.
# Everything listens on 127.0.0.1; every run is bounded in time.
# The milter (throughput, memory, Postfix end to end) has its own script: bench/milter.sh.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
DUR="${DUR:-10}"
CONNS="${CONNS:-8}"
cargo build --release -q -p moat -p moat-loadgen
MOAT="$CARGO_TARGET_DIR/release/moat"; LOADGEN="$CARGO_TARGET_DIR/release/moat-loadgen"
work=$(mktemp -d); . bench/cleanup.sh; trap 'bench_cleanup "$work"' EXIT
TOKEN="bench-token-0123456789"
# Two free ports, picked by the kernel (a small race with other programs, fine on a bench box).
read -r PP AP < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
cat >"$work/moat.toml" <<TOML
[server]
state_dir = "$work/state"
[admin]
listen = "127.0.0.1:0"
token = "bench-admin-token-0123"
[mail]
policy_listen = "127.0.0.1:$PP"
auth_policy_listen = "127.0.0.1:$AP"
auth_policy_token = "$TOKEN"
recipients = ["alice@moat.test", "bob@moat.test"]
TOML
RUST_LOG="${RUST_LOG:-warn}" "$MOAT" run --config "$work/moat.toml" >"$work/moat.log" 2>&1 &
echo $! >"$work/moat.pid"
MPID=$(cat "$work/moat.pid")
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $PP $AP; do
  for _ in $(seq 100); do up "$p" && break; sleep 0.1; done
  up "$p" || { echo "moat did not listen on $p:" >&2; cat "$work/moat.log" >&2; exit 1; }
done
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if isinstance(v,int) else "%.3f" % v)' "$1" "$2"; }
declare -A J CPU CORES
run() {  # name, loadgen arguments...
  local name=$1; shift
  local t0 t1 j
  t0=$(ticks "$MPID")
  j=$("$LOADGEN" "$@" --connections "$CONNS" --seconds "$DUR")
  t1=$(ticks "$MPID")
  J[$name]=$j
  CPU[$name]=$(awk -v t=$((t1 - t0)) -v n="$(field "$j" requests)" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  CORES[$name]=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v d="$DUR" 'BEGIN {printf "%.2f", t / hz / d}')
  echo "$name: $j" >&2
}
run postfix policy --addr "127.0.0.1:$PP"
run dovecot authpolicy --url "http://127.0.0.1:$AP/" --token "$TOKEN"
rss=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$MPID/status")
echo
echo "closed loop, $CONNS connections, ${DUR}s each, $(nproc) cores shared with the load generator"
printf '%-8s %10s %10s %9s %9s %9s %7s %11s %11s %s\n' path "req/s" target "p50 ms" "p99 ms" target errors "CPU us/req" "Moat cores" verdict
for name in postfix dovecot; do
  j=${J[$name]}
  case $name in postfix) tr=50000; tp=1;; dovecot) tr=20000; tp=2;; esac
  r=$(field "$j" rps); p50=$(field "$j" p50_ms); p99=$(field "$j" p99_ms)
  v=$(awk -v r="$r" -v tr="$tr" -v p="$p99" -v tp="$tp" 'BEGIN {print (r >= tr && p < tp) ? "meets" : "MISSES"}')
  printf '%-8s %10s %10s %9s %9s %9s %7s %11s %11s %s\n' $name "$r" ">= $tr" "$p50" "$p99" "< $tp" \
    "$(field "$j" errors)" "${CPU[$name]}" "${CORES[$name]}" "$v"
done
echo "Moat RSS after both runs: $rss MB"
if grep -qiE '"level":"(WARN|ERROR)"|panick' "$work/moat.log"; then
  echo "Moat logged warnings or errors:"; grep -iE '"level":"(WARN|ERROR)"|panick' "$work/moat.log" | sort | uniq -c | sort -rn | head -5
fi
