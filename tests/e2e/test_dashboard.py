"""Issue 20, item 2: the dashboard, served by Moat on the admin listener. Headless Chromium logs
in with the admin token, opens every page during a scripted attack from rotating loopback
addresses, finds the attack in the live chart and the top sources within 5 s, and allows a
banned address in one click, after which its next request passes. Screenshots of each page are
saved (MOAT_ARTIFACTS, else the test's directory). The read-only pages work with JavaScript
disabled; no page is served without a login, and no change without the session's CSRF token."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import requests

from browser import start_browser
from moat_harness import ADMIN_TOKEN, MAGIC_LINK, get_from, session_from

SCRIPT_UA = {"User-Agent": "python-requests/2.32.3"}
PAGES = ("live", "who", "people", "catch", "peers")


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("MOAT_ARTIFACTS", tmp_path)) / "dashboard"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Attack:
    """Scripted sends of Ghost's sign-in link from rotating loopback addresses, until stopped."""

    def __init__(self, m, net: int):
        self.m, self.net, self.sent = m, net, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set() and i < 2000:
            ip = f"127.{self.net}.{i // 50}.{i % 50 + 1}"
            try:
                session_from(ip).post(self.m.url(MAGIC_LINK), json={"email": f"v{i}@example.com"},
                                      headers=SCRIPT_UA, timeout=5)
                self.sent += 1
            except requests.RequestException:
                pass
            i += 1
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(timeout=10)


def login(b, m) -> None:
    b.get(m.admin_base + "/dashboard/login")
    b.send_keys(b.find_css("input[name=token]"), ADMIN_TOKEN)
    b.click(b.find_css("button"))


def test_no_page_without_a_login_and_no_change_without_the_csrf_token(moat_factory):
    m = moat_factory()
    base = m.admin_base + "/dashboard"
    for p in PAGES:
        r = requests.get(f"{base}/{p}", allow_redirects=False, timeout=5)
        assert r.status_code in (303, 307) and r.headers["location"] == "/dashboard/login", (p, r.status_code)
    assert requests.get(base + "/live", headers={"Authorization": "Bearer " + ADMIN_TOKEN},
                        allow_redirects=False, timeout=5).status_code == 303, "the bearer token is the API's"
    r = requests.post(base + "/login", data={"token": "wrong-token-000000000"}, allow_redirects=False, timeout=5)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    s = requests.Session()
    r = s.post(base + "/login", data={"token": ADMIN_TOKEN}, allow_redirects=False, timeout=5)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/live"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    page = s.get(base + "/people", timeout=5)
    assert page.status_code == 200 and "<h1>People</h1>" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script" not in csp, csp
    assert "<script" not in page.text
    # A change without the session's CSRF token is refused; with it, it is made.
    victim = "127.41.0.9"
    requests.post(m.admin_base + "/api/decisions", json={"scope": victim},
                  headers={"Authorization": "Bearer " + ADMIN_TOKEN}, timeout=5)
    assert s.post(base + "/allow", data={"net": victim, "csrf": "guess"}, allow_redirects=False,
                  timeout=5).status_code == 403
    assert requests.post(base + "/allow", data={"net": victim, "csrf": "guess"}, allow_redirects=False,
                         timeout=5).status_code == 403
    assert m.wait_for(lambda: get_from(victim, m.url("/")).status == 403, timeout=4)
    # What an attacker put in a ban reason is shown as text.
    requests.post(m.admin_base + "/api/decisions", json={"scope": "127.41.0.10", "reason": "<script>alert(1)</script>"},
                  headers={"Authorization": "Bearer " + ADMIN_TOKEN}, timeout=5)
    page = s.get(base + "/people", timeout=5).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Logged out: the cookie no longer opens anything.
    s.post(base + "/logout", timeout=5)
    assert s.get(base + "/live", allow_redirects=False, timeout=5).status_code == 303


def test_the_attack_shows_within_5_s_and_one_click_lets_a_person_in(moat_factory, tmp_path):
    m = moat_factory()
    shots = shots_dir(tmp_path)
    with start_browser() as b:
        login(b, m)
        b.wait_until("location.pathname == '/dashboard/live'", timeout=10)
        b.wait_until("document.querySelector('#live-chart') !== null", timeout=10)
        with Attack(m, 42) as attack:
            t0 = time.monotonic()
            b.wait_until("document.querySelectorAll('#live-chart rect.bar').length > 0", timeout=5)
            seen_chart = time.monotonic() - t0
            b.get(m.admin_base + "/dashboard/who")
            b.wait_until("[...document.querySelectorAll('.client')].some(e => e.textContent.startsWith('127.42.'))",
                         timeout=max(0.5, 5 - (time.monotonic() - t0)))
            seen_top = time.monotonic() - t0
            # The script's user agent, which it never changes, is named on the same page.
            b.wait_until("document.body.innerText.includes('python-requests/2.32.3')", timeout=5)
            print(f"attack in the live chart after {seen_chart:.1f} s, in the top sources after {seen_top:.1f} s")
            for p in PAGES:
                b.get(f"{m.admin_base}/dashboard/{p}")
                b.wait_until("document.querySelector('h1') !== null", timeout=10)
                b.screenshot(shots / f"{p}.png")
            assert attack.sent > 0
        # A person caught among them: banned, then allowed in one click on the who page.
        person = "127.43.0.7"
        r = requests.post(m.admin_base + "/api/decisions", json={"scope": person, "reason": "caught in the attack"},
                          headers={"Authorization": "Bearer " + ADMIN_TOKEN}, timeout=5)
        assert r.status_code == 201
        assert m.wait_for(lambda: get_from(person, m.url("/")).status == 403, timeout=4)
        b.get(m.admin_base + "/dashboard/people")
        b.wait_until(f"document.body.innerText.includes('{person}')", timeout=10)
        b.screenshot(shots / "people-banned.png")
        button = b.execute(
            "const f = [...document.querySelectorAll('form[action^=\"/dashboard/allow\"]')]"
            f".find(f => f.querySelector('input[name=net]').value == '{person}');"
            "f.querySelector('button').setAttribute('id', 'allow-person'); return !!f;")
        assert button
        b.click(b.find_css("#allow-person"))
        b.wait_until("location.pathname == '/dashboard/people'", timeout=10)
        b.wait_until(f"document.body.innerText.includes('allowed from the dashboard')", timeout=10)
        assert m.wait_for(lambda: get_from(person, m.url("/")).status == 200, timeout=4), \
            "the next request from the allowed address did not pass"
    assert all((shots / f"{p}.png").stat().st_size > 1000 for p in PAGES)


def test_the_read_only_pages_work_without_javascript(moat_factory):
    m = moat_factory()
    s = session_from("127.44.0.1")
    s.post(m.url(MAGIC_LINK), json={"email": "v@example.com"}, headers=SCRIPT_UA, timeout=5)
    requests.post(m.admin_base + "/api/decisions", json={"scope": "127.44.0.2"},
                  headers={"Authorization": "Bearer " + ADMIN_TOKEN}, timeout=5)
    with start_browser(["--blink-settings=scriptEnabled=false"]) as b:
        login(b, m)  # a plain form: no script needed
        time.sleep(0.5)
        for p in PAGES:
            b.get(f"{m.admin_base}/dashboard/{p}")
            src = b.page_source()
            assert f"<h1>{p.capitalize()}</h1>" in src, (p, src[:300])
        b.get(m.admin_base + "/dashboard/people")
        assert "127.44.0.2" in b.page_source()
        b.get(m.admin_base + "/dashboard/live")
        assert 'id="live-chart"' in b.page_source()


def test_the_counters_outlive_a_restart(moat_factory, tmp_path):
    state = tmp_path / "state"
    m = moat_factory(state_dir=state)
    auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
    for i in range(5):
        session_from(f"127.45.0.{i + 1}").post(m.url(MAGIC_LINK), json={"email": f"v{i}@example.com"},
                                               headers=SCRIPT_UA, timeout=5)

    def stopped(base: str, rng: str) -> int:
        r = requests.get(base + "/api/series", params={"range": rng}, headers=auth, timeout=5)
        assert r.status_code == 200, r.text
        return sum(p["counts"]["stopped"] for p in r.json()["points"])

    assert m.wait_for(lambda: stopped(m.admin_base, "hour") >= 5, timeout=5)
    m.stop()  # SIGTERM: the current minute is saved on the way out
    assert (state / "series.sqlite").is_file()
    again = moat_factory(state_dir=state, name="again")
    assert stopped(again.admin_base, "hour") >= 5, "the live chart forgot the last hour"
    assert stopped(again.admin_base, "month") >= 5
    r = requests.get(again.admin_base + "/api/series", params={"range": "year"}, headers=auth, timeout=5)
    assert r.status_code == 400


def test_the_digest_comes_to_the_log_and_the_webhook(moat_factory, tmp_path):
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append({"path": self.path, "type": self.headers.get("Content-Type"), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        m = moat_factory(f'[digest]\nevery = "3s"\nwebhook = "http://127.0.0.1:{hook.server_address[1]}/moat"\n')
        auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
        for i in range(5):
            session_from(f"127.46.0.{i + 1}").post(m.url(MAGIC_LINK), json={"email": f"v{i}@example.com"},
                                                   headers=SCRIPT_UA, timeout=5)
        for ip in ("127.46.1.9", "127.46.1.10", "127.47.0.1"):
            requests.post(m.admin_base + "/api/decisions", json={"scope": ip}, headers=auth, timeout=5)
        # A ban over before the digest is written is still one the period made.
        r = requests.post(m.admin_base + "/api/decisions", json={"scope": "127.48.0.2", "duration": "1s"},
                          headers=auth, timeout=5)
        assert r.status_code == 201, r.text
        requests.post(m.admin_base + "/api/allowlist", json={"net": "127.46.2.2", "note": "the owner's phone"},
                      headers=auth, timeout=5)

        def full():
            return [g for g in got if g["body"]["attacks"]["stopped"] >= 5 and g["body"]["bans_made"] >= 4]
        assert m.wait_for(full, timeout=15), (got, [x for x in m.stdout_lines if "digest" in x][-5:])
        d = full()[0]
        assert d["path"] == "/moat" and d["type"] == "application/json"
        digest = d["body"]
        assert digest["top_networks"][0] == {"network": "127.46.1.0/24", "bans": 2}, digest
        assert [a["net"] for a in digest["let_in"]] == ["127.46.2.2"], digest
        assert "bans" not in digest["attacks"], digest
        assert digest["to_ms"] > digest["from_ms"]
        # Consecutive periods: the next digest starts where this one ended.
        assert m.wait_for(lambda: any(g["body"]["from_ms"] == digest["to_ms"] for g in got), timeout=10)
        assert any('"message":"digest"' in line for line in m.stdout_lines), "no digest in the log"
    finally:
        hook.shutdown()


def test_a_bad_digest_webhook_names_its_line(tmp_path):
    from moat_harness import run_cli
    cfg = tmp_path / "moat.toml"
    cfg.write_text('[server]\nupstream = "http://127.0.0.1:9"\n\n[digest]\nevery = "1d"\nwebhook = "ftp://x.example/"\n')
    r = run_cli("check", "--config", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"{cfg}:6" in out and "digest.webhook" in out, out


def test_a_client_stopped_then_proven_shows_on_people_and_in_the_mailed_digest(moat_factory):
    """Issue 20: the People page counts the proof's outcomes and lists anyone a rule stopped who
    then passed the proof (a person, perhaps), with Allow; the Who page names the user agents
    behind the decisions; the digest says who was rescued, and comes by mail through the report
    relay (Postfix's smtp-sink standing in for it)."""
    from mail_harness import RelaySink
    from moat_harness import clearance_cookie

    with RelaySink() as sink:
        m = moat_factory(f"""
[digest]
every = "3s"
mail_to = "owner@blog.test"
[report]
[report.reporter]
email = "moat@blog.test"
[report.arf]
from = "moat@blog.test"
[report.arf.smtp]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
""")
        auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
        person = "127.48.0.5"
        # Stopped: a sign-in request without the proof, from a script's user agent.
        r = session_from(person).post(m.url(MAGIC_LINK), json={"email": "me@example.com"},
                                      headers={"User-Agent": "aiohttp/3.9.5"}, timeout=5)
        assert r.status_code == 201  # the decoy answers as Ghost does: a script learns nothing
        top = requests.get(m.admin_base + "/api/top", headers=auth, timeout=5).json()
        agents = {a["value"]: a for a in top["agents"]}
        assert agents["aiohttp/3.9.5"]["actions"].get("decoy", 0) >= 1, top["agents"]
        assert top["shapes"] and top["shapes"][0]["count"] >= 1
        # A failed proof, then the proof passed from the stopped address (a browser would).
        bad = session_from("127.48.0.6").post(m.url("/.moat/verify"), json={"challenge": "x", "nonce": "1"},
                                              timeout=5)
        assert bad.status_code == 403
        clearance_cookie(m.url(""), person)
        proof = requests.get(m.admin_base + "/api/proof", headers=auth, timeout=5).json()
        assert proof["active"] is True and proof["passed_work"] >= 1 and proof["failed"] >= 1, proof
        assert [(x["client"], x["proof"]) for x in proof["rescues"]] == [(person, "work")], proof
        assert "(decoy)" in proof["rescues"][0]["rule"]
        s = requests.Session()
        s.post(m.admin_base + "/dashboard/login", data={"token": ADMIN_TOKEN}, timeout=5)
        people = s.get(m.admin_base + "/dashboard/people", timeout=5).text
        assert f"<span class=rescued>{person}</span>" in people, people[:2000]
        assert 'id=proof-work>' in people and 'id=proof-failed>' in people
        assert "aiohttp/3.9.5" in s.get(m.admin_base + "/dashboard/who", timeout=5).text

        def mailed():
            for msg in sink.messages():
                text = msg.decode("utf-8", "replace")
                if person in text and "then passed the browser proof" in text:
                    return text
            return None
        text = m.wait_for(mailed, timeout=15)
        assert text, [x.decode("utf-8", "replace")[:300] for x in sink.messages()]
        assert "To: owner@blog.test" in text and "From: moat@blog.test" in text
        assert "Subject: Moat digest:" in text and "1 stopped then passed the proof" in text
        assert any('"message":"digest mailed"' in line for line in m.stdout_lines)


def test_the_who_page_groups_sources_by_autonomous_system_from_a_refreshed_table(moat_factory):
    """The Who page's autonomous systems: the table shipped in the binary answers (the running
    instance names it), `moat asn refresh` fetches a newer one (a stand-in for iptoasn.com
    serving its documented gzipped TSV), a table much smaller than the one in use or a gzip cut
    short is refused and changes nothing, and the running instance uses the new one at its
    next look, with no restart."""
    import gzip
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    table = gzip.compress(b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n"
                          b"127.49.0.0\t127.49.255.255\t64500\tZZ\tEXAMPLE-FARM Rotating Hosting\n"
                          b"127.50.0.0\t127.50.255.255\t64501\tZZ\tHOMES Residential\n")

    class Iptoasn(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = table if self.path == "/data/ip2asn-combined.tsv.gz" else table[: len(table) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Iptoasn)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        m = moat_factory()
        auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
        top = requests.get(m.admin_base + "/api/top", headers=auth, timeout=30).json()
        assert top["asn_table"].startswith("shipped: ip-location-db"), top["asn_table"]
        url = f"http://127.0.0.1:{srv.server_address[1]}/data/ip2asn-combined.tsv.gz"
        r = m.cli("asn", "refresh", "--from", url, "--config", str(m.config_path))
        assert r.returncode != 0 and "less than half" in r.stderr, (r.stdout, r.stderr)
        r = m.cli("asn", "refresh", "--force", "--from", url + ".cut", "--config", str(m.config_path))
        assert r.returncode != 0 and "gzip" in r.stderr, (r.stdout, r.stderr)
        assert not (m.state_dir / "asn-table.bin").exists()
        r = m.cli("asn", "refresh", "--force", "--from", url, "--config", str(m.config_path))
        assert r.returncode == 0 and "3 ranges" in r.stdout, (r.stdout, r.stderr)
        r = m.cli("asn", "show", "127.49.3.3", "--config", str(m.config_path))
        assert "AS64500 EXAMPLE-FARM Rotating Hosting" in r.stdout, r.stdout
        for i in range(6):
            session_from(f"127.49.{i}.{i + 1}").post(m.url(MAGIC_LINK), json={"email": f"v{i}@example.com"},
                                                     headers=SCRIPT_UA, timeout=5)
        session_from("127.50.0.1").post(m.url(MAGIC_LINK), json={"email": "x@example.com"},
                                        headers=SCRIPT_UA, timeout=5)
        top = requests.get(m.admin_base + "/api/top", headers=auth, timeout=10).json()
        assert "asn-table.bin" in top["asn_table"], top["asn_table"]
        systems = [(s["asn"], s["name"], s["clients"], s["count"]) for s in top["systems"]]
        assert systems == [(64500, "EXAMPLE-FARM Rotating Hosting", 6, 6), (64501, "HOMES Residential", 1, 1)], systems
        s = requests.Session()
        s.post(m.admin_base + "/dashboard/login", data={"token": ADMIN_TOKEN}, timeout=5)
        who = s.get(m.admin_base + "/dashboard/who", timeout=10).text
        assert "<span class=asn>AS64500</span>" in who and "EXAMPLE-FARM Rotating Hosting" in who
        assert 'href="https://db-ip.com"' in who, "the shipped table's licence asks for the credit"
    finally:
        srv.shutdown()


def test_the_digest_comes_without_the_admin_listener(tmp_path):
    """The admin listener is a convenience: when its port is taken, the shields run without it,
    and the digest still comes to the log."""
    import socket
    import subprocess

    from moat_harness import moat_bin
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f'[server]\nlisten = ["127.0.0.1:0"]\nupstream = "http://127.0.0.1:9"\n'
                   f'state_dir = "{tmp_path / "state"}"\n[admin]\nlisten = "127.0.0.1:{taken.getsockname()[1]}"\n'
                   f'[digest]\nevery = "1s"\n')
    p = subprocess.Popen([str(moat_bin()), "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any('"message":"digest"' in x for x in lines):
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any("no admin listener" in x for x in lines), lines
        assert any('"message":"digest"' in x for x in lines), lines
    finally:
        p.terminate()
        p.wait(timeout=10)
        taken.close()
