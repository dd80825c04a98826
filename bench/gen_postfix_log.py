#!/usr/bin/env python3
"""Writes a syslog-format Postfix log for bench/logs.sh: LINES lines, a share ATTACK of them
(0..1) rejections that fail2ban's postfix filter (default mode) counts as failures, the rest
the ordinary traffic of a small mail server (connects, deliveries, queue manager). Seeded, so
every run reads the same bytes.

    bench/gen_postfix_log.py LINES ATTACK OUT
"""
import random
import sys

lines, attack, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rng = random.Random(17)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def ip():
    return "%d.%d.%d.%d" % (rng.randint(11, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))


def qid():
    return "%010X" % rng.getrandbits(40)


NORMAL = [
    lambda: "postfix/smtpd[%d]: connect from mail%d.example.net[%s]" % (rng.randint(1000, 30000), rng.randint(1, 99), ip()),
    lambda: "postfix/smtpd[%d]: disconnect from mail%d.example.net[%s] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5" % (rng.randint(1000, 30000), rng.randint(1, 99), ip()),
    lambda: "postfix/smtpd[%d]: %s: client=mail%d.example.net[%s]" % (rng.randint(1000, 30000), qid(), rng.randint(1, 99), ip()),
    lambda: "postfix/cleanup[%d]: %s: message-id=<%x@example.net>" % (rng.randint(1000, 30000), qid(), rng.getrandbits(48)),
    lambda: "postfix/qmgr[%d]: %s: from=<user%d@example.net>, size=%d, nrcpt=1 (queue active)" % (rng.randint(1000, 30000), qid(), rng.randint(1, 999), rng.randint(800, 90000)),
    lambda: "postfix/local[%d]: %s: to=<alice@moat.test>, relay=local, delay=0.1, delays=0.05/0.01/0/0.04, dsn=2.0.0, status=sent (delivered to mailbox)" % (rng.randint(1000, 30000), qid()),
    lambda: "postfix/qmgr[%d]: %s: removed" % (rng.randint(1000, 30000), qid()),
    lambda: "dovecot: imap-login: Login: user=<alice@moat.test>, method=PLAIN, rip=%s, lip=192.0.2.1, mpid=%d, TLS" % (ip(), rng.randint(1000, 30000)),
]
ATTACK = [
    lambda: "postfix/smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 550 5.1.1 <info%d@moat.test>: Recipient address rejected: User unknown in local recipient table; from=<x@spam.example> to=<info%d@moat.test> proto=ESMTP helo=<spam.example>" % (rng.randint(1000, 30000), ip(), rng.randint(1, 9999), rng.randint(1, 9999)),
    lambda: "postfix/smtpd[%d]: NOQUEUE: reject: RCPT from bot.example[%s]: 554 5.7.1 <x@other.example>: Relay access denied; from=<a@spam.example> to=<x@other.example> proto=ESMTP helo=<bot.example>" % (rng.randint(1000, 30000), ip()),
    lambda: "postfix/smtpd[%d]: improper command pipelining after CONNECT from unknown[%s]: EHLO x" % (rng.randint(1000, 30000), ip()),
]

with open(out, "w") as f:
    sec = 0
    for i in range(lines):
        sec += rng.randint(0, 2)
        day, rest = divmod(sec, 86400)
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        stamp = "%s %2d %02d:%02d:%02d" % (MONTHS[10], 1 + day % 28, h, m, s)
        msg = rng.choice(ATTACK)() if rng.random() < attack else rng.choice(NORMAL)()
        f.write("%s mx1 %s\n" % (stamp, msg))
