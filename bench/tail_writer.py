#!/usr/bin/env python3
"""Appends syslog-style lines to FILES log files at RATE lines/s in all, for SECONDS, in
10 ms ticks: mostly ordinary sshd and Postfix traffic, one line in a hundred a failed sshd
password from one of 500 addresses in 198.18.0.0/15 (benchmark space). For bench/tail.sh.

    bench/tail_writer.py DIR FILES RATE SECONDS
"""
import os
import random
import sys
import time

d, files, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(7)
handles = [open(os.path.join(d, f"log{i:02d}.log"), "a", buffering=1 << 16) for i in range(files)]
attackers = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(500)]
NOISE = [
    "sshd[{pid}]: Accepted publickey for deploy from 192.0.2.{n} port 5{n:04d} ssh2",
    "sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
    "postfix/smtpd[{pid}]: connect from mail{n}.example.net[192.0.2.{n}]",
    "postfix/qmgr[{pid}]: 3F2A1B{n:04X}: removed",
    "CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
]
tick = 0.01
per_tick = rate * tick
start = time.monotonic()
carry = 0.0
written = 0
while time.monotonic() - start < seconds:
    carry += per_tick
    n = int(carry)
    carry -= n
    stamp = time.strftime("%b %e %H:%M:%S")
    for _ in range(n):
        h = handles[rng.randrange(files)]
        if rng.random() < 0.01:
            msg = "sshd[%d]: Failed password for root from %s port 4%04d ssh2" % (
                rng.randrange(1000, 30000), rng.choice(attackers), rng.randrange(10000))
        else:
            msg = rng.choice(NOISE).format(pid=rng.randrange(1000, 30000), n=rng.randrange(1, 250))
        h.write(f"{stamp} host {msg}\n")
        written += 1
    for h in handles:
        h.flush()
    next_at = start + tick * (int((time.monotonic() - start) / tick) + 1)
    time.sleep(max(0.0, next_at - time.monotonic()))
print(written)
