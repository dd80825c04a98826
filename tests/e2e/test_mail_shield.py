"""The mail shield against a real Postfix and Dovecot (private instances on loopback high
ports), attacked from rotating 127.x.y.z addresses: SASL brute force, recipient enumeration,
honey accounts with captured mail, and fail-open when Moat is down.

Run alone with scripts/e2e/mail.sh, which prints one PASS/FAIL line per check."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mail_harness import (
    COMMON_PASSWORDS,
    TEST_HASH_NONCE,
    TEST_POLICY_TOKEN,
    MailStack,
    RelaySink,  # moved to mail_harness; still importable from here
    auth_plain,
    free_port,
    smtp_session,
    transcript_rcpt,
)
from moat_harness import moat_bin

COMMON = COMMON_PASSWORDS


class MailMoat:
    """A mail-only `moat run` (no upstream): policy, auth policy and capture listeners."""

    def __init__(self, extra: str = "", recipients=()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="moat-mailshield-"))
        os.chmod(self.dir, 0o755)  # Dovecot reads the honey passwd-file in here
        self.state = self.dir / "state"
        self.state.mkdir()
        os.chmod(self.state, 0o755)
        self.policy_port, self.auth_port, self.capture_port = free_port(), free_port(), free_port()
        self.honey = self.state / "honey.passwd"
        self.quarantine = self.state / "quarantine"
        rcpts = ", ".join(f'"{r}"' for r in recipients)
        self.config = self.dir / "moat.toml"
        self.config_text = f"""
[server]
state_dir = "{self.state}"
[admin]
listen = "127.0.0.1:0"
token = "mail-test-admin-token-0123"
[mail]
policy_listen = "127.0.0.1:{self.policy_port}"
auth_policy_listen = "127.0.0.1:{self.auth_port}"
auth_policy_token = "{TEST_POLICY_TOKEN}"
auth_policy_nonce = "{TEST_HASH_NONCE}"
capture_listen = "127.0.0.1:{self.capture_port}"
recipients = [{rcpts}]
{extra}
"""
        self.log = self.dir / "moat.log"
        self.proc: subprocess.Popen | None = None

    def start(self, maps=(), postfix_dir=None) -> "MailMoat":
        """Starts Moat; `maps` are Postfix map files listing the real recipients (the test
        Postfix's virtual_mailbox_maps), which Moat re-reads when they change; `postfix_dir`
        is the test Postfix's config directory, which Moat audits (`postconf -c`) before it
        makes honey accounts (without it Moat would audit /etc/postfix)."""
        listed = ", ".join(f'"{p}"' for p in maps)
        head = f"[mail]\nrecipient_maps = [{listed}]\n"
        if postfix_dir is not None:
            head += f'postfix_config_dir = "{postfix_dir}"\n'
        self.config.write_text(self.config_text.replace("[mail]\n", head, 1))
        self.proc = subprocess.Popen(
            [str(moat_bin()), "run", "--config", str(self.config)],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("MOAT_TEST_LOG", "info")})
        deadline = time.monotonic() + 15
        while "mail shield is running" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "moat did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def policy_addr(self) -> str:
        return f"127.0.0.1:{self.policy_port}"

    @property
    def policy_url(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}/"

    def wait_recipients(self, n: int, timeout: float = 10) -> None:
        """Waits until Moat has loaded at least `n` recipients."""
        deadline = time.monotonic() + timeout
        while True:
            counts = [json.loads(l).get("recipients", 0) for l in self.log.read_text().splitlines()
                      if "recipient list loaded" in l]
            if counts and counts[-1] >= n:
                return
            assert time.monotonic() < deadline, f"Moat knows {counts[-1:]} recipients, not {n}"
            time.sleep(0.1)

    def decisions(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("target") == "moat::decision":
                out.append(d)
        return out

    def captured(self) -> list[dict]:
        """Deliveries in the quarantine index, read through `moat quarantine list --json`."""
        if not (self.quarantine / "index.sqlite").exists():
            return []
        r = subprocess.run([str(moat_bin()), "quarantine", "--quarantine", str(self.quarantine), "list",
                            "--json", "--limit", "10000"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def bans(self) -> list[dict]:
        r = subprocess.run([str(moat_bin()), "bans", "list", "--json", "--state-dir", str(self.state)],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def mail_moat():
    started: list[MailMoat] = []

    def make(extra: str = "", recipients=()) -> MailMoat:
        """An unstarted Moat: the test builds the mail stack around its ports, then calls
        `start(maps=[stack.vmailbox])`."""
        m = MailMoat(extra, recipients)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()
        print(f"--- moat log tail ({m.log}) ---")
        print("\n".join(m.log.read_text().splitlines()[-15:]))


def stack_for(m: MailMoat, **kw) -> MailStack:
    """The mail stack wired to `m` (policy in smtpd_sender_restrictions, evaluated at RCPT
    time, so a refusal names the sender, never the recipient), started, and `m` started on
    its recipient map and its Postfix configuration (as in production, Postfix's config exists
    before Moat audits it). The caller's `with stack:` stops the stack."""
    stack = MailStack(honey_passwd=m.honey, policy_addr=m.policy_addr, policy_in=("sender",),
                      policy_url=m.policy_url, **kw)
    stack.start()
    try:
        m.start(maps=[stack.vmailbox], postfix_dir=stack.postfix_dir)
    except BaseException:
        stack.stop()
        raise
    return stack


def timed_auth(stack, ip, login, password) -> tuple[int, float]:
    t0 = time.monotonic()
    with smtp_session(stack, ip, timeout=60) as s:
        code, _ = auth_plain(s, login, password)
    return code, time.monotonic() - t0


def test_brute_force_across_addresses_is_slowed_and_people_still_get_in(mail_moat):
    m = mail_moat('brute_delay = "2s"\nbrute_address_failures = 3\nbrute_network_failures = 1000\n')
    logins = [f"user{i:02d}" for i in range(20)]
    with stack_for(m) as stack:
        for login in logins:
            stack.add_user(login, f"Str0ng-{login}-secret", wait=False)
        stack.add_user("carol", "carol-Real-Passw0rd", wait=False)
        stack.reload()
        m.wait_recipients(21)
        # 200 addresses in four /24s, each tries one of the 20 logins with a common password.
        attackers = [f"127.60.{i // 50}.{i % 50 + 10}" for i in range(200)]
        jobs = [(ip, logins[i % 20], COMMON[i % 50]) for i, ip in enumerate(attackers)]
        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(lambda j: timed_auth(stack, *j), jobs))
        assert all(code == 535 for code, _ in first), first[:5]
        # Now every attempt on those logins waits, from any address, even a fresh one.
        fresh = [f"127.61.{i}.10" for i in range(6)]
        later = [timed_auth(stack, ip, logins[i], COMMON[100 + i]) for i, ip in enumerate(fresh)]
        assert all(code == 535 and t >= 1.9 for code, t in later), later
        # People: a login nobody attacked, from a fresh address, gets straight in; the owner of
        # an attacked login, with the right password, gets in too (after the wait).
        code, t = timed_auth(stack, "127.62.0.10", "carol", "carol-Real-Passw0rd")
        assert code == 235 and t < 1.5, (code, t)
        code, t = timed_auth(stack, "127.62.1.10", "user03", "Str0ng-user03-secret")
        assert code == 235, (code, t)
        # An address that kept failing is banned in the shared store (the HTTP shield's too),
        # and refused outright.
        repeat = "127.63.0.10"
        for i in range(3):
            timed_auth(stack, repeat, logins[i], COMMON[200 + i])
        deadline = time.monotonic() + 5
        while not any(b.get("scope") == repeat for b in m.bans()):
            assert time.monotonic() < deadline, m.bans()
            time.sleep(0.2)
        # Moat's own answer for that address is now a refusal...
        import urllib.request
        req = urllib.request.Request(
            m.policy_url + "?command=allow", method="POST",
            data=json.dumps({"login": "carol", "remote": repeat, "pwhash": "x"}).encode(),
            headers={"Authorization": f"Bearer {TEST_POLICY_TOKEN}"})
        assert json.loads(urllib.request.urlopen(req, timeout=5).read())["status"] == -1
        # ...and Dovecot applies it: even the right password fails from there.
        code, _ = timed_auth(stack, repeat, "carol", "carol-Real-Passw0rd")
        assert code != 235, "a banned address got in"
        deadline = time.monotonic() + 5
        # Two refusals logged: the direct question above, and Dovecot's own for this login.
        while sum(d.get("rule") == "mail-banned" and d.get("key") == "carol" for d in m.decisions()) < 2:
            assert time.monotonic() < deadline, stack.dovecot_log()[-1500:]
            time.sleep(0.1)
    delays = [d for d in m.decisions() if d.get("rule") == "mail-brute-force" and d.get("action") == "delay"]
    assert delays, "no delay decision was logged"


def test_enumeration_learns_nothing_after_the_threshold(mail_moat):
    valid = [f"real{i}@moat.test" for i in range(10)]
    m = mail_moat()
    with stack_for(m) as stack:
        for v in valid:
            stack.add_user(v.split("@")[0], "x-Secret-123", wait=False)
        stack.reload()
        m.wait_recipients(10)
        # 500 recipients, 10 of them valid (one in every 50), probed 10 per session from
        # rotating addresses in five /24s, all with the farm's envelope sender.
        probes = [f"guess{i}@moat.test" for i in range(500)]
        for k, v in enumerate(valid):
            probes[45 + 50 * k] = v
        replies = []
        for n in range(50):
            ip = f"127.70.{n % 5}.{n // 5 + 10}"
            replies += transcript_rcpt(stack, ip, "list-check@farm.example", probes[10 * n:10 * n + 10])
    # The threshold: from here on every reply is the same refusal. Before it, fresh addresses
    # still got Postfix's own answers until the sender and the networks were judged.
    last_leak = max(i for i, (_, code, _) in enumerate(replies) if code != 450)
    print(f"\nreplies that told anything: the first {last_leak + 1} of {len(replies)}")
    assert last_leak < 45, f"the threshold came late: {last_leak}"
    after = replies[last_leak + 1:]
    after_valid = {reply for r, _, reply in after if r in valid}
    after_invalid = {reply for r, _, reply in after if r not in valid}
    assert len(after_valid) == 1 and after_valid == after_invalid, (after_valid, after_invalid)
    assert sum(r in valid for r, _, _ in after) == 10, "every valid recipient was probed after it"
    print("after the threshold, valid and invalid alike:", after_valid)


@pytest.mark.parametrize("response", ["defer", "discard"])
def test_a_mistaken_sender_still_learns_only_with_defer(mail_moat, response):
    """Both answers hide which recipients exist; only the deferral lets a real sender caught
    by mistake learn the truth later. This is why `defer` is the default."""
    m = mail_moat(f'enum_per_client = 3\nenum_judged = "3s"\nenum_response = "{response}"\n')
    with stack_for(m) as stack:
        stack.add_user("alice", "x-Secret-123")
        m.wait_recipients(1)
        mta = "127.71.0.7"
        # A newsletter with three stale addresses makes its MTA look like a prober.
        transcript_rcpt(stack, mta, "news@partner.example", ["old1@moat.test", "old2@moat.test",
                                                             "old3@moat.test"])
        now = transcript_rcpt(stack, mta, "news@partner.example", ["alice@moat.test", "alise@moat.test"])
        assert now[0][2] == now[1][2], now  # no difference to learn from
        if response == "defer":
            assert now[0][1] == 450
            time.sleep(3.5)  # the sender's MTA retries later
            later = transcript_rcpt(stack, mta, "news@partner.example", ["alice@moat.test", "alise@moat.test"])
            assert later[0][1] == 250 and later[1][1] == 550 and b"5.1.1" in later[1][2], later
        else:
            # Accepted, so the MTA sends it, and then it is gone: nobody receives it and no
            # bounce ever tells the sender the typo failed.
            assert now[0][1] == 250
            with smtp_session(stack, mta) as s:
                s.ehlo("partner.example")
                refused = s.sendmail("news@partner.example", ["alice@moat.test", "alise@moat.test"],
                                     b"Subject: news\r\n\r\nhello\r\n")
                assert refused == {}, refused
            time.sleep(2)
            assert stack.mailbox("alice") == [], "discard delivered after all"


def test_honey_account_catches_the_bot_and_keeps_its_mail(mail_moat):
    m = mail_moat()
    sink = RelaySink()
    try:
        _honey_scenario(m, sink)
    finally:
        sink.stop()


def _honey_scenario(m: MailMoat, sink: RelaySink) -> None:
    with stack_for(m, postfix_settings=sink.settings()) as stack:
        stack.add_user("alice", "x-Secret-123")
        m.wait_recipients(1)
        # Control: a real user's mail to the outside does reach the relay.
        with smtp_session(stack, "127.82.0.10") as s:
            assert auth_plain(s, "alice", "x-Secret-123")[0] == 235
            assert s.sendmail("alice@moat.test", ["friend@example.net"], b"Subject: hi\r\n\r\nreal\r\n") == {}
        deadline = time.monotonic() + 20
        while len(sink.messages()) < 1:
            assert time.monotonic() < deadline, f"the control message was not relayed: {stack.mailq()}"
            time.sleep(0.2)
        # Bots try info@ with common passwords, mostly "qwerty", from rotating addresses.
        tries = ["qwerty", "qwerty", "123456", "qwerty", "password"]
        for i, pw in enumerate(tries):
            code, _ = timed_auth(stack, f"127.80.{i}.10", "info@moat.test", pw)
            assert code == 535
        deadline = time.monotonic() + 5
        while "info@moat.test:{PLAIN}qwerty" not in (m.honey.read_text() if m.honey.exists() else ""):
            assert time.monotonic() < deadline, m.honey.read_text() if m.honey.exists() else "no file"
            time.sleep(0.1)
        time.sleep(1.2)  # Dovecot notices a changed passwd-file by its mtime
        # The bot "gets in" with the password it was trying, and sends 50 messages.
        with smtp_session(stack, "127.81.0.10") as s:
            code, msg = auth_plain(s, "info@moat.test", "qwerty")
            assert code == 235, (code, msg)
            for i in range(50):
                rcpts = [f"victim{i}@example.org", "alice@moat.test"]
                body = (f"From: info@moat.test\r\nTo: victim{i}@example.org\r\nSubject: invoice {i}\r\n\r\n"
                        f"Pay here: https://phish.example/pay?id={i}\r\n").encode()
                refused = s.sendmail("info@moat.test", rcpts, body)
                assert refused == {}, refused  # every recipient accepted: 250 all the way
        deadline = time.monotonic() + 30
        while len(m.captured()) < 50:
            assert time.monotonic() < deadline, f"{len(m.captured())} of 50 captured; queue: {stack.mailq()}"
            time.sleep(0.2)
        time.sleep(1)
        captured = m.captured()
        assert len(captured) == 50
        assert all(c["mail_from"] == "info@moat.test" for c in captured)
        assert {c["rcpt_to"][0] for c in captured} == {f"victim{i}@example.org" for i in range(50)}
        # Taken by the capture listener (the trap in capture mode), recorded as such.
        assert all(c["listener"] == "capture" for c in captured)
        # Nothing was delivered to a mailbox, nothing relayed, nothing left in the queue.
        assert stack.mailbox("alice") == []
        assert stack.all_delivered() == 0
        assert stack.queue_ids() == [], stack.mailq()
        relayed = sink.messages()
        assert len(relayed) == 1 and b"real" in relayed[0], "honey mail reached the relay"
        log = stack.maillog()
        assert "status=bounced" not in log, log[-2000:]
        assert f"relay=127.0.0.1[127.0.0.1]:{m.capture_port}" in log
    assert any(d.get("rule") == "mail-honey" and d.get("action") == "create" for d in m.decisions())


def test_mail_flows_when_moat_is_down(mail_moat):
    m = mail_moat()
    with stack_for(m) as stack:
        stack.add_user("alice", "x-Secret-123")
        stack.add_user("bob", "b0b-Secret-456")
        m.wait_recipients(2)
        m.stop()
        t0 = time.monotonic()
        with smtp_session(stack, "127.90.0.10") as s:
            code, _ = auth_plain(s, "bob", "b0b-Secret-456")
            assert code == 235
            assert s.sendmail("bob@moat.test", ["alice@moat.test"], b"Subject: hi\r\n\r\nstill here\r\n") == {}
        got = stack.wait_delivered("alice", 1, timeout=30)
        assert b"still here" in got[0]
        print(f"\n[fail-open: login and send with Moat down took {time.monotonic() - t0:.1f} s]")


def test_bad_input_is_logged_and_closed_and_the_allowlist_always_wins(mail_moat):
    """No Postfix or Dovecot needed: Moat's own listeners against garbage, a missing token,
    and an allowlisted address that fails a hundred times."""
    import socket
    import urllib.error
    import urllib.request

    m = mail_moat('brute_address_failures = 3\n')
    m.config_text = m.config_text.replace("[mail]", '[bans]\nallow = ["127.95.0.0/24"]\n\n[mail]', 1)
    m.start()

    def policy(sock, **attrs) -> bytes:
        sock.sendall(("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n").encode())
        return sock.recv(4096)

    # Garbage and an over-long line each close their connection; Moat keeps serving.
    for junk in (b"GET / HTTP/1.1\r\n\r\n", b"a=" + b"x" * 10000 + b"\n\n", b"\x00\x01\x02\n\n"):
        with socket.create_connection(("127.0.0.1", m.policy_port), timeout=5) as s:
            s.sendall(junk)
            assert s.recv(100) == b"", f"no close after {junk[:20]!r}"
    with socket.create_connection(("127.0.0.1", m.policy_port), timeout=5) as s:
        assert policy(s, request="smtpd_access_policy", protocol_state="RCPT",
                      client_address="127.96.0.1", recipient="x@moat.test") == b"action=DUNNO\n\n"
    assert "malformed request, closing" in m.log.read_text() or "bad input, closing" in m.log.read_text()

    def auth(command: str, body: dict, token: str | None = TEST_POLICY_TOKEN):
        req = urllib.request.Request(f"{m.policy_url}?command={command}", method="POST",
                                     data=json.dumps(body).encode())
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    # Without Dovecot's token nothing is decided.
    assert auth("allow", {"login": "a", "remote": "127.97.0.1"}, token=None)[0] == 401
    assert auth("allow", {"login": "a", "remote": "127.97.0.1"}, token="wrong-token-123456")[0] == 401
    assert auth("allow", {"login": "a"}, token=TEST_POLICY_TOKEN)[0] == 200
    assert auth("report", {"not": "dovecot"})[0] == 200
    # An allowlisted address failing a hundred times on one login is never delayed or banned;
    # a stranger doing a tenth of that is.
    for i in range(100):
        auth("report", {"login": "boss", "remote": "127.95.0.7", "pwhash": f"h{i}", "success": False})
    assert auth("allow", {"login": "boss", "remote": "127.95.0.7", "pwhash": "h"})[1]["status"] == 0
    for i in range(10):
        auth("report", {"login": f"u{i}", "remote": "127.98.0.7", "pwhash": "h", "success": False})
    time.sleep(0.5)
    assert auth("allow", {"login": "x", "remote": "127.98.0.7", "pwhash": "h"})[1]["status"] == -1
    assert not any(b.get("scope", "").startswith("127.95.") for b in m.bans()), m.bans()
    # The mail counters are on the admin listener's /metrics, behind its token.
    admin = next(json.loads(l)["admin"] for l in m.log.read_text().splitlines() if "moat is running" in l)
    req = urllib.request.Request(f"http://{admin}/metrics",
                                 headers={"Authorization": "Bearer mail-test-admin-token-0123"})
    metrics = urllib.request.urlopen(req, timeout=5).read().decode()
    counts = {line.split()[0]: int(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("moat_mail_")}
    assert counts["moat_mail_policy_requests_total"] >= 1, metrics
    assert counts["moat_mail_auth_rejects_total"] >= 1, metrics


def test_hydra_never_finds_the_password(mail_moat):
    """THC hydra, the brute-forcer bots use, against SMTP AUTH with a wordlist whose last entry
    is the right password: Moat bans its address after three failures, so the right password,
    when hydra reaches it, is refused too. (hydra cannot pick its source address, so it comes
    from 127.0.0.1.)"""
    import shutil

    assert shutil.which("hydra"), "hydra is missing: apt-get install hydra (scripts/install-test-deps.sh)"
    m = mail_moat('brute_address_failures = 3\n')
    with stack_for(m) as stack:
        stack.add_user("carol", "carol-Real-Passw0rd")
        m.wait_recipients(1)
        words = m.dir / "words.txt"
        words.write_text("\n".join(["123456", "password", "qwerty", "letmein", "carol-Real-Passw0rd"]) + "\n")
        r = subprocess.run(
            ["hydra", "-l", "carol", "-P", str(words), "-t", "1", "-f", "-s", str(stack.smtp_port),
             "127.0.0.1", "smtp", "-m", "PLAIN"],
            capture_output=True, text=True, timeout=240)
        out = r.stdout + r.stderr
        assert "0 valid password" in out or "0 valid passwords" in out, out[-1500:]
        assert "password: carol-Real-Passw0rd" not in out, out[-1500:]
        assert any(b.get("scope") == "127.0.0.1" for b in m.bans()), m.bans()
        # Carol herself, from her own address, still gets in.
        code, _ = timed_auth(stack, "127.99.0.10", "carol", "carol-Real-Passw0rd")
        assert code == 235


def test_the_policy_also_listens_on_a_unix_socket(mail_moat):
    """`check_policy_service unix:/path`: real Postfix asks Moat over a socket, and an
    enumerator through it gets the same refusal for every recipient."""
    m = mail_moat()
    sock = m.dir / "policy.sock"
    m.config_text = m.config_text.replace(f'policy_listen = "127.0.0.1:{m.policy_port}"',
                                          f'policy_listen = "unix:{sock}"')
    entry = f"check_policy_service {{ unix:{sock}, default_action=DUNNO }}"
    stack = MailStack(honey_passwd=m.honey, policy_url=m.policy_url,
                      postfix_settings={"smtpd_sender_restrictions": entry})
    m.start(maps=[stack.vmailbox])
    with stack:
        stack.add_user("alice", "x-Secret-123")
        m.wait_recipients(1)
        assert sock.is_socket()
        replies = transcript_rcpt(stack, "127.85.0.9", "probe@farm.example",
                                  [f"nobody{i}@moat.test" for i in range(6)] + ["alice@moat.test"])
    codes = [code for _, code, _ in replies]
    assert codes[:4] == [550] * 4 and set(codes[4:]) == {450}, replies
    assert len({reply for _, _, reply in replies[4:]}) == 1
