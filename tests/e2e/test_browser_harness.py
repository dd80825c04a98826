"""Tests of the headless-Chromium WebDriver harness (browser.py) itself, against a tiny local
HTTP server; Moat is not involved. They also record what headless Chromium really sends."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from browser import WebDriverError, start_browser

FORM_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Form</title></head>
<body>
<form id="f"><input id="email" type="email" name="email">
<button id="submit" type="submit">Send</button></form>
<p id="answer"></p>
<script>
document.getElementById('f').addEventListener('submit', function (ev) {
  ev.preventDefault();
  fetch('/api/submit', {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({email: document.getElementById('email').value}),
  }).then(function (r) { return r.json(); })
    .then(function (j) { document.getElementById('answer').textContent = j.answer; })
    .catch(function (e) { document.getElementById('answer').textContent = 'error: ' + e; });
});
</script>
</body></html>
"""

NOSCRIPT_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checking</title>
<noscript><meta http-equiv="refresh" content="1;url=/after"></noscript>
</head>
<body><p>Checking your browser</p>
<script>document.title = 'scripted';</script>
</body></html>
"""

AFTER_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>After</title></head>
<body><p id="after">after the refresh</p>
<script>document.title = 'scripted';</script></body></html>
"""

WORKER_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Worker</title></head>
<body><p>worker host</p></body></html>
"""

WORKER_JS = b"""
onmessage = function (ev) {
  var n = ev.data, a = 0, b = 1;
  for (var i = 0; i < n; i++) { var t = a + b; a = b; b = t; }
  postMessage({fib: a, inWorker: typeof document === 'undefined' && typeof importScripts === 'function'});
};
"""


class Recorder:
    """A threaded http.server on 127.0.0.1 recording every request (headers in order)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep pytest output clean
                pass

            def _record(self, body: bytes) -> None:
                with rec.lock:
                    rec.requests.append({
                        "method": self.command,
                        "path": self.path,
                        "headers": list(self.headers.items()),
                        "body": body,
                    })

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._record(b"")
                pages = {
                    "/": ("text/html; charset=utf-8", FORM_PAGE),
                    "/noscript": ("text/html; charset=utf-8", NOSCRIPT_PAGE),
                    "/after": ("text/html; charset=utf-8", AFTER_PAGE),
                    "/worker": ("text/html; charset=utf-8", WORKER_PAGE),
                    "/worker.js": ("text/javascript", WORKER_JS),
                }
                if self.path in pages:
                    self._send(200, *pages[self.path])
                else:
                    self._send(404, "text/plain", b"not found\n")

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                self._record(body)
                try:
                    email = json.loads(body).get("email", "")
                except (ValueError, AttributeError):
                    email = ""
                out = json.dumps({"answer": f"thanks {email}"}).encode()
                self._send(200, "application/json", out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self, method: str, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def site():
    s = Recorder()
    try:
        yield s
    finally:
        s.stop()


def _browser(extra_args=()):
    t0 = time.monotonic()
    b = start_browser(extra_args)
    print(f"\n[browser started in {time.monotonic() - t0:.1f} s]")
    return b


@pytest.fixture
def browser():
    b = _browser()
    try:
        yield b
    finally:
        b.quit()


def test_fetch_post_from_a_form(site, browser):
    browser.get(site.url + "/")
    assert browser.title() == "Form"
    browser.send_keys(browser.find_css("#email"), "reader@example.com")
    browser.click(browser.find_css("#submit"))
    answer = browser.wait_until(
        "document.getElementById('answer').textContent", timeout=30)
    assert answer == "thanks reader@example.com"
    assert browser.element_text(browser.find_css("#answer")) == answer

    posts = site.seen("POST", "/api/submit")
    assert len(posts) == 1
    post = posts[0]
    assert post["body"] == b'{"email":"reader@example.com"}'
    print("\n--- headers of the fetch() POST, in order ---")
    for k, v in post["headers"]:
        print(f"{k}: {v}")
    names = {k.lower() for k, _ in post["headers"]}
    for want in ("sec-fetch-mode", "sec-ch-ua", "origin", "accept-language", "user-agent"):
        assert want in names, f"{want} missing from {sorted(names)}"
    hdr = {k.lower(): v for k, v in post["headers"]}
    assert "Chrome/" in hdr["user-agent"]
    assert hdr["origin"] == site.url
    assert hdr["sec-fetch-mode"] == "cors"
    assert hdr["content-type"] == "application/json"
    ua = browser.user_agent()
    assert ua == hdr["user-agent"]
    print(f"HeadlessChrome in user-agent: {'HeadlessChrome' in hdr['user-agent']}; "
          f"in sec-ch-ua: {'HeadlessChrome' in hdr['sec-ch-ua']}")
    print("cookies:", browser.cookies())


def test_noscript_meta_refresh_without_javascript(site):
    b = _browser(["--blink-settings=scriptEnabled=false"])
    try:
        b.get(site.url + "/noscript")
        deadline = time.monotonic() + 30
        while not b.current_url().endswith("/after"):
            assert time.monotonic() < deadline, f"still at {b.current_url()}"
            time.sleep(0.2)
        assert site.seen("GET", "/after")
        # /after's own script would retitle the page: page scripts really are off.
        assert b.title() == "After"
        assert b.element_text(b.find_css("#after")) == "after the refresh"
        # WebDriver's own script execution still works with page scripts off.
        assert b.execute("return document.title") == "After"
        b.wait_until("location.pathname === '/after'", timeout=10)
    finally:
        b.quit()


def test_execute_async_in_a_web_worker(site, browser):
    browser.get(site.url + "/worker")
    browser.set_script_timeout(30_000)
    result = browser.execute_async(
        """
        var n = arguments[0], done = arguments[arguments.length - 1];
        var w = new Worker('/worker.js');
        w.onmessage = function (ev) { done(ev.data); w.terminate(); };
        w.onerror = function (ev) { done({error: String(ev.message)}); };
        w.postMessage(n);
        """,
        30,
    )
    assert result == {"fib": 832040, "inWorker": True}
    assert site.seen("GET", "/worker.js")


def test_webdriver_errors_carry_the_code(site, browser):
    browser.get(site.url + "/")
    with pytest.raises(WebDriverError) as ei:
        browser.find_css("#does-not-exist")
    assert ei.value.error == "no such element"
    browser.set_script_timeout(500)
    with pytest.raises(WebDriverError) as ei:
        browser.execute_async("/* never calls back */")
    assert ei.value.error == "script timeout"
    with pytest.raises(TimeoutError):
        browser.wait_until("false", timeout=0.5)
    browser.quit()
    browser.quit()  # idempotent
