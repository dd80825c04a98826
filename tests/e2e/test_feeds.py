"""Issue 19, items 2 and 3: signed feeds between operators. Three instances on loopback, each
with its own key and state: the first ("mail") bans an address that brute-forces its mail (a
jail on Debian's postfix filter) and captures spam in its trap; the second (a web shield behind a
trusted proxy) and the third (a mail shield) follow its feed and refuse that address within
60 s at their default poll, and show the spammed domain in their feed view. A lone peer that
publishes a verified crawler's address or a private range (a second implementation of the
format, written here with Python's `cryptography`) changes nothing. A tampered delta and a
replayed older head, served by a man in the middle, are refused and logged."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import smtplib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from feed_format import FeedKey, feed_file, head, indicator
from moat_harness import free_port, run_cli
from test_log_watcher import append, postfix_policy

FILTERS = Path("/etc/fail2ban/filter.d")
pytestmark = pytest.mark.skipif(
    not (FILTERS / "postfix.conf").is_file() and not os.environ.get("CI"),
    reason="needs Debian's fail2ban (scripts/install-test-deps.sh installs it)",
)

ATTACKER = "203.0.113.7"
CRAWLER = "66.249.66.1"  # Googlebot's published range
SPAM_DOMAIN = "feed-spam.example"
SPAM = (b"From: Prize Desk <winner@prize-desk.test>\r\nTo: victim@victim.test\r\n"
        b"Subject: You won\r\nMessage-ID: <feed-1@prize-desk.test>\r\n\r\n"
        b"Claim at https://claim." + SPAM_DOMAIN.encode() + b"/win?u=1 today\r\n")


def sasl_fail(ip: str) -> str:
    """A failed SASL login as Postfix's submission service logs it through syslog."""
    stamp = time.strftime("%b %e %H:%M:%S")
    return (f"{stamp} mail postfix/submission/smtpd[{os.getpid()}]: warning: unknown[{ip}]: "
            f"SASL LOGIN authentication failed: UGFzc3dvcmQ6\n")


def mail_config(log: Path, trap_port: int) -> str:
    return f"""
[feed]
name = "mail-a"
interval = "1s"

[trap]
hostname = "mx.feed.test"
auth_failure_delay = "0s"
[[trap.listener]]
listen = "127.0.0.1:{trap_port}"
tls = "none"

[logs]
filter_dir = "{FILTERS}"
[[logs.jail]]
name = "postfix-sasl"
filter = "postfix[mode=auth]"
logpath = ["{log}"]
maxretry = 3
findtime = "10m"
bantime = "1h"
"""


def subscriptions(*subs: tuple[str, str, str], poll: str | None = None) -> str:
    out = "[feeds]\nquorum = 1\n" + (f'poll = "{poll}"\n' if poll else "")
    for name, url, key in subs:
        out += f'\n[[feeds.subscribe]]\nname = "{name}"\nurl = "{url}"\nkey = "{key}"\n'
    return out


def key_of(m) -> str:
    r = m.cli("keys", "show")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def feed_url(m) -> str:
    return m.base + "/.well-known/moat/feed/"


def banned(m, scope: str) -> dict | None:
    return next((b for b in m.bans() if b["scope"] in (scope, f"{scope}/32")), None)


def via_proxy(m, client: str) -> int:
    """A request that the trusted proxy in front of `m` says comes from `client`."""
    return requests.get(m.url("/"), headers={"Fly-Client-IP": client}, timeout=5).status_code


# --------------------------------------------------------------------------------------------
# A second implementation of the feed format: a peer publishing whatever it is told to.


class PythonFeed:
    """A feed signed with its own key (feed_format.py, a second implementation of the format),
    served on loopback."""

    def __init__(self, name: str) -> None:
        self.key = FeedKey(name)
        self.files: dict[str, bytes] = {}
        self.head = b""
        self.seq = 0
        feed = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.removeprefix("/feed/")
                body = feed.head if path == "head" else feed.files.get(path.removeprefix("by-hash/"))
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed/"

    @property
    def vkey(self) -> str:
        return self.key.vkey

    def publish(self, values: list[str]) -> None:
        """A snapshot of `values` (addresses and prefixes) and a head naming it."""
        self.seq += 1
        now = int(time.time())
        data = feed_file(self.key.name, self.seq, "snapshot",
                         [indicator(v, now, now + 3600, count=9) for v in values])
        self.files[hashlib.sha256(data).hexdigest()] = data
        self.head = head(self.key, self.seq, now + 3600, (self.seq, data))

    def stop(self) -> None:
        self.server.shutdown()


# --------------------------------------------------------------------------------------------


def test_three_instances_share_what_the_first_caught(moat_factory, tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("")
    trap_port = free_port()
    a = moat_factory(mail_config(log, trap_port), name="a")
    a_key = key_of(a)
    assert a_key.startswith("mail-a+"), a_key
    assert (a.state_dir / "feed.key").stat().st_mode & 0o777 == 0o600

    mallory = PythonFeed("mallory")
    mallory.publish([CRAWLER, "10.1.2.3", "192.168.7.0/24", "198.18.0.0/15"])
    subs = subscriptions(("a", feed_url(a), a_key), ("mallory", mallory.url, mallory.vkey))
    policy_port = free_port()
    b = moat_factory(f"""
[server]
trusted_proxies = ["127.0.0.1/32"]
client_ip_headers = ["fly-client-ip"]
{subs}""", name="b")
    c = moat_factory(f"""
[mail]
policy_listen = "127.0.0.1:{policy_port}"
recipients = ["x@moat.test"]
{subs}""", name="c")
    try:
        assert via_proxy(b, ATTACKER) == 200
        assert postfix_policy(policy_port, ATTACKER) == b"action=DUNNO\n\n"

        # The brute force against the first instance's mail, and a crawler it banned by mistake.
        append(log, *[sasl_fail(ATTACKER) for _ in range(3)], *[sasl_fail(CRAWLER) for _ in range(3)])
        assert a.wait_for(lambda: banned(a, ATTACKER) and banned(a, CRAWLER), timeout=10), a.bans()
        banned_at = time.monotonic()
        # Spam its trap was asked to send.
        with smtplib.SMTP("127.0.0.1", trap_port, timeout=10) as s:
            s.ehlo("bot")
            s.user, s.password = "winner@prize-desk.test", "123456"
            assert s.auth("PLAIN", s.auth_plain)[0] == 235
            assert s.sendmail("winner@prize-desk.test", ["victim@victim.test"], SPAM) == {}

        # Refused by the second and the third within 60 s, at their default poll.
        assert b.wait_for(lambda: via_proxy(b, ATTACKER) == 403, timeout=60), (
            "the second instance never refused the address the first banned")
        assert c.wait_for(lambda: postfix_policy(policy_port, ATTACKER).startswith(
            (b"action=4", b"action=5", b"action=DEFER", b"action=REJECT")), timeout=60)
        took = time.monotonic() - banned_at
        assert took <= 60, took
        ban = banned(b, ATTACKER)
        assert ban["origin"] == "feed:a", ban
        assert "jail:postfix-sasl" in ban["reason"], ban

        # The spammed domain is in the others' view of the feed.
        def domains(m):
            r = m.cli("feeds", "view", "--kind", "domain", "--json")
            assert r.returncode == 0, r.stderr
            return [(v["feed"], v["value"]) for v in json.loads(r.stdout)]
        assert b.wait_for(lambda: ("a", SPAM_DOMAIN) in domains(b), timeout=60), domains(b)
        assert ("a", SPAM_DOMAIN) in domains(c)

        # What a lone peer may not do: the crawler (listed by both feeds), private ranges, a
        # wide prefix. Nothing of it is banned, and each refusal is logged.
        time.sleep(2)
        for m in (b, c):
            scopes = {x["scope"] for x in m.bans()}
            assert not scopes & {CRAWLER, "10.1.2.3", "192.168.7.0/24", "198.18.0.0/15"}, scopes
            refused = {o.get("scope") for o in m.log_objects() if o.get("message") == "a feed's ban is not taken"}
            assert {CRAWLER, "10.1.2.3", "192.168.7.0/24", "198.18.0.0/15"} <= refused, refused
        assert via_proxy(b, CRAWLER) == 200

        # What was published holds no recipient, login, password or log line.
        head = requests.get(feed_url(a) + "head", timeout=5)
        assert head.status_code == 200 and head.headers["Cache-Control"] == "no-cache"
        published = b""
        for line in head.text.splitlines():
            if line.startswith(("snapshot ", "delta ")):
                f = requests.get(feed_url(a) + "by-hash/" + line.split()[2], timeout=5)
                assert f.headers["Cache-Control"].endswith("immutable")
                published += gzip.decompress(f.content)
        assert ATTACKER.encode() in published and SPAM_DOMAIN.encode() in published
        for secret in (b"victim", b"winner", b"123456", b"UGFzc3dvcmQ6", b"authentication failed"):
            assert secret not in published, secret
        # Polled with its ETag, an unchanged head is 304.
        again = requests.get(feed_url(a) + "head", headers={"If-None-Match": head.headers["ETag"]}, timeout=5)
        assert again.status_code in (200, 304)
        if again.content == head.content:
            assert again.status_code == 304

        listing = json.loads(b.cli("feeds", "list", "--json").stdout)
        by_name = {f["name"]: f for f in listing}
        assert by_name["a"]["seq"] >= 1 and by_name["a"]["last_error"] is None, listing
        assert by_name["mallory"]["indicators"] == 4, listing

        # The first instance lifts its ban: the others lift theirs.
        assert a.cli("bans", "rm", ATTACKER).returncode == 0
        assert b.wait_for(lambda: via_proxy(b, ATTACKER) == 200, timeout=60), b.bans()
    finally:
        mallory.stop()


class Middle:
    """A man in the middle of a feed: passes it through, or replays the first head it saw, or
    flips a byte of every file."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.heads: list[bytes] = []
        mid = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.removeprefix("/feed/")
                r = requests.get(mid.upstream + path, timeout=5)
                body = r.content
                if path == "head" and r.status_code == 200:
                    if not mid.heads or mid.heads[-1] != body:
                        mid.heads.append(body)
                    if mid.mode == "replay":
                        body = mid.heads[0]
                if path.startswith("by-hash/") and mid.mode == "tamper":
                    raw = bytearray(gzip.decompress(body))
                    raw = raw.replace(b'"count":', b'"count": ')
                    body = gzip.compress(bytes(raw))
                self.send_response(r.status_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed/"

    def stop(self) -> None:
        self.server.shutdown()


def test_a_tampered_delta_and_a_replayed_head_are_refused(moat_factory, tmp_path):
    log = tmp_path / "mail.log"
    log.write_text("")
    a = moat_factory(mail_config(log, free_port()), name="a")
    mid = Middle(feed_url(a))
    d = moat_factory(subscriptions(("a", mid.url, key_of(a)), poll="1s"), name="d")
    try:
        def refusals():
            return [o for o in d.log_objects() if o.get("message") == "feed refused"]

        first, second, third = "203.0.113.21", "203.0.113.22", "203.0.113.23"
        append(log, *[sasl_fail(first) for _ in range(3)])
        assert d.wait_for(lambda: banned(d, first), timeout=20), d.bans()

        mid.mode = "tamper"
        append(log, *[sasl_fail(second) for _ in range(3)])
        assert d.wait_for(lambda: any("tampered" in r.get("reason", "") for r in refusals()), timeout=20), (
            d.stdout_lines[-20:])
        assert not banned(d, second), "a tampered delta is not applied"

        mid.mode = "replay"
        assert d.wait_for(lambda: any("rollback" in r.get("reason", "") for r in refusals()), timeout=20), (
            d.stdout_lines[-20:])
        assert banned(d, first) and not banned(d, second)

        # Restarted, it still refuses the old head: what it saw is kept.
        d.stop()
        d.start()
        time.sleep(3)
        assert banned(d, first), "a restart keeps the feed's bans"
        listing = json.loads(d.cli("feeds", "list", "--json").stdout)
        assert "rollback" in (listing[0]["last_error"] or ""), listing

        mid.mode = "pass"
        append(log, *[sasl_fail(third) for _ in range(3)])
        assert d.wait_for(lambda: banned(d, second) and banned(d, third), timeout=20), d.bans()
    finally:
        mid.stop()


def test_keys_and_feeds_commands(tmp_path):
    state = str(tmp_path / "s")
    r = run_cli("keys", "new", "--name", "blog.example", "--state-dir", state)
    assert r.returncode == 0, r.stderr
    vkey = r.stdout.strip()
    assert vkey.startswith("blog.example+")
    assert run_cli("keys", "show", "--state-dir", state).stdout.strip() == vkey
    again = run_cli("keys", "new", "--state-dir", state)
    assert again.returncode != 0 and "--force" in again.stderr, "a key is never replaced by accident"
    assert run_cli("keys", "show", "--state-dir", state).stdout.strip() == vkey

    ok = run_cli("feeds", "add", "friend", "https://friend.example/.well-known/moat/feed", vkey,
                 "--state-dir", state)
    assert ok.returncode == 0, ok.stderr
    assert run_cli("feeds", "add", "friend", "https://x.example/", vkey, "--state-dir", state).returncode != 0
    bare = run_cli("feeds", "add", "bare", "https://bare.example", vkey, "--state-dir", state)
    assert bare.returncode == 0 and "https://bare.example/.well-known/moat/feed/" in bare.stdout, bare.stdout
    assert run_cli("feeds", "rm", "bare", "--state-dir", state).returncode == 0
    bad = run_cli("feeds", "add", "other", "https://x.example/", vkey[:-4] + "AAAA", "--state-dir", state)
    assert bad.returncode != 0 and "key" in bad.stderr, bad.stderr
    listing = json.loads(run_cli("feeds", "list", "--json", "--state-dir", state).stdout)
    assert [(f["name"], f["url"], f["source"]) for f in listing] == [
        ("friend", "https://friend.example/.well-known/moat/feed/", "moat feeds add")]
    assert run_cli("feeds", "rm", "friend", "--state-dir", state).returncode == 0
    assert json.loads(run_cli("feeds", "list", "--json", "--state-dir", state).stdout) == []


def test_a_wrong_key_in_the_config_names_its_line(tmp_path):
    cfg = tmp_path / "moat.toml"
    cfg.write_text('[server]\nupstream = "http://127.0.0.1:9"\n[feeds]\n[[feeds.subscribe]]\n'
                   'name = "x"\nurl = "https://x.example/.well-known/moat/feed/"\nkey = "x+00000000+AQ=="\n')
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"{cfg}:7" in out and "feeds.subscribe.key" in out, out
