#!/usr/bin/env python3
"""Issue 19, item 5: a hub is a Moat that follows many feeds and republishes their consensus.
This runs 1,000 publishers on loopback (tests/e2e/feed_format.py, one HTTP server for all),
a hub (`moat run`, release build) following every one with `[feeds] quorum = 3` and
`[feed] republish = true`, and reports:

- how long the hub takes to poll and apply all 1,000 feeds (each a snapshot of PER_FEED
  addresses drawn from a shared pool, so many are listed by 3 or more);
- how many indicators a second it ingests doing so;
- after every publisher adds a delta, how long the next round of polls takes;
- the hub's CPU time and RSS, and the size of the consensus it republishes.

    python3 bench/hub.py [--feeds 1000] [--per-feed 100] [--poll 60]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from feed_format import FeedKey, feed_file, head, indicator  # noqa: E402


class Publishers:
    def __init__(self, n: int, per_feed: int, pool: int) -> None:
        self.rng = random.Random(7)
        self.pool = [f"44.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, pool + 1)]
        self.keys = [FeedKey(f"pub{i}") for i in range(n)]
        self.values = [set(self.rng.sample(self.pool, per_feed)) for _ in range(n)]
        self.heads: list[bytes] = [b""] * n
        self.files: dict[str, bytes] = {}
        self.snapshots: list[tuple[int, bytes]] = [(0, b"")] * n
        self.deltas: list[list[tuple[int, bytes]]] = [[] for _ in range(n)]
        self.seq = [0] * n
        now = int(time.time())
        for i, k in enumerate(self.keys):
            data = feed_file(k.name, 1, "snapshot", [indicator(v, now, now + 86400) for v in sorted(self.values[i])])
            self._add(data)
            self.snapshots[i] = (1, data)
            self._sign(i)
        pubs = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                _, i, rest = self.path.split("/", 2)
                body = pubs.heads[int(i)] if rest == "head" else pubs.files.get(rest.removeprefix("by-hash/"))
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                tag = f'"{hashlib.sha256(body).hexdigest()}"'
                if rest == "head" and self.headers.get("If-None-Match") == tag:
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", tag)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _add(self, data: bytes) -> None:
        self.files[hashlib.sha256(data).hexdigest()] = data

    def _sign(self, i: int) -> None:
        self.seq[i] += 1
        self.heads[i] = head(self.keys[i], self.seq[i], int(time.time()) + 3600, self.snapshots[i], self.deltas[i])

    def delta_round(self, add: int) -> int:
        """Every publisher adds `add` addresses in a delta; returns the indicators published."""
        now = int(time.time())
        for i, k in enumerate(self.keys):
            new = self.rng.sample(self.pool, add)
            self.values[i].update(new)
            number = (self.deltas[i][-1][0] if self.deltas[i] else self.snapshots[i][0]) + 1
            data = feed_file(k.name, number, "delta", [indicator(v, now, now + 86400) for v in new])
            self._add(data)
            self.deltas[i].append((number, data))
            self._sign(i)
        return add * len(self.keys)


def cpu_and_rss(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--per-feed", type=int, default=100)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--poll", type=int, default=60)
    ap.add_argument("--moat", default=os.environ.get("MOAT_BIN", ""))
    args = ap.parse_args()
    moat = args.moat or str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "moat")
    if not args.moat:
        subprocess.run(["cargo", "build", "--release", "--bin", "moat", "-q"], cwd=ROOT, check=True)

    t = time.monotonic()
    pubs = Publishers(args.feeds, args.per_feed, args.pool)
    print(f"{args.feeds} publishers ready in {time.monotonic() - t:.1f} s ({args.per_feed} addresses each, from a pool of {args.pool})")
    state = Path(tempfile.mkdtemp(prefix="moat-hub-"))
    (state / "feeds").mkdir()
    subs = [{"name": f"p{i}", "url": f"{pubs.base}/{i}/", "key": k.vkey, "weight": 1.0} for i, k in enumerate(pubs.keys)]
    (state / "feeds" / "subscriptions.json").write_text(json.dumps(subs))
    cfg = state / "hub.toml"
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:0"\n[feed]\nname = "hub"\nrepublish = true\n'
                   f'[feeds]\nquorum = 3\npoll = "{args.poll}s"\n')
    proc = subprocess.Popen([moat, "run", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9",
                             "--state-dir", str(state), "--config", str(cfg), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "info"})
    updates: list[tuple[float, int]] = []
    lines: list[dict] = []

    def pump() -> None:
        for line in proc.stdout:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            lines.append(o)
            if o.get("message") == "feed updated":
                updates.append((time.monotonic(), int(o.get("indicators", 0))))

    threading.Thread(target=pump, daemon=True).start()
    started = time.monotonic()
    try:
        while len(updates) < args.feeds:
            if time.monotonic() - started > 300:
                sys.exit(f"only {len(updates)} feeds applied in 300 s")
            time.sleep(0.05)
        first_round = updates[-1][0] - started
        ingested = sum(n for _, n in updates)
        cpu1, rss1 = cpu_and_rss(proc.pid)
        print(f"round 1: all {args.feeds} feeds polled and applied {first_round:.1f} s after start: "
              f"{ingested} indicators, {ingested / first_round:,.0f} a second; hub CPU {cpu1:.1f} s, RSS {rss1 / 1024:.0f} MB")

        published = pubs.delta_round(10)
        mark = len(updates)
        t0 = time.monotonic()
        while len(updates) < mark + args.feeds:
            if time.monotonic() - t0 > args.poll * 3:
                sys.exit(f"round 2: only {len(updates) - mark} feeds applied")
            time.sleep(0.05)
        window = [u for u in updates[mark:]]
        span = window[-1][0] - window[0][0]
        cpu2, rss2 = cpu_and_rss(proc.pid)
        print(f"round 2 (every publisher's delta of 10, {published} indicators): polled within {span:.1f} s of the first; "
              f"hub CPU +{cpu2 - cpu1:.1f} s, RSS {rss2 / 1024:.0f} MB")
        print(f"sustains {args.feeds} publishers polled every {args.poll} s using {(cpu2 - cpu1) / args.poll * 100:.1f} % of a core")
        time.sleep(8)
        feed_head = (state / "feed" / "head").read_text()
        print("hub's consensus feed head:\n  " + "\n  ".join(feed_head.splitlines()[:6]))
        listed = subprocess.run([moat, "bans", "list", "--json", "--state-dir", str(state)],
                                capture_output=True, text=True, check=True)
        bans = sum(1 for b in json.loads(listed.stdout) if str(b.get("origin", "")).startswith("feed:"))
        print(f"feed bans at the hub (quorum 3): {bans}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
