"""Reports from the trap's captures, end to end: the dry-run default sends nothing and writes the
outbox; with sending on, ARF goes through Postfix's real smtp-sink as the relay to the abuse
contact a local fake RDAP server names, Spamhaus and webhook submissions reach local fakes that
follow the documented APIs, and `moat quarantine report` shows what was sent and answered. The
ARF parses back through Python's `email` package with the same fields."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from moat_harness import moat_bin
from test_mail_shield import RelaySink
from trap_harness import Trap

SPAM = (b"From: Prize Desk <winner@prize-desk.test>\r\nTo: victim@victim.test\r\n"
        b"Subject: You won\r\nMessage-ID: <spam-1@prize-desk.test>\r\n\r\n"
        b"Claim at https://claim.prizes-now.example/win?u=1 today\r\n")


class Fakes:
    """One HTTP server playing RDAP (RFC 9083 answers), Spamhaus's submission API and a
    webhook, recording every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        fakes = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: dict, ctype: str = "application/json") -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fakes.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                if self.path == "/rdap/domain/prizes-now.example":
                    return self._send(200, {
                        "rdapConformance": ["rdap_level_0"], "objectClassName": "domain",
                        "ldhName": "PRIZES-NOW.EXAMPLE",
                        "entities": [{"objectClassName": "entity", "roles": ["registrar"],
                                      "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Registrar"]]],
                                      "entities": [{"objectClassName": "entity", "roles": ["abuse"],
                                                    "vcardArray": ["vcard", [["version", {}, "text", "4.0"],
                                                                             ["fn", {}, "text", "Abuse"],
                                                                             ["email", {}, "text", "abuse@registrar.example"]]]}]}]},
                        "application/rdap+json")
                return self._send(404, {"errorCode": 404}, "application/rdap+json")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                fakes.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
                if self.path.startswith("/portal/api/v1/submissions/add/"):
                    if self.headers.get("Authorization") != "Bearer spamhaus-test-token":
                        return self._send(401, {"code": 401, "message": "Unauthorized"})
                    return self._send(200, {"id": "abc123"})
                if self.path == "/hook":
                    return self._send(200, {"ok": True})
                return self._send(404, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def bootstrap(dir: Path, port: int) -> Path:
    """IANA-format bootstrap files (RFC 9224) sending `.example` to the fake RDAP server."""
    b = dir / "bootstrap"
    b.mkdir()
    base = f"http://127.0.0.1:{port}/rdap/"
    (b / "dns.json").write_text(json.dumps({"version": "1.0", "publication": "2026-01-01T00:00:00Z",
                                            "services": [[["example"], [base]]]}))
    for name in ("ipv4.json", "ipv6.json", "asn.json"):
        (b / name).write_text(json.dumps({"version": "1.0", "publication": "2026-01-01T00:00:00Z", "services": []}))
    return b


def config(dir: Path, send: bool, fakes: Fakes, sink: RelaySink) -> Path:
    c = dir / "moat.toml"
    c.write_text(f"""
[server]
state_dir = "{dir / 'state'}"
[report]
send = {'true' if send else 'false'}
outbox = "outbox"
[report.reporter]
org = "Moat test"
email = "abuse-reports@trap.test"
[report.rdap]
bootstrap_dir = "{bootstrap(dir, fakes.port)}"
[report.arf]
from = "abuse-reports@trap.test"
[report.arf.smtp]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
[report.spamhaus]
token = "spamhaus-test-token"
base_url = "http://127.0.0.1:{fakes.port}/portal"
[report.webhook]
url = "http://127.0.0.1:{fakes.port}/hook"
""")
    return c


def report(cfg: Path, qdir: Path, run: bool = True) -> list[dict]:
    args = [str(moat_bin()), "quarantine", "--config", str(cfg), "--quarantine", str(qdir), "report", "--json"]
    r = subprocess.run(args + (["--run"] if run else []), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def setup():
    trap, fakes, sink = Trap(), Fakes(), RelaySink()
    with smtplib.SMTP("127.0.0.1", trap.port, timeout=10) as s:
        s.ehlo("bot")
        s.user, s.password = "winner@prize-desk.test", "123456"
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
        assert s.sendmail("winner@prize-desk.test", ["victim@victim.test"], SPAM) == {}
    # Wait for the indicators (extracted behind the 250).
    deadline = time.monotonic() + 10
    while not any(i["value"] == "prizes-now.example" for i in trap.iocs("domain")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield trap, fakes, sink
    trap.stop()
    fakes.stop()
    sink.stop()


def parse_arf(raw: bytes) -> tuple[email.message.EmailMessage, dict, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/feedback-report", "message/rfc822"]
    fields: dict[str, list[str]] = {}
    fb = parts[1].get_payload()
    fb_text = fb[0].as_string() if isinstance(fb, list) else str(fb)
    for line in fb_text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip().lower(), []).append(v.strip())
    original = parts[2].get_payload()[0].as_bytes() if isinstance(parts[2].get_payload(), list) else b""
    return msg, fields, original


def test_dry_run_by_default_sends_nothing_and_writes_the_outbox(setup, tmp_path):
    trap, fakes, sink = setup
    cfg = config(tmp_path, send=False, fakes=fakes, sink=sink)
    rows = report(cfg, trap.quarantine)
    assert rows and {r["status"] for r in rows} <= {"dry-run", "written"}, rows
    time.sleep(0.5)
    assert fakes.requests == [], "a dry run reached the network"
    assert sink.messages() == []
    outbox = tmp_path / "state" / "outbox"
    files = sorted(p.name for p in outbox.rglob("*") if p.is_file())
    assert any(f.endswith(".eml") for f in files) and any(f.endswith(".json") for f in files), files
    arf = next(p for p in outbox.rglob("*.eml"))
    _, fields, original = parse_arf(arf.read_bytes())
    assert fields["feedback-type"] == ["abuse"]
    assert "prizes-now.example" in fields["reported-domain"]
    assert original.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n").strip() == SPAM.strip()


def test_sending_reaches_each_target_and_the_answers_are_recorded(setup, tmp_path):
    trap, fakes, sink = setup
    cfg = config(tmp_path, send=True, fakes=fakes, sink=sink)
    rows = report(cfg, trap.quarantine)
    by_target = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    assert by_target["spamhaus"][0]["status"] == "sent" and by_target["spamhaus"][0]["answer_code"] == 200
    assert by_target["webhook"][0]["status"] == "sent"
    arf = by_target["arf"][0]
    assert arf["status"] == "sent" and arf["recipient"] == "abuse@registrar.example", arf
    # Spamhaus got its documented body, with the bearer token.
    sub = [q for q in fakes.requests if q["path"].startswith("/portal/api/v1/submissions/add/")]
    assert sub and json.loads(sub[0]["body"])["threat_type"] == "source-of-spam"
    assert json.loads(sub[0]["body"])["source"]["object"] == "prizes-now.example"
    # RDAP was asked for the domain the spam promotes.
    assert any(q["path"] == "/rdap/domain/prizes-now.example" for q in fakes.requests)
    # The ARF arrived at the relay (Postfix's smtp-sink), addressed to the abuse contact, and
    # parses back with the same fields.
    deadline = time.monotonic() + 10
    while not sink.messages():
        assert time.monotonic() < deadline, "no ARF at the relay"
        time.sleep(0.1)
    dumped = sink.messages()[0]
    # smtp-sink puts the envelope in front as X- headers: the relay was told the abuse contact.
    assert b"X-Rcpt-Args: <abuse@registrar.example>\n" in dumped
    _, fields, original = parse_arf(dumped)
    assert fields["feedback-type"] == ["abuse"]
    assert fields["version"] == ["1"]
    assert "prizes-now.example" in fields["reported-domain"]
    assert any("claim.prizes-now.example" in u for u in fields.get("reported-uri", []))
    assert b"Claim at https://claim.prizes-now.example/win?u=1 today" in original
    # Run again: dedupe per indicator, nothing new goes out.
    before = len(fakes.requests)
    report(cfg, trap.quarantine)
    assert len([q for q in fakes.requests[before:] if q["method"] == "POST"]) == 0
    # `moat quarantine report` without --run shows the history.
    shown = report(cfg, trap.quarantine, run=False)
    assert {r["target"] for r in shown} >= {"arf", "spamhaus", "webhook"}
