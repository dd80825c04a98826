#!/usr/bin/env bash
# SMTP trap benchmarks, each against its target from issue 5:
#  1. Throughput: Postfix's smtp-source (20 sessions, M messages, a new connection per message)
#     against Postfix's smtp-sink and against `moat trap` with its quarantine on, in the same run,
#     ROUNDS times in alternation (sink, trap, sink, trap, ...) so that both see the same machine.
#     Prints messages/s for both in each round, each round's ratio, and the median ratio
#     (target >= 0.5). Every message the trap acknowledges was synced to disk (in its journal)
#     before its 250; filing, indexing and extraction run behind the replies, and after each
#     trap round the script waits until they are done (and says how long that took), so the
#     next sink round has the machine to itself. At the end it checks the quarantine holds
#     every message.
#     Run it at least five minutes after deleting many files on the same ext4 filesystem
#     without a journal (such as an earlier run's cleanup): its inode allocator then skips
#     recently deleted inodes one by one, which makes file creation several times slower.
#  2. Memory: N concurrent idle sessions (default 10,000, from 500 loopback addresses, each
#     having read the banner) and the trap's RSS (target <= 100 MB).
# Everything runs on 127.0.0.1; every step is bounded.
set -euo pipefail
# Moat runs as root here: keep its bans out of this machine's firewall.
export MOAT_NFTABLES=off
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
M="${M:-20000}"
ROUNDS="${ROUNDS:-3}"
SESSIONS="${SESSIONS:-20}"
IDLE="${IDLE:-10000}"
cargo build --release -q --bin moat
MOAT="$CARGO_TARGET_DIR/release/moat"
ulimit -n "$(ulimit -Hn)"  # the idle-session test needs ~10,000 descriptors per process
work=$(mktemp -d)
cleanup() { kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
read -r SINK TRAP_PORT TLS_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

wait_port() {
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2; exit 1
}

rate() { # port -> messages/s of smtp-source against it
  local start end
  start=$(date +%s.%N)
  timeout 600 smtp-source -s "$SESSIONS" -m "$M" -f bench@spam.test -t victim@victim.test "127.0.0.1:$1"
  end=$(date +%s.%N)
  python3 -c "print(f'{$M / ($end - $start):.0f}')"
}

smtp-sink -u nobody "127.0.0.1:$SINK" 256 & echo $! > "$work/sink.pid"
wait_port "$SINK"
"$MOAT" trap --listen "127.0.0.1:$TRAP_PORT" --tls-listen "127.0.0.1:$TLS_PORT" \
  --quarantine "$work/q" --max-sessions 20000 --max-sessions-per-ip 100 --log-format json \
  > "$work/trap.log" 2>&1 & echo $! > "$work/trap.pid"
wait_port "$TRAP_PORT"

# How many deliveries the index holds, and how many of its blobs await extraction.
index_state() {
  python3 - "$work/q/index.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(c.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
      c.execute("SELECT COUNT(*) FROM blobs WHERE analysed = 0").fetchone()[0])
PY
}

# The trap answers once a message is in its journal; filing, indexing and extraction run
# behind the replies. After each trap round, wait (bounded) until all of that is done, so that
# the next sink round has the machine to itself, and report how long it took.
catch_up() { # messages expected in the index
  local start left indexed
  start=$(date +%s.%N)
  for _ in $(seq 1200); do
    read -r indexed left < <(index_state)
    [ "$indexed" = "$1" ] && [ "$left" = 0 ] && break
    sleep 0.1
  done
  echo "  indexed and analysed $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s after the round ($indexed of $1 indexed, $left blobs not analysed)"
}

echo "== throughput: smtp-source -s $SESSIONS -m $M (new connection per message), $ROUNDS rounds"
ratios=()
for round in $(seq "$ROUNDS"); do
  sink_rate=$(rate "$SINK")
  trap_rate=$(rate "$TRAP_PORT")
  ratio=$(python3 -c "print(f'{$trap_rate / $sink_rate:.2f}')")
  ratios+=("$ratio")
  echo "round $round: smtp-sink $sink_rate msg/s, moat trap $trap_rate msg/s, ratio $ratio"
  catch_up $((M * round))
done
python3 -c "import statistics,sys; r=sorted(map(float,sys.argv[1:])); print(f'median ratio trap/sink: {statistics.median(r):.2f}  (rounds: {\" \".join(map(str,r))}; target >= 0.5)')" "${ratios[@]}"
want=$((M * ROUNDS))
stored=$("$MOAT" quarantine --quarantine "$work/q" list --json --limit 10000000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "quarantine: $stored of $want messages indexed, fsync before every 250"
if [ "$stored" != "$want" ]; then
  echo "FAIL: $stored of $want messages in the quarantine; the trap's errors:" >&2
  grep -v '"INFO"' "$work/trap.log" | head -20 >&2
  exit 1
fi

[ "$IDLE" -gt 0 ] || exit 0  # IDLE=0: throughput only
echo "== memory: $IDLE idle sessions"
python3 - "$TRAP_PORT" "$IDLE" "$(cat "$work/trap.pid")" <<'PY'
import selectors, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss_kb()
socks = []
for i in range(n):
    src = f"127.60.{(i // 50) // 250}.{(i // 50) % 250 + 1}"   # 50 sessions per address
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    socks.append(s)
greeted = 0
for s in socks:
    if s.recv(128).startswith(b"220 "):
        greeted += 1
time.sleep(1)
after = rss_kb()
print(f"sessions greeted: {greeted} of {n}")
print(f"trap RSS: {before / 1024:.1f} MB before, {after / 1024:.1f} MB with {n} idle sessions "
      f"({(after - before) / n:.2f} KB per session)  (target <= 100 MB)")
for s in socks:
    s.close()
PY
