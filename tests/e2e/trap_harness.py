"""A `moat trap` process on loopback high ports, and helpers to read its quarantine."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from moat_harness import free_port, moat_bin


class Trap:
    def __init__(self, *extra: str, quarantine: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="moat-trap-"))
        self.quarantine = quarantine or self.dir / "quarantine"
        self.port = free_port()
        self.tls_port = free_port()
        self.extra = list(extra)
        self.log = self.dir / "trap.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        args = [str(moat_bin()), "trap", "--listen", f"127.0.0.1:{self.port}",
                "--tls-listen", f"127.0.0.1:{self.tls_port}", "--quarantine", str(self.quarantine),
                "--auth-failure-delay", "0s", "--top-passwords", "100", "--kth-attempt", "3",
                "--hostname", "mx.trap.test", *self.extra]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), 0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                assert time.monotonic() < deadline, "trap did not start"
                time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([str(moat_bin()), "quarantine", "--quarantine", str(self.quarantine), *args],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        return r

    def messages(self) -> list[dict]:
        return json.loads(self.cli("list", "--json", "--limit", "100000").stdout)

    def show(self, mid: str) -> dict:
        return json.loads(self.cli("show", mid, "--json").stdout)

    def raw(self, mid: str) -> bytes:
        return self.cli("show", mid, "--raw").stdout

    def logins(self) -> list[dict]:
        return json.loads(self.cli("logins", "--json", "--limit", "100000").stdout)

    def iocs(self, kind: str | None = None) -> list[dict]:
        args = ["iocs", "--json"] + (["--kind", kind] if kind else [])
        return json.loads(self.cli(*args).stdout)

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def smtp_exchange(port: int, lines: list[bytes], source: str = "127.0.0.1", timeout: float = 5) -> bytes:
    """Sends raw lines (each CRLF-terminated by the caller) one at a time, collecting replies,
    then reads until the server closes or stays quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
    out = b""
    try:
        out += s.recv(4096)
        for line in lines:
            s.sendall(line)
            time.sleep(0.05)
        s.settimeout(timeout)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    return out
