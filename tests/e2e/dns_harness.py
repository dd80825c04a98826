"""A real DNS server for the mail tests: dnsmasq on a free loopback port, serving the TXT (SPF)
records a test needs, the same way crates/moat-dns/tests/dnsmasq.rs runs it for good-bot checks.

    with Dnsmasq() as dns:                       # SPF_RECORDS by default
        moat_config = f'dns_server = "{dns.addr}"'
        assert dns.txt("good-sender.test") == ["v=spf1 ip4:127.0.0.0/8 -all"]

Names under the zones in `local` (default: test, example, arpa) that have no record get an
authoritative NXDOMAIN at once, never a forward attempt (there is no upstream: --no-resolv).
Needs the dnsmasq binary (Debian package dnsmasq-base, scripts/install-test-deps.sh).
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

# A sender whose mail from any 127.x.y.z passes SPF, and one whose mail from there fails it.
SPF_RECORDS = {
    "good-sender.test": "v=spf1 ip4:127.0.0.0/8 -all",
    "forged-sender.test": "v=spf1 ip4:192.0.2.1 -all",
}


class DnsError(RuntimeError):
    pass


def _free_udp_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        # dnsmasq also binds TCP on the same port.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _skip_name(msg: bytes, i: int) -> int:
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


QTYPE = {"A": 1, "TXT": 16, "AAAA": 28, "PTR": 12, "MX": 15}


def query(server: tuple[str, int], name: str, qtype: str = "TXT", timeout: float = 1.0) -> tuple[int, list[bytes]]:
    """One raw UDP DNS query: (rcode, [rdata of each answer of that type])."""
    qid = random.randrange(1 << 16)
    t = QTYPE[qtype]
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", t, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, server)
        while True:
            msg, _ = s.recvfrom(4096)
            if len(msg) >= 12 and struct.unpack(">H", msg[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    i = 12
    for _ in range(qd):
        i = _skip_name(msg, i) + 4
    answers = []
    for _ in range(an):
        i = _skip_name(msg, i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        if rtype == t:
            answers.append(msg[i:i + rdlen])
        i += rdlen
    return flags & 0xF, answers


def txt_strings(rdata: bytes) -> str:
    """A TXT record's character-strings, joined (as SPF reads them)."""
    out, i = b"", 0
    while i < len(rdata):
        n = rdata[i]
        out += rdata[i + 1:i + 1 + n]
        i += 1 + n
    return out.decode()


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:<free port>, serving `txt` records; a context
    manager (stop() kills it). `addr` is "ADDRESS:PORT", `log()` its query log."""

    def __init__(self, txt: dict[str, str] | None = None, local=("test", "example", "arpa"),
                 extra_args=(), timeout: float = 5.0, listen: str = "127.0.0.1",
                 port: int | None = None) -> None:
        """listen/port: where to serve (default: a free port on 127.0.0.1). A resolv.conf can
        only name port 53, so a test for it serves there, on a loopback address of its own."""
        if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
            raise DnsError("dnsmasq is not installed: apt-get install dnsmasq-base (scripts/install-test-deps.sh)")
        self.records = dict(SPF_RECORDS if txt is None else txt)
        for name, value in self.records.items():
            # On the command line (no shell) dnsmasq keeps quotes literally and splits at
            # commas into separate strings.
            if '"' in value or "," in value or "," in name:
                raise ValueError(f"cannot pass TXT {name}={value!r} to dnsmasq")
        self.dir = Path(tempfile.mkdtemp(prefix="moat-dnsmasq-"))
        self.log_path = self.dir / "dnsmasq.log"
        self.proc: subprocess.Popen | None = None
        self.listen = listen
        self.port = 0
        last = ""
        for _ in range(5):  # the free port can be taken before dnsmasq binds it
            self.port = port or _free_udp_port()
            args = ["dnsmasq", "--no-daemon", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                    "--conf-file=/dev/null", f"--listen-address={listen}", "--bind-interfaces",
                    "--log-queries", "--log-facility=-", f"--port={self.port}", "--user=root",
                    *(f"--local=/{z}/" for z in local),
                    *(f"--txt-record={n},{v}" for n, v in self.records.items()), *extra_args]
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._wait_ready(timeout):
                return
            last = self.log()
            self._kill()
        raise DnsError(f"dnsmasq did not start; last log:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        probe = next(iter(self.records), "ready.test")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                query((self.listen, self.port), probe, "TXT", timeout=0.2)
                return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def addr(self) -> str:
        return f"{self.listen}:{self.port}"

    def txt(self, name: str) -> list[str]:
        """The TXT records of name, as this server answers them."""
        rcode, answers = query((self.listen, self.port), name, "TXT")
        if rcode not in (0, 3):
            raise DnsError(f"TXT {name}: rcode {rcode}")
        return [txt_strings(a) for a in answers]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Dnsmasq":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
