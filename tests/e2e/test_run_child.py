"""Issue 15: `moat run [OPTIONS] -- CMD [ARGS…]`. Moat starts the app it protects as its child,
reports ready once the app's port answers, passes SIGTERM and SIGINT on to it, exits with its
status, and, as PID 1 of a container (a new PID namespace here), reaps the orphans the kernel
hands it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from moat_harness import ADMIN_TOKEN, free_port, moat_bin

# A stand-in app: serves 200 on its port; exits with the code in its first argument after the
# number of requests in its second (0: never), and on SIGTERM with 143 as a shell would.
APP = textwrap.dedent("""
    import http.server, signal, sys
    port, code, after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    seen = 0
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            global seen
            seen += 1
            self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
            self.wfile.write(b"app")
        def log_message(self, *a): pass
    s = http.server.HTTPServer(("127.0.0.1", port), H)
    while True:
        s.handle_request()
        if after and seen >= after:
            sys.exit(code)
""")


def start(tmp_path: Path, app_args: list[str], port: int, wrap: list[str] | None = None) -> subprocess.Popen:
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{ADMIN_TOKEN}"\n')
    app = tmp_path / "app.py"
    app.write_text(APP)
    args = [str(moat_bin()), "run", "--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{port}",
            "--config", str(cfg), "--state-dir", str(tmp_path / "state"), "--preset", "ghost",
            "--", sys.executable, str(app), str(port), *app_args]
    return subprocess.Popen((wrap or []) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": "info"})


def read_until(p: subprocess.Popen, needle: str, timeout: float = 20) -> tuple[dict, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return json.loads(line), lines
    raise AssertionError(f"no {needle!r} from moat: {''.join(lines)}{p.stderr.read() if p.poll() is not None else ''}")


def http_port(start_line: dict) -> int:
    return int(start_line["http"].rsplit(":", 1)[1])


def app_pid(lines: list[str]) -> int:
    return next(json.loads(l)["pid"] for l in lines if "started the app" in l)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_reaches_the_app_and_moat_exits_with_its_status(tmp_path):
    port = free_port()
    p = start(tmp_path, ["0", "0"], port)
    try:
        line, lines = read_until(p, "moat is running")
        pid = app_pid(lines)
        r = requests.get(f"http://127.0.0.1:{http_port(line)}/", timeout=5)
        assert (r.status_code, r.text) == (200, "app"), "the child is served through Moat"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=40) == 128 + signal.SIGTERM, "exit status is the app's (killed by SIGTERM)"
        assert not Path(f"/proc/{pid}").exists(), "the app was stopped and reaped"
    finally:
        p.kill()


def test_moat_exits_with_the_apps_own_exit_code(tmp_path):
    port = free_port()
    p = start(tmp_path, ["7", "1"], port)
    try:
        line, _ = read_until(p, "moat is running")
        assert requests.get(f"http://127.0.0.1:{http_port(line)}/", timeout=5).status_code == 200
        assert p.wait(timeout=20) == 7
    finally:
        p.kill()


def test_an_app_that_fails_at_start_ends_moat_with_its_code(tmp_path):
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{ADMIN_TOKEN}"\n')
    p = subprocess.run([str(moat_bin()), "run", "--listen", "127.0.0.1:0", "--upstream",
                        f"http://127.0.0.1:{free_port()}", "--config", str(cfg), "--state-dir",
                        str(tmp_path / "state"), "--", "sh", "-c", "exit 3"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "exited before its port answered" in p.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_as_pid_1_orphans_are_reaped(tmp_path):
    """In a new PID namespace Moat is PID 1; the app leaves orphans behind (a subshell that
    starts `sleep` in the background and exits), which the kernel hands to PID 1."""
    port = free_port()
    orphans = tmp_path / "orphans.sh"
    orphans.write_text(f"for i in 1 2 3 4 5; do (sleep 0.2 &) ; done\nexec {sys.executable} \"$@\"\n")
    cfg = tmp_path / "moat.toml"
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{ADMIN_TOKEN}"\n')
    (tmp_path / "app.py").write_text(APP)
    args = ["unshare", "--pid", "--fork", "--mount-proc", str(moat_bin()), "run", "--listen", "127.0.0.1:0",
            "--upstream", f"http://127.0.0.1:{port}", "--config", str(cfg), "--state-dir",
            str(tmp_path / "state"), "--", "sh", str(orphans), str(tmp_path / "app.py"), str(port), "0", "0"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "RUST_LOG": "info"})
    moat_pid = 0
    try:
        read_until(p, "moat is running")
        # Moat's pid as seen from here: the child of `unshare` (which passes no signals on).
        moat_pid = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
        time.sleep(1.5)  # the sleeps have ended by now
        zombies = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] == "Z" and int(fields[1]) == moat_pid:
                zombies.append(stat.parent.name)
        assert zombies == [], f"zombies left under PID 1 (moat {moat_pid}): {zombies}"
        os.kill(moat_pid, signal.SIGTERM)
        assert p.wait(timeout=40) == 128 + signal.SIGTERM, "PID 1 passed SIGTERM on and exited with the app's status"
    finally:
        if p.poll() is None:
            if moat_pid:
                os.kill(moat_pid, signal.SIGKILL)
            p.kill()
