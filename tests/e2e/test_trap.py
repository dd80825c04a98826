"""The SMTP trap against real clients: smtplib and aiosmtplib (STARTTLS, implicit TLS, AUTH PLAIN
and LOGIN), swaks from rotating loopback addresses, Postfix's smtp-source for load, and
Postfix's smtp-sink as every destination a relay could reach, which must receive nothing.
Also: kill -9 under load loses no acknowledged message, and malformed input closes the session
while keeping what was acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from email.message import EmailMessage

import aiosmtplib
import pytest

from trap_harness import Trap, smtp_exchange

NOVERIFY = ssl._create_unverified_context()
QUEUED = re.compile(rb"queued as ([0-9A-F]{16})")


@pytest.fixture
def trap():
    t = Trap()
    yield t
    t.stop()


def queued_id(resp: bytes) -> str:
    m = QUEUED.search(resp)
    assert m, resp
    return m.group(1).decode()


def test_smtplib_starttls_both_mechanisms_and_the_kth_attempt(trap):
    with smtplib.SMTP("127.0.0.1", trap.port, timeout=10, source_address=("127.20.0.1", 0)) as s:
        code, banner = s.ehlo("bot.example")
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls", "auth"):
            assert s.has_extn(ext), (ext, banner)
        assert set(s.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
        s.starttls(context=NOVERIFY)
        s.ehlo("bot.example")
        assert not s.has_extn("starttls")
        # AUTH LOGIN (smtplib sends the user name as the initial response), wrong twice...
        s.user, s.password = "sales@trap.test", "Xq7!not-common"
        for _ in range(2):
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                s.auth("LOGIN", s.auth_login)
            assert e.value.smtp_code == 535
        # ...and the third try on that user name gets in: the K-th attempt rule.
        code, _ = s.auth("LOGIN", s.auth_login)
        assert code == 235
        body = b"From: sales@trap.test\r\nTo: v1@victim.test\r\nSubject: Your invoice\r\n\r\nPay at https://pay.scam.example/inv?id=77\r\n"
        s.mail("sales@trap.test")
        for r in ("v1@victim.test", "v2@victim.test", "v3@other.test"):
            assert s.rcpt(r)[0] == 250
        code, resp = s.data(body)
        assert code == 250 and resp.startswith(b"2.0.0 Ok: queued as ")
        mid = queued_id(resp)
    shown = trap.show(mid)
    msg = shown["message"]
    assert msg["client_ip"] == "127.20.0.1"
    assert msg["tls"] is True and msg["listener"] == "smtp"
    assert (msg["auth_user"], msg["auth_password"]) == ("sales@trap.test", "Xq7!not-common")
    assert msg["rcpt_to"] == ["v1@victim.test", "v2@victim.test", "v3@other.test"]
    assert msg["sha256"] == hashlib.sha256(body).hexdigest()
    assert trap.raw(mid) == body
    assert any(i["kind"] == "url" and i["value"] == "https://pay.scam.example/inv?id=77" for i in shown["iocs"])
    verdicts = [(l["mechanism"], l["verdict"]) for l in reversed(trap.logins())]
    assert verdicts == [("LOGIN", "refused"), ("LOGIN", "refused"), ("LOGIN", "kth-attempt")]

    # AUTH PLAIN with a common password succeeds at once, in the clear too.
    with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
        s.ehlo("bot2")
        s.user, s.password = "info@trap.test", "123456"
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
    assert trap.logins()[0]["verdict"] == "common-password"
    assert trap.logins()[0]["mechanism"] == "PLAIN"


def test_aiosmtplib_implicit_tls_and_starttls(trap):
    html = EmailMessage()
    html["From"] = "promo@spam.test"
    html["To"] = "target@victim.test"
    html["Subject"] = "Déjà vu – offre spéciale"
    html.set_content("Plain part: hxxps://plain-link[.]example/p")
    html.add_alternative('<html><body><a href="https://bit.ly/3xYz">Click</a>'
                         '<img src="https://track.spam.example/pixel.gif?u=1"></body></html>', subtype="html")

    async def go():
        # Port 465 style: TLS from the first byte, AUTH PLAIN.
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=trap.tls_port, use_tls=True, tls_context=NOVERIFY)
        await c.connect()
        await c.ehlo()
        assert c.supports_extension("auth") and not c.supports_extension("starttls")
        r = await c.auth_plain("promo@spam.test", "password")
        assert r.code == 235
        errors, resp = await c.send_message(html)
        assert errors == {}
        await c.quit()
        # STARTTLS, AUTH LOGIN.
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=trap.port, start_tls=True, tls_context=NOVERIFY)
        await c.connect()
        await c.ehlo()  # RFC 3207: the server forgot the EHLO sent before STARTTLS
        assert c.supports_extension("auth") and not c.supports_extension("starttls")
        r = await c.auth_login("other@spam.test", "qwerty")
        assert r.code == 235
        errors, resp2 = await c.sendmail("other@spam.test", ["x@victim.test"], b"Subject: hi\r\n\r\nbody\r\n")
        assert errors == {}
        await c.quit()
        return resp, resp2

    resp, resp2 = asyncio.run(go())
    first = trap.show(queued_id(resp.encode()))
    assert first["message"]["tls"] is True and first["message"]["listener"] == "smtps"
    assert first["message"]["subject"] == "Déjà vu – offre spéciale"
    urls = {i["value"]: i["detail"] for i in first["iocs"] if i["kind"] == "url"}
    assert "https://plain-link.example/p" in urls
    assert "shortener" in urls["https://bit.ly/3xYz"]
    assert "https://track.spam.example/pixel.gif?u=1" in urls
    second = trap.show(queued_id(resp2.encode()))
    assert second["message"]["auth_user"] == "other@spam.test" and second["message"]["tls"] is True


def test_swaks_from_rotating_addresses(trap):
    assert shutil.which("swaks"), "swaks is installed by scripts/install-test-deps.sh"
    sources = [f"127.31.{i}.{i + 1}" for i in range(5)]
    for ip in sources:
        r = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{trap.port}", "--local-interface", ip, "--tls",
             "--auth", "LOGIN", "--auth-user", f"user-{ip}@trap.test", "--auth-password", "12345678",
             "--from", f"user-{ip}@trap.test", "--to", "victim@victim.test",
             "--header", "Subject: swaks run", "--body", "see https://swaks-link.example/a"],
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout[-1500:]
        assert "queued as" in r.stdout
    msgs = trap.messages()
    assert sorted(m["client_ip"] for m in msgs) == sorted(sources)
    assert all(m["tls"] and m["auth_user"].startswith("user-") for m in msgs)
    clients = {i["value"]: i["messages"] for i in trap.iocs("client-ip")}
    assert clients == {ip: 1 for ip in sources}
    domains = {i["value"]: i["messages"] for i in trap.iocs("domain")}
    assert domains.get("swaks-link.example") == 5


def test_smtp_source_load_is_all_captured(trap):
    assert shutil.which("smtp-source")
    r = subprocess.run(["smtp-source", "-s", "10", "-m", "300", "-f", "bulk@spam.test",
                        "-t", "victim@victim.test", f"127.0.0.1:{trap.port}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    msgs = trap.messages()
    assert len(msgs) == 300
    assert {m["mail_from"] for m in msgs} == {"bulk@spam.test"}


def test_it_never_relays(trap):
    """Every destination a relay could use is a listening smtp-sink: the address literal's port
    25, a high port, and the recipients name them in every form bots use. It must receive
    nothing, and the trap must hold no outbound connection."""
    from test_mail_shield import RelaySink
    sinks = [RelaySink()]
    port25 = None
    try:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 25))
        probe.close()
        port25 = subprocess.Popen(["smtp-sink", "-u", "nobody", "-d", f"{sinks[0].dir}/p25-%M.",
                                   "127.0.0.1:25", "32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    except OSError:
        pass  # something (a system MTA) already has port 25; the high-port sink still counts
    try:
        sink_port = sinks[0].port
        recipients = ["victim@[127.0.0.1]", "victim@localhost", f"victim%[127.0.0.1]:{sink_port}@trap.test",
                      "victim%localhost@mx.trap.test", "@[127.0.0.1]:victim@example.org",
                      "victim@example.org", "postmaster@[IPv6:::1]"]
        with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
            s.ehlo("relay-tester")
            s.starttls(context=NOVERIFY)
            s.ehlo("relay-tester")
            s.user, s.password = "relay@trap.test", "111111"
            assert s.auth("PLAIN", s.auth_plain)[0] == 235
            for r in recipients:
                s.mail("relay@trap.test")
                code, _ = s.rcpt(r)
                if code == 250:
                    code, resp = s.data(f"Subject: relay test {r}\r\n\r\nrelay me\r\n".encode())
                    assert code == 250, resp
                else:
                    s.rset()
        # Unauthenticated open-relay probe too.
        with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
            s.ehlo("probe")
            assert s.sendmail("probe@spam.test", ["victim@[127.0.0.1]"], b"Subject: open relay?\r\n\r\nx\r\n") == {}
        time.sleep(2)
        assert sinks[0].messages() == []
        captured = trap.messages()
        assert len(captured) >= 6, captured
        # No TCP connection from the trap process to anything but its own listeners.
        ss = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
        pid = f"pid={trap.proc.pid},"
        outbound = [l for l in ss.splitlines() if pid in l
                    and l.split()[3].rsplit(":", 1)[-1] not in (str(trap.port), str(trap.tls_port))]
        assert outbound == [], outbound
    finally:
        for s in sinks:
            s.stop()
        if port25:
            port25.kill()
            port25.wait(5)


def test_kill9_under_load_loses_no_acknowledged_message(trap):
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int) -> None:
        i = 0
        while not stop.is_set() and i < 400:
            body = f"Subject: load {n}-{i}\r\n\r\ntoken-{n}-{i} https://load{n}.example/{i}\r\n".encode()
            try:
                with smtplib.SMTP("127.0.0.1", trap.port, timeout=5,
                                  source_address=(f"127.40.{n}.1", 0)) as s:
                    s.ehlo("load")
                    s.mail("l@spam.test")
                    s.rcpt("v@victim.test")
                    code, resp = s.data(body)
                    if code == 250:
                        with lock:
                            acked[queued_id(resp)] = body
            except (OSError, smtplib.SMTPException):
                return
            i += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    trap.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 50, len(acked)
    trap.start()  # recovery runs at start
    stored = {m["id"]: m for m in trap.messages()}
    missing = [i for i in acked if i not in stored]
    assert missing == [], f"{len(missing)} acknowledged messages lost"
    for mid, body in acked.items():
        assert stored[mid]["sha256"] == hashlib.sha256(body).hexdigest()
        assert trap.raw(mid) == body
    # Every row the index claims has its whole file; tmp/ holds no debris.
    for m in stored.values():
        assert trap.raw(m["id"]) and hashlib.sha256(trap.raw(m["id"])).hexdigest() == m["sha256"]
    assert list((trap.quarantine / "tmp").iterdir()) == []


def test_malformed_input_closes_the_session_and_keeps_what_was_acknowledged(trap):
    out = smtp_exchange(trap.port, [
        b"EHLO bad\r\n", b"MAIL FROM:<a@spam.test>\r\n", b"RCPT TO:<v@victim.test>\r\n", b"DATA\r\n",
        b"Subject: before garbage\r\n\r\nkept\r\n.\r\n",
        b"\x00\x01\x02\xff garbage\r\n", b"NOOP\r\n"])
    assert b"queued as" in out
    assert out.rstrip().endswith(b"500 5.5.2 Error: bad syntax"), out
    mid = queued_id(out)
    assert trap.raw(mid) == b"Subject: before garbage\r\n\r\nkept\r\n"
    # An over-long command line closes too.
    out = smtp_exchange(trap.port, [b"EHLO " + b"a" * 5000 + b"\r\n"])
    assert out.rstrip().endswith(b"500 5.5.2 Error: line too long"), out
    assert [m["id"] for m in trap.messages()] == [mid]
    bad = [l for l in trap.log_lines() if l.get("message") == "malformed input, closing"]
    assert len(bad) == 2, bad


def test_caps_and_timeouts():
    t = Trap("--max-sessions-per-ip", "3", "--command-timeout", "1s", "--max-recipients", "2",
             "--max-message-mb", "1")
    try:
        conns = [socket.create_connection(("127.0.0.1", t.port), 5, source_address=("127.50.0.1", 0))
                 for _ in range(3)]
        for c in conns:
            assert c.recv(100).startswith(b"220 ")
        extra = socket.create_connection(("127.0.0.1", t.port), 5, source_address=("127.50.0.1", 0))
        assert extra.recv(200).startswith(b"421 4.7.0"), "the 4th session from one address is refused"
        other = socket.create_connection(("127.0.0.1", t.port), 5, source_address=("127.50.0.2", 0))
        assert other.recv(100).startswith(b"220 "), "another address is not affected"
        # Idle past the command timeout: 421 and closed.
        time.sleep(1.5)
        other.settimeout(3)
        assert other.recv(200).startswith(b"421 4.4.2")
        for c in conns + [extra, other]:
            c.close()
        with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as s:
            s.ehlo("caps")
            s.mail("a@spam.test")
            assert s.rcpt("1@v.test")[0] == 250 and s.rcpt("2@v.test")[0] == 250
            assert s.rcpt("3@v.test")[0] == 452
            code, _ = s.data(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100)
            assert code == 552
        assert t.messages() == []
    finally:
        t.stop()


def test_campaigns_group_spam_runs(trap):
    """Two runs with per-victim names, tracking tokens and greetings, and one unrelated
    message: `moat quarantine campaigns` finds exactly those three groups."""
    names = ["alice", "bob", "carol", "dave", "erin"]
    run_a = ("Subject: {name}, your parcel {n} is waiting\r\nTo: {name}@victim{n}.test\r\n\r\n"
             "Hello {name}, we tried to deliver your parcel today but nobody was home. "
             "Schedule a new delivery within 24 hours or it goes back to the sender: "
             "https://parcel-track.example/r/{token}?id={n}\r\nThe delivery team\r\n")
    run_b = ("Subject: Invoice #{n} overdue\r\nTo: {name}@corp{n}.test\r\n\r\n"
             "Dear customer, invoice {n} is overdue. Pay now to avoid suspension of your "
             "account and a collection fee: https://billing-portal.example/pay/{token}\r\n")
    other = "Subject: Meeting notes\r\n\r\nThe notes from Tuesday are attached; see https://notes.example/tuesday\r\n"
    with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
        s.ehlo("spammer")
        for n, name in enumerate(names):
            token = hashlib.sha1(f"{name}{n}".encode()).hexdigest()[:12]
            s.sendmail("a@spam.test", [f"{name}@victim{n}.test"],
                       run_a.format(name=name, n=n, token=token).encode())
        for n, name in enumerate(names[:3]):
            token = hashlib.sha1(f"b{name}".encode()).hexdigest()[:16]
            s.sendmail("b@spam.test", [f"{name}@corp{n}.test"],
                       run_b.format(name=name, n=1000 + n, token=token).encode())
        s.sendmail("c@other.test", ["x@y.test"], other.encode())
    deadline = time.monotonic() + 10
    while True:
        r = trap.cli("campaigns", "--json")
        camps = json.loads(r.stdout)
        if sum(c["messages"] for c in camps) == 9 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    sizes = sorted(c["messages"] for c in camps)
    assert sizes == [1, 3, 5], camps
    big = next(c for c in camps if c["messages"] == 5)
    assert big["domains"] == ["parcel-track.example"]
