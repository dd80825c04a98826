"""The mail harness against itself (no Moat): a private Postfix 3.7 + Dovecot 2.3 on loopback
behave like a real mail server towards attackers at 127.x.y.z. Run with -s to see the exact
replies and timings.

Measured here (Postfix 3.7.11, Dovecot 2.3.19.1):
- Unknown local recipient: `550 5.1.1 <x@moat.test>: Recipient address rejected: User unknown
  in virtual mailbox table`; known: `250 2.1.5 Ok`; relay attempt by an outsider:
  `554 5.7.1 <x@example.com>: Relay access denied`; bad SMTP AUTH PLAIN:
  `535 5.7.8 Error: authentication failed: (reason unavailable)`.
- auth_failure_delay = 0 still answers a failure after ~0.5 s (Dovecot flushes delayed failures
  on a 500 ms timer). The anvil penalty is separate and has no switch: per source IP (IPv6:
  /48), the next attempt after a failure waits 4 s (then 8, 15 s when the user/password pair
  changes; repeating the same pair does not escalate), a success clears it. So: one failing
  attempt per source address in tests.
- A closed policy port costs ~1 s per check (try_limit 2, retry_delay 1 s) before DUNNO; with
  the check in sender and recipient restrictions that is ~2 s per RCPT. try_limit=1 inside the
  braces makes it immediate.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mail_harness import (
    TEST_HASH_NONCE,
    TEST_POLICY_TOKEN,
    MailStack,
    auth_plain,
    free_port,
    imap_login,
    smtp_session,
    transcript_rcpt,
    wait_for,
)


@pytest.fixture(scope="module")
def stack():
    s = MailStack()
    s.add_user("alice", "alice-pw-1")
    s.add_user("bob", "bob-pw-2")
    s.add_user("dave", "dave-pw-4")
    t = time.monotonic()
    s.start()
    print(f"\n[mail stack up in {time.monotonic() - t:.2f}s: smtp :{s.smtp_port} imap :{s.imap_port} "
          f"auth :{s.auth_port} under {s.root}]")
    try:
        yield s
    finally:
        t = time.monotonic()
        s.stop()
        print(f"[mail stack down in {time.monotonic() - t:.2f}s]")


def _message(subject: str) -> bytes:
    return f"From: alice@moat.test\r\nTo: bob@moat.test\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def test_real_user_authenticates_and_mail_arrives(stack):
    before = stack.all_delivered()
    marker = uuid.uuid4().hex
    smtp = smtp_session(stack, "127.55.0.10")
    try:
        code, msg = auth_plain(smtp, "alice", "alice-pw-1")
        print(f"AUTH PLAIN ok: {code} {msg!r}")
        assert code == 235, msg
        refused = smtp.sendmail("alice@moat.test", ["bob@moat.test"], _message(marker))
        assert refused == {}
    finally:
        smtp.quit()
    msgs = stack.wait_delivered("bob")
    assert any(marker.encode() in m for m in msgs)
    assert stack.all_delivered() == before + 1
    wait_for(lambda: "sasl_username=alice" in stack.maillog(), 5, what="the SASL login in the maillog")
    assert imap_login(stack, "127.55.0.10", "bob", "bob-pw-2")


def test_wrong_password_gets_535(stack):
    smtp = smtp_session(stack, "127.55.0.11")
    try:
        t = time.monotonic()
        code, msg = auth_plain(smtp, "alice", "wrong-password")
        print(f"AUTH PLAIN bad password: {code} {msg!r} after {time.monotonic() - t:.2f}s")
    finally:
        smtp.close()
    assert code == 535
    assert msg.startswith(b"5.7.8 ")
    wait_for(lambda: "Password mismatch" in stack.dovecot_log(), 5, what="the failure in Dovecot's log")
    assert not imap_login(stack, "127.55.0.12", "alice", "wrong-password")


def test_rcpt_unknown_550_known_250(stack):
    replies = transcript_rcpt(stack, "127.55.0.13", "someone@example.org",
                              ["bob@moat.test", "nosuchuser@moat.test"])
    for rcpt, code, raw in replies:
        print(f"RCPT {rcpt}: {raw!r}")
    (_, c1, r1), (_, c2, r2) = replies
    assert (c1, r1) == (250, b"250 2.1.5 Ok\r\n")
    assert c2 == 550 and r2.startswith(b"550 5.1.1 <nosuchuser@moat.test>: Recipient address rejected")


def test_outsider_cannot_relay_and_nothing_leaves(stack):
    [(_, code, raw)] = transcript_rcpt(stack, "127.55.0.14", "spammer@example.org", ["victim@example.com"])
    print(f"relay attempt: {raw!r}")
    assert code == 554 and raw.startswith(b"554 5.7.1 ") and b"Relay access denied" in raw

    # Even an authenticated user cannot send out: default_transport is error:, and smtpd
    # rejects a recipient that resolves to the error transport at RCPT time.
    smtp = smtp_session(stack, "127.55.0.15")
    try:
        assert auth_plain(smtp, "alice", "alice-pw-1")[0] == 235
        smtp.mail("alice@moat.test")
        code, msg = smtp.rcpt("victim@example.com")
        print(f"authenticated outbound RCPT: {code} {msg!r}")
    finally:
        smtp.quit()
    assert code == 550 and msg.startswith(b"5.1.1 ") and b"outbound disabled in tests" in msg
    assert stack.queue_ids() == []


def test_honey_account_works_at_once_without_restart(stack):
    pid_before = stack._dovecot_pid
    assert not imap_login(stack, "127.55.0.16", "honey-ceo", "Summer2024!")
    stack.add_honey("honey-ceo", "Summer2024!")
    t = time.monotonic()
    assert imap_login(stack, "127.55.0.17", "honey-ceo", "Summer2024!")
    print(f"honey IMAP login {time.monotonic() - t:.2f}s after add_honey")
    smtp = smtp_session(stack, "127.55.0.18")
    try:
        code, msg = auth_plain(smtp, "honey-ceo", "Summer2024!")
        assert code == 235, msg
    finally:
        smtp.close()
    # Appended again while running: picked up too.
    stack.add_honey("honey-admin", "123456")
    assert imap_login(stack, "127.55.0.19", "honey-admin", "123456")
    assert stack.dovecot_log().count("starting up") == 1
    assert pid_before and stack._dovecot_pid == pid_before
    with pytest.raises(ValueError):
        stack.add_honey("alice", "another-password")


def test_user_added_while_running_after_reload(stack):
    stack.add_user("carol", "carol-pw-3")  # reloads Postfix
    t = time.monotonic()
    wait_for(lambda: transcript_rcpt(stack, "127.55.0.20", "x@example.org", ["carol@moat.test"])[0][1] == 250,
             10, interval=0.2, what="carol to be a known recipient")
    print(f"new user known to Postfix {time.monotonic() - t:.2f}s after reload")


def test_queue_tools_show_and_flush_deferred_mail(stack):
    assert stack.queue_ids() == []
    assert "Mail queue is empty" in stack.mailq()
    # dave's Maildir path is blocked by a root-owned file: virtual(8) defers the message.
    blocker = stack.vmail / "dave"
    blocker.write_text("not a directory")
    smtp = smtp_session(stack, "127.55.0.21")
    try:
        assert smtp.sendmail("x@example.org", ["dave@moat.test"], _message("deferred")) == {}
    finally:
        smtp.quit()
    ids = wait_for(lambda: stack.queue_ids() if "status=deferred" in stack.maillog() else None, 10,
                   what="a deferred message")
    print(f"deferred queue ids: {ids}\n{stack.mailq()}")
    assert len(ids) == 1
    blocker.unlink()
    stack.flush()
    assert len(stack.wait_delivered("dave")) == 1
    wait_for(lambda: stack.queue_ids() == [], 10, what="an empty queue")


def _policy_stack(**kw) -> MailStack:
    s = MailStack(policy_addr=f"127.0.0.1:{free_port()}", **kw)  # nothing listens there
    s.add_user("alice", "alice-pw-1")
    return s.start()


@pytest.mark.parametrize("options, least, most", [({}, 1.8, 8.0), ({"try_limit": 1}, 0.0, 1.5)],
                         ids=["postfix-defaults", "try_limit=1"])
def test_dead_policy_server_fails_open(options, least, most):
    s = _policy_stack(policy_options=options)
    try:
        restr = s.postconf("-h", "smtpd_sender_restrictions", "smtpd_recipient_restrictions").stdout
        print(f"restrictions:\n{restr}")
        assert restr.count("default_action=DUNNO") == 2
        t = time.monotonic()
        [(_, code, raw)] = transcript_rcpt(s, "127.56.0.1", "x@example.org", ["alice@moat.test"])
        took = time.monotonic() - t
        print(f"policy port closed, {options or 'defaults'}: RCPT {raw!r} after {took:.2f}s")
        assert code == 250 and least <= took < most
        smtp = smtp_session(s, "127.56.0.2")
        try:
            assert smtp.sendmail("x@example.org", ["alice@moat.test"], _message("fail-open")) == {}
        finally:
            smtp.quit()
        assert len(s.wait_delivered("alice")) == 1
        wait_for(lambda: "Connection refused" in s.maillog(), 5, what="the refused policy connection in the maillog")
    finally:
        s.stop()


class _PolicyHandler(BaseHTTPRequestHandler):
    seen: list[dict] = []
    deny = {"blocked"}

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status = -1 if body.get("login") in self.deny and "command=allow" in self.path else 0
        data = json.dumps({"status": status, "msg": "policy says no" if status else "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_dovecot_auth_policy_server_is_asked():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _PolicyHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _PolicyHandler.seen = []
    s = MailStack(policy_url=f"http://127.0.0.1:{srv.server_address[1]}/")
    s.add_user("alice", "alice-pw-1")
    s.add_user("blocked", "blocked-pw")
    try:
        s.start()
        assert imap_login(s, "127.57.0.1", "alice", "alice-pw-1")
        assert not imap_login(s, "127.57.0.2", "blocked", "blocked-pw")
        smtp = smtp_session(s, "127.57.0.3")
        try:
            assert auth_plain(smtp, "alice", "alice-pw-1")[0] == 235
        finally:
            smtp.close()
        wait_for(lambda: sum("command=report" in r["path"] for r in _PolicyHandler.seen) >= 2, 5,
                 what="policy reports")
    finally:
        s.stop()
        srv.shutdown()
        srv.server_close()
    seen = _PolicyHandler.seen
    for r in seen:
        print(f"policy request {r['path']} {r['auth']!r} {json.dumps(r['body'], sort_keys=True)}")
    assert all(r["auth"] == f"Bearer {TEST_POLICY_TOKEN}" for r in seen)
    alice = [r["body"] for r in seen if r["body"].get("login") == "alice"]
    assert {b.get("protocol") for b in alice} >= {"imap", "smtp"}
    assert {b.get("remote") for b in alice} >= {"127.57.0.1", "127.57.0.3"}
    expected = hashlib.sha256(f"{TEST_HASH_NONCE}alice\0alice-pw-1".encode()).hexdigest()
    assert {b.get("pwhash") for b in alice} == {expected}, "pwhash is not sha256(nonce||login||NUL||password)"
    blocked_reports = [r["body"] for r in seen if r["body"].get("login") == "blocked" and "report" in r["path"]]
    assert blocked_reports and blocked_reports[0].get("policy_reject") is True


def test_stop_is_idempotent_and_cleans_up():
    s = MailStack()
    s.start()
    root, port = s.root, s.smtp_port
    s.stop()
    s.stop()
    assert not root.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
