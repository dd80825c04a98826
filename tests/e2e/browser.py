"""A minimal W3C WebDriver client for headless Chromium, standard library only (no selenium).

    with start_browser() as b:
        b.get("http://127.0.0.1:8080/")
        b.send_keys(b.find_css("#email"), "a@example.com")
        b.click(b.find_css("button[type=submit]"))
        b.wait_until("document.body.innerText.includes('thanks')")

Needs Debian's `chromium` and `chromium-driver` (`chromedriver` on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

# The key under which WebDriver returns element references.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"

BASE_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

INSTALL_HINT = "install them with `apt-get install chromium chromium-driver`"


class WebDriverError(Exception):
    """A WebDriver error response: `error` is the W3C error code (e.g. "no such element")."""

    def __init__(self, error: str, message: str, status: int = 0, method: str = "", path: str = ""):
        self.error = error
        self.message = message
        self.status = status
        super().__init__(f"{error}: {message} (HTTP {status} on {method} {path})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium_binary() -> str:
    for cand in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError(f"chromium not found; {INSTALL_HINT}")


class Browser:
    """One chromedriver process with one browser session. Use `start_browser()` to make one."""

    def __init__(self, extra_args=(), startup_timeout: float = 15.0,
                 page_load_timeout_ms: int = 30_000) -> None:
        self._proc: subprocess.Popen | None = None
        self._session: str | None = None
        self._tmp = tempfile.mkdtemp(prefix="moat-chromium-")
        self._profile = os.path.join(self._tmp, "profile")
        self._log_path = os.path.join(self._tmp, "chromedriver.log")
        self._log = None
        try:
            self._start_driver(startup_timeout)
            self._new_session(list(extra_args))
            self._cmd("POST", "/timeouts", {"pageLoad": page_load_timeout_ms, "script": 30_000})
        except BaseException:
            self.quit()
            raise

    # -- process and session

    def _start_driver(self, timeout: float) -> None:
        driver = shutil.which("chromedriver")
        if not driver:
            raise RuntimeError(f"chromedriver not found on PATH; {INSTALL_HINT}")
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(self._log_path, "wb")
        self._proc = subprocess.Popen(
            [driver, f"--port={port}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"chromedriver exited with {self._proc.returncode}: {self.driver_log()[-2000:]}")
            try:
                st = self._request("GET", "/status", None, timeout=2)
                if st.get("value", {}).get("ready"):
                    return
                last = st
            except (OSError, WebDriverError) as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"chromedriver not ready after {timeout:.0f} s (last: {last!r})")

    def _new_session(self, extra_args: list[str]) -> None:
        caps = {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": _chromium_binary(),
                "args": [*BASE_ARGS, f"--user-data-dir={self._profile}", *extra_args],
            },
        }
        resp = self._request("POST", "/session", {"capabilities": {"alwaysMatch": caps}},
                             timeout=60)
        self._session = resp["value"]["sessionId"]
        self.capabilities = resp["value"].get("capabilities", {})

    def driver_log(self) -> str:
        try:
            with open(self._log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def quit(self) -> None:
        """Deletes the session, stops chromedriver and removes the profile. Idempotent."""
        if self._session is not None:
            sid, self._session = self._session, None
            try:
                self._request("DELETE", f"/session/{sid}", None, timeout=15)
            except Exception:
                pass
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.quit()

    # -- wire protocol

    def _request(self, method: str, path: str, body, timeout: float = 60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise WebDriverError("unknown error", f"non-JSON answer: {raw[:300]!r}", status,
                                 method, path) from None
        value = payload.get("value") if isinstance(payload, dict) else None
        if status >= 400 or (isinstance(value, dict) and "error" in value):
            value = value if isinstance(value, dict) else {}
            raise WebDriverError(value.get("error", "unknown error"),
                                 value.get("message", repr(payload)[:500]), status, method, path)
        return payload

    def _cmd(self, method: str, path: str, body=None, timeout: float = 90):
        if self._session is None:
            raise RuntimeError("browser session is closed")
        if method == "POST" and body is None:
            body = {}
        return self._request(method, f"/session/{self._session}{path}", body, timeout)["value"]

    # -- navigation and page

    def get(self, url: str) -> None:
        self._cmd("POST", "/url", {"url": url})

    def current_url(self) -> str:
        return self._cmd("GET", "/url")

    def title(self) -> str:
        return self._cmd("GET", "/title")

    def page_source(self) -> str:
        return self._cmd("GET", "/source")

    def user_agent(self) -> str:
        return self.execute("return navigator.userAgent")

    def cookies(self) -> list[dict]:
        return self._cmd("GET", "/cookie")

    def delete_cookies(self) -> None:
        """Deletes every cookie of the current page's domain, HttpOnly ones included."""
        self._cmd("DELETE", "/cookie")

    def screenshot(self, path) -> None:
        """Saves the viewport as a PNG."""
        import base64
        with open(path, "wb") as f:
            f.write(base64.b64decode(self._cmd("GET", "/screenshot")))

    # -- scripts

    def execute(self, script: str, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def execute_async(self, script: str, *args):
        """The callback is `arguments[arguments.length - 1]`; call it with the result."""
        return self._cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def set_script_timeout(self, ms: int) -> None:
        self._cmd("POST", "/timeouts", {"script": int(ms)})

    def wait_until(self, js_predicate_expression: str, timeout: float = 10.0,
                   interval: float = 0.1):
        """Polls the expression until truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.execute("return (" + js_predicate_expression + ")")
            except WebDriverError as e:
                # Navigation in progress, etc.: keep polling, but remember why.
                last = e
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"after {timeout} s, {js_predicate_expression!r} is still {last!r}")
            time.sleep(interval)

    # -- elements

    def find_css(self, selector: str) -> str:
        v = self._cmd("POST", "/element", {"using": "css selector", "value": selector})
        return v[ELEMENT_KEY]

    def element_text(self, element_id: str) -> str:
        return self._cmd("GET", f"/element/{element_id}/text")

    def send_keys(self, element_id: str, text: str) -> None:
        self._cmd("POST", f"/element/{element_id}/value", {"text": text})

    def click(self, element_id: str) -> None:
        self._cmd("POST", f"/element/{element_id}/click")


def start_browser(extra_args=()) -> Browser:
    """A headless Chromium under a fresh chromedriver; call `quit()` (or use `with`)."""
    return Browser(extra_args=extra_args)
