"""Issue 15: decision logs hold under a flood. Before, every decision was a line: 85k scripted
POSTs a second wrote 26 MB/s of JSON, and an hour of attack filled a small disk. Now the first
few decisions per rule and client each minute are logged one by one and the rest are counted
into one summary line per rule and minute, within a byte budget.

The flood: 60 seconds of scripted POSTs to the ghost preset's decoy route, as fast as 16
keep-alive connections go, from 4,000 rotating loopback addresses, each with a 2 KB user agent
(the attacker chooses it, so it must not buy log space)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import aiohttp
import requests

from moat_harness import ADMIN_TOKEN, MAGIC_LINK

SECONDS = int(__import__("os").environ.get("FLOOD_SECONDS", "60"))
ADDRESSES = [f"127.{70 + i // 250}.{i % 250}.{1 + (i * 7) % 250}" for i in range(4000)]
UA = "python-requests/2.32.3 " + "x" * 2048


async def flood(url: str, deadline: float) -> int:
    sent = 0

    async def worker(k: int) -> None:
        nonlocal sent
        i = k
        while time.monotonic() < deadline:
            ip = ADDRESSES[i % len(ADDRESSES)]
            i += 16
            conn = aiohttp.TCPConnector(local_addr=(ip, 0), limit=1)
            async with aiohttp.ClientSession(connector=conn, headers={"User-Agent": UA}) as s:
                # A few requests per address and connection, then the next address.
                for n in range(5):
                    async with s.post(url, json={"email": f"v{i}-{n}@example.com"}) as r:
                        await r.read()
                        assert r.status == 201
                    sent += 1

    await asyncio.gather(*(worker(k) for k in range(16)))
    return sent


def test_a_minute_of_flood_writes_at_most_a_megabyte_of_log(moat):
    before = len(moat.stdout_lines)
    start = time.monotonic()
    sent = asyncio.run(flood(moat.url(MAGIC_LINK), start + SECONDS))
    took = time.monotonic() - start
    # A minute's summary comes at its end, or when Moat stops: stop it, so that the last
    # minute's is in the log too.
    # Every decision is still counted where an operator looks for numbers.
    r = requests.get(f"{moat.admin_base}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    counted = sum(float(l.split()[-1]) for l in r.text.splitlines()
                  if l.startswith("moat_http_decisions_total") and 'action="decoy"' in l)
    moat.stop()
    time.sleep(0.5)  # the reader threads take the last lines
    lines = moat.stdout_lines[before:]
    objs = [json.loads(l) for l in lines]
    # Bytes written in the worst 60 seconds, by the lines' own timestamps.
    stamped = sorted((datetime.fromisoformat(o["timestamp"].replace("Z", "+00:00")).timestamp(), len(l) + 1)
                     for o, l in zip(objs, lines))
    written, j, acc = 0, 0, 0
    for t, n in stamped:
        acc += n
        while stamped[j][0] <= t - 60:
            acc -= stamped[j][1]
            j += 1
        written = max(written, acc)
    summaries = [o for o in objs if o.get("message") == "decisions summarised"]
    one_by_one = [o for o in objs if o.get("message") == "decision"]
    print(f"{sent} requests in {took:.0f} s ({sent / took:.0f}/s): at most {written} bytes of log in 60 s, "
          f"{len(one_by_one)} decision lines, {len(summaries)} summaries")
    assert sent > 2000, "the flood was too weak to mean anything"
    assert written <= 1_000_000, f"{written} bytes of log in 60 s"
    assert summaries, "no summary line for the decisions that were not logged one by one"
    summarised = sum(s["count"] for s in summaries)
    assert summarised + len(one_by_one) >= sent * 0.95, (summarised, len(one_by_one), sent)
    assert all(len(o.get("user_agent", "")) <= 256 for o in one_by_one), "the user agent was not cut"
    assert counted >= sent, (counted, sent)

