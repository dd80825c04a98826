"""Issue 15: the static binary (scripts/build-static.sh, docs/static-binary.md).

The binary is built once per test session (a cold build takes about ten minutes) and must need
nothing from the machine: each test copies it alone into an empty directory and runs it there
with `chroot` (so the tests run as root), with no libc, no /etc, no /dev, no /proc.

Name resolution is the part a static glibc binary gets wrong by default (getaddrinfo follows
/etc/nsswitch.conf, whose modules other than `files` and `dns` are shared libraries it cannot
load), so the other tests resolve names inside the chroot: through an /etc/resolv.conf that
points at a dnsmasq started here, through the fallback nameserver when there is no
resolv.conf, and a proxied request to an upstream configured by name.

MOAT_STATIC_BIN=path skips the build and tests that binary instead (a CI artifact).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from dns_harness import Dnsmasq, DnsError
from moat_harness import ADMIN_TOKEN, Upstream

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-static.sh"
# The name the tests resolve, and the address dnsmasq gives it (the upstream listens there).
NAME = "upstream.moat-static.test"
RECORDS = (f"--host-record={NAME},127.0.0.1",)


def _missing_build_tools() -> str | None:
    if shutil.which("cargo") is None:
        return "cargo is not installed"
    cc = shutil.which("cc")
    if cc is None:
        return "no C compiler (cc)"
    libc_a = subprocess.run([cc, "-print-file-name=libc.a"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libc_a):
        return "glibc's static libraries (libc.a, Debian package libc6-dev) are not installed"
    return None


@pytest.fixture(scope="module")
def static_moat() -> Path:
    """The static binary: built by scripts/build-static.sh once per session, or MOAT_STATIC_BIN."""
    given = os.environ.get("MOAT_STATIC_BIN")
    if given:
        return Path(given)
    for tool in ("readelf", "file"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (binutils, file)")
    why = _missing_build_tools()
    if why:
        pytest.skip(f"cannot build the static binary: {why}")
    r = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=3600)
    if r.returncode == 3:  # the script's "a build tool is missing"
        pytest.skip(f"cannot build the static binary: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, f"build-static.sh failed ({r.returncode}):\n{r.stderr[-4000:]}"
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"build-static.sh printed {path}, which is not a file"
    return path


@pytest.fixture
def root(tmp_path, static_moat) -> Path:
    """An empty directory holding only the binary and a writable /tmp (the demo's state)."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    if shutil.which("chroot") is None:
        pytest.skip("chroot is not installed (coreutils)")
    r = tmp_path / "root"
    r.mkdir()
    shutil.copy2(static_moat, r / "moat")
    (r / "tmp").mkdir()
    os.chmod(r / "tmp", 0o1777)
    return r


def in_root(root: Path, *args: str) -> list[str]:
    return [shutil.which("chroot") or "chroot", str(root), "/moat", *args]


# A bare environment: nothing from the host (no PATH into the root, no locale).
ENV = {"TMPDIR": "/tmp", "RUST_LOG": "info"}


def run_in(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(in_root(root, *args), capture_output=True, text=True, timeout=timeout, env=ENV)


def test_binary_has_no_interpreter_and_no_libraries(static_moat):
    program_headers = subprocess.run(["readelf", "-lW", str(static_moat)], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in program_headers, program_headers
    # A static-pie binary keeps a dynamic section for relocating itself (ASLR), with no NEEDED.
    dynamic = subprocess.run(["readelf", "-dW", str(static_moat)], capture_output=True, text=True, check=True).stdout
    assert "(NEEDED)" not in dynamic, dynamic
    kind = subprocess.run(["file", "-b", str(static_moat)], capture_output=True, text=True, check=True).stdout
    assert "static" in kind and "dynamically linked" not in kind, kind
    # Stripped: no symbol table left to ship.
    symbols = subprocess.run(["readelf", "-SW", str(static_moat)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in symbols
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", str(static_moat)], capture_output=True, text=True)
        text = out.stdout + out.stderr
        assert "not a dynamic executable" in text or "statically linked" in text, text


def test_demo_runs_in_an_empty_root(root):
    """`moat demo` alone in an empty directory: the site, Moat in front of it, the attack and
    the people signing up, all proxied over loopback."""
    assert sorted(p.name for p in root.iterdir()) == ["moat", "tmp"]
    r = run_in(root, "demo", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # The people row: sent, reached the site. Each one reached it through Moat's proxy.
    people = re.search(r"^people in a browser\s+(\d+)\s+(\d+)", r.stdout, re.M)
    assert people, out
    assert int(people[1]) > 0 and people[1] == people[2], out
    for row in re.finditer(r"^(\w[\w ]+script[\w ]*?)\s+(\d+)\s+(\d+)\s+(\d+)$", r.stdout, re.M):
        assert row[3] == "0", f"scripts reached the site: {row[0]}"
    assert "every script got exactly that" in r.stdout, out


@pytest.fixture
def dns53():
    """dnsmasq on port 53 (all a resolv.conf can name) of a loopback address of its own,
    serving NAME."""
    listen = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    try:
        dns = Dnsmasq(listen=listen, port=53, extra_args=RECORDS)
    except DnsError as e:
        if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
            pytest.skip(str(e))
        raise
    try:
        yield dns
    finally:
        dns.stop()


def write_etc(root: Path, resolv_conf: str) -> None:
    """resolv.conf, and an nsswitch.conf as on a host with systemd-resolved: host names through
    libnss_resolve.so.2, which a static glibc cannot load (and the root does not have). glibc
    2.34+ carries its `files` and `dns` modules inside libc, so without this line a static
    binary's getaddrinfo would still resolve here; with it, getaddrinfo finds nothing, and only
    a resolver that reads resolv.conf itself (Moat's) gets an answer."""
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "resolv.conf").write_text(resolv_conf)
    (root / "etc" / "nsswitch.conf").write_text("hosts: resolve\n")


def test_resolves_through_resolv_conf_without_nss(root, dns53):
    """No libc, no /etc/hosts, an nsswitch.conf libc could not follow: only a resolv.conf
    naming our dnsmasq. The search domain completes a short name, as libc would."""
    write_etc(root, f"# written by the test\nsearch moat-static.test\nnameserver {dns53.listen}\n")
    r = run_in(root, "doctor", "dns", NAME, "upstream", "localhost", timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"nameservers: /etc/resolv.conf: nameserver {dns53.listen}:53; search moat-static.test" in r.stdout, out
    assert f"ok: {NAME}: 127.0.0.1" in r.stdout, out
    assert "ok: upstream: 127.0.0.1" in r.stdout, out
    # localhost answers without a hosts file or a query (RFC 6761).
    assert re.search(r"^ok: localhost: .*127\.0\.0\.1", r.stdout, re.M), out
    assert f"query[A] {NAME} from" in dns53.log(), dns53.log()
    # And a name nobody has fails, with exit status 1.
    r = run_in(root, "doctor", "dns", "nobody.moat-static.test", timeout=60)
    assert r.returncode == 1 and "problem: nobody.moat-static.test: no such host" in r.stdout, r.stdout + r.stderr


def test_resolves_through_the_fallback_without_resolv_conf(root):
    """No /etc/resolv.conf at all: the fallback nameserver (here on a port other than 53)."""
    assert not (root / "etc").exists()
    with Dnsmasq(extra_args=RECORDS) as dns:
        r = run_in(root, "doctor", "dns", "--fallback", dns.addr, NAME, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert f"nameservers: the configured fallback: nameserver {dns.addr}" in r.stdout, out
        assert "(/etc/resolv.conf: No such file or directory" in r.stdout, out
        assert f"ok: {NAME}: 127.0.0.1" in r.stdout, out
        assert f"query[A] {NAME} from" in dns.log()
    # Neither: glibc's default, a resolver on this host, and a hint saying so. (Whether
    # 127.0.0.1:53 answers depends on the machine, so only the explanation is checked.)
    r = run_in(root, "doctor", "dns", "localhost", timeout=60)
    assert "nameservers: no resolv.conf, no fallback: nameserver 127.0.0.1:53" in r.stdout, r.stdout + r.stderr
    assert "hint:" in r.stdout


class ChrootMoat:
    """`moat run` inside the root, with stdout (JSON log lines) collected."""

    def __init__(self, root: Path, upstream_url: str) -> None:
        (root / "state").mkdir()
        (root / "moat.toml").write_text(f'[admin]\nlisten = "127.0.0.1:0"\ntoken = "{ADMIN_TOKEN}"\n')
        args = in_root(root, "run", "--listen", "127.0.0.1:0", "--upstream", upstream_url,
                       "--state-dir", "/state", "--config", "/moat.toml", "--log-format", "json")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def pump() -> None:
            for line in iter(self.proc.stdout.readline, ""):
                self.lines.append(line.rstrip("\n"))
                if "moat is running" in line:
                    http = re.findall(r"127\.0\.0\.1:(\d+)", str(json.loads(line).get("http", "")))
                    self.port = int(http[0]) if http else 0
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30) or not self.port:
            self.stop()
            raise AssertionError("moat did not start in the root:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def moat_by_name(root, dns53):
    """Moat in the root, its upstream configured by name (resolved through resolv.conf)."""
    write_etc(root, f"nameserver {dns53.listen}\n")
    up = Upstream().start()
    moat = None
    try:
        moat = ChrootMoat(root, f"http://{NAME}:{up.port}")
        yield moat, up
    finally:
        if moat:
            moat.stop()
        up.stop()


def test_proxies_to_an_upstream_named_by_dns(moat_by_name):
    """A request hyper serves (a POST with a body) reaches the upstream, whose name Moat
    resolved in the root through resolv.conf, where getaddrinfo would have found nothing."""
    moat, up = moat_by_name
    r = requests.post(f"http://127.0.0.1:{moat.port}/api/comment", data=b"hello", timeout=10)
    assert (r.status_code, r.text) == (200, "ok\n"), "\n".join(moat.lines[-20:])
    assert [s.body for s in up.seen("/api/comment", "POST")] == [b"hello"]


def test_fast_path_proxies_to_an_upstream_named_by_dns(moat_by_name):
    """The same for a plain GET, which the fast path serves."""
    moat, up = moat_by_name
    r = requests.get(f"http://127.0.0.1:{moat.port}/hello", timeout=10)
    assert (r.status_code, r.text) == (200, "ok\n"), "\n".join(moat.lines[-20:])
    assert up.seen("/hello", "GET")
