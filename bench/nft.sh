#!/usr/bin/env bash
# The nftables enforcer against the real kernel (issue 17), in two network namespaces this
# script makes and removes: a server side (Moat, its table) and a client side, joined by a
# veth pair. Nothing touches this machine's own firewall.
#
#  (a) Ban-to-kernel latency: crates/moat-nftables/examples/nft_bench.rs runs Moat's engine
#      (decider thread, SQLite store) and enforcer in the server namespace and calls
#      Engine::ban, the path of the jails and shields, RATE times a second for DUR s, plus a
#      burst of BURST at the middle; each ban is timed to its element's arrival as
#      `nft monitor` reports it. Twice: with an empty store, and with PRELOAD bans in it.
#      Target: p99 <= 100 ms.
#  (b) 100,000 bans: the same example puts APPLY bans through the engine and times them into
#      the kernel; then `moat run` starts on a state directory holding BIG bans: the time to
#      its table (the rebuild at start), the elements in the set, Moat's memory, and a packet
#      from a banned address (dropped) and from an unbanned one (answered).
#
#   bench/nft.sh                       (RATE=200 DUR=20 BURST=1000 PRELOAD=100000
#                                       APPLY=100000 BIG=100000; MOAT=path to skip the build)
#
# Needs: root, nft, ip (iproute2), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
RATE="${RATE:-200}"; SECONDS_="${DUR:-20}"; BURST="${BURST:-1000}"
PRELOAD="${PRELOAD:-100000}"; APPLY="${APPLY:-100000}"; BIG="${BIG:-100000}"
PARTS="${PARTS:-latency apply run}"   # which parts to run
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
command -v nft >/dev/null && command -v ip >/dev/null || { echo "needs nft and ip" >&2; exit 2; }
cargo build --release -q -p moat-nftables --example nft_bench
BENCH="$CARGO_TARGET_DIR/release/examples/nft_bench"
if [ -z "${MOAT:-}" ]; then cargo build --release -q -p moat; MOAT="$CARGO_TARGET_DIR/release/moat"; fi

SRV="moatnft-srv-$$"; CLI="moatnft-cli-$$"
work=$(mktemp -d)
cleanup() {
  [ -f "$work/moat.pid" ] && kill "$(cat "$work/moat.pid")" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$SRV"; ip netns add "$CLI"
ip link add "ns$$" netns "$SRV" type veth peer name "nc$$" netns "$CLI"
in_srv() { ip netns exec "$SRV" "$@"; }
in_cli() { ip netns exec "$CLI" "$@"; }
in_srv ip link set lo up; in_cli ip link set lo up
in_srv ip addr add 10.231.200.2/24 dev "ns$$"; in_srv ip link set "ns$$" up
# The client: 10.231.200.1 is never banned; 10.232.0.5 is the sixth of the preloaded bans,
# which count up from 10.232.0.0 (BIG <= 262,144 stays inside 10.232.0.0/14).
in_cli ip addr add 10.231.200.1/24 dev "nc$$"; in_cli ip addr add 10.232.0.5/32 dev "nc$$"
in_cli ip link set "nc$$" up
in_srv ip route add 10.232.0.0/14 dev "ns$$"

if [[ " $PARTS " == *" latency "* ]]; then
echo "== (a) ban to kernel, Engine::ban at $RATE/s for ${SECONDS_} s, a burst of $BURST at $((SECONDS_ / 2)) s"
for pre in 0 "$PRELOAD"; do
  echo "-- store holding $pre bans before the stream"
  rm -rf "$work/a"
  in_srv "$BENCH" latency --state "$work/a" --table moatbench --rate "$RATE" --seconds "$SECONDS_" \
    --burst "$BURST" --burst-at $((SECONDS_ / 2)) --preload "$pre"
  in_srv nft delete table inet moatbench
done

fi
if [[ " $PARTS " == *" apply "* ]]; then
echo "== (b) $APPLY bans through the engine into the kernel"
rm -rf "$work/b"
in_srv "$BENCH" apply --state "$work/b" --table moatbench --count "$APPLY"
in_srv nft delete table inet moatbench

fi
[[ " $PARTS " == *" run "* ]] || exit 0
echo "== (b) moat run on a store of $BIG bans"
"$BENCH" preload --state "$work/state" --count "$BIG"
port=18480
printf '[admin]\nlisten = "127.0.0.1:0"\ntoken = "bench-admin-token-0123"\n' >"$work/moat.toml"
: >"$work/moat.log"
start=$(date +%s.%N)
# `ip netns exec` execs Moat, so $! is Moat's own pid (a shell function would add a subshell).
ip netns exec "$SRV" env MOAT_NFTABLES=on RUST_LOG=info "$MOAT" run --listen "0.0.0.0:$port" \
  --config "$work/moat.toml" --upstream http://127.0.0.1:9 --state-dir "$work/state" >"$work/moat.log" 2>&1 &
echo $! >"$work/moat.pid"
until grep -q "enforced in the kernel" "$work/moat.log"; do
  kill -0 "$(cat "$work/moat.pid")" 2>/dev/null || { cat "$work/moat.log" >&2; exit 1; }
  sleep 0.02
done
ready=$(date +%s.%N)
until grep -q "moat is running" "$work/moat.log"; do sleep 0.02; done
sleep 1
pid=$(cat "$work/moat.pid")
[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$MOAT")" ] || { echo "pid $pid is not Moat" >&2; exit 1; }
n=$(in_srv nft -j list set inet moat ban4 | python3 -c 'import json,sys; print(sum(len(i["set"].get("elem", [])) for i in json.load(sys.stdin)["nftables"] if "set" in i))')
awk -v a="$start" -v b="$ready" -v n="$n" -v big="$BIG" 'BEGIN {
  printf "table rebuilt at start from %d bans: %.2f s after launch; ban4 holds %d elements\n", big, b - a, n }'
grep -E 'VmRSS|VmHWM|RssAnon' "/proc/$pid/status" | awk '{printf "moat %s %.1f MB\n", $1, $2 / 1024}'
probe() {  # probe SRC: "answered", "dropped" or "refused" for a TCP connection to Moat's port
  in_cli python3 -c "
import socket, sys
s = socket.socket(); s.settimeout(1.5); s.bind(('$1', 0))
try:
    s.connect(('10.231.200.2', $port)); print('answered')
except ConnectionRefusedError:
    print('refused')
except OSError:
    print('dropped')"
}
b=$(probe 10.232.0.5); u=$(probe 10.231.200.1)
echo "from a banned address (10.232.0.5): $b   (want dropped)"
echo "from an unbanned one (10.231.200.1): $u   (want answered)"
[ "$n" -ge "$BIG" ] && [ "$b" = dropped ] && [ "$u" = answered ] || { echo "FAILED" >&2; exit 1; }
