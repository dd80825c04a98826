"""The request-smuggling corpus against real peers (issue 16): each shape, a raw byte string on
one connection, goes through Moat, nginx and HAProxy, each in front of its own recording
upstream (`raw_upstream.py`: the exact bytes, framed by h11, a strict parser). Each proxy denies
the path `…/admin-secret` itself (Moat by a rule), so "a request a rule would stop" shows up
at the upstream if it is smuggled past the proxy's own reading.

For Moat, per shape: the requests the upstream got are, in order, requests a strict parser
reads in the client's bytes (nothing made up, nothing merged or split); where the strict
parser reads more, Moat refused something (4xx/5xx) or closed the connection before them; no
request to the denied path reached the upstream, not even a head; and everything Moat sent
upstream frames cleanly. nginx and HAProxy are reported, not asserted (and skipped when
missing). The table is printed (`pytest -s`) and written to the test's tmp dir.

Every request line carries the shape's own path prefix (`/s07/…`), so the shapes run side by
side and each upstream request is attributed to its shape."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from moat_harness import Moat, config_text, free_port
from raw_upstream import Framed, RawUpstream, strict_requests

BLOCKED = "/admin-secret"
HOST = "shield.test"
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"

MOAT_RULES = f"""
[[rule]]
id = "deny-admin-secret"
expression = 'ends_with(http.request.uri.path, "{BLOCKED}")'
action = "block"
status = 403
"""


# --------------------------------------------------------------------------------------------
# The shapes


def _shapes(p: str) -> list[tuple[str, str]]:
    """(name, raw request bytes as text) with `p` as the path prefix of every request line."""
    h = f"Host: {HOST}\r\n"
    smuggled = f"GET {p}{BLOCKED} HTTP/1.1\r\n{h}\r\n"
    after = f"GET {p}/after HTTP/1.1\r\n{h}\r\n"

    def post(extra: str, body: str, path: str = "/") -> str:
        return f"POST {p}{path} HTTP/1.1\r\n{h}{extra}\r\n{body}"

    def te_te(te_lines: str) -> str:
        # Both framings: a reader of Content-Length takes the smuggled request as body, a
        # reader of the (obfuscated) Transfer-Encoding as a request of its own.
        body = "0\r\n\r\n" + smuggled
        return post(f"Content-Length: {len(body)}\r\n" + te_lines, body)

    chunk = f"{len(smuggled):x}\r\n{smuggled}\r\n0\r\n\r\n"
    ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" \
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    return [
        ("CL.TE", te_te("Transfer-Encoding: chunked\r\n")),
        ("TE.CL", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunk)),
        ("TE.TE `chunked ` (trailing space)", te_te("Transfer-Encoding: chunked \r\n")),
        ("TE.TE `xchunked`", te_te("Transfer-Encoding: xchunked\r\n")),
        ("TE.TE `Transfer-Encoding : chunked`", te_te("Transfer-Encoding : chunked\r\n")),
        ("TE.TE `\\tchunked`", te_te("Transfer-Encoding:\tchunked\r\n")),
        ("TE.TE two TE headers", te_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")),
        ("TE.TE `chunked, identity`", te_te("Transfer-Encoding: chunked, identity\r\n")),
        ("TE.TE `x, chunked`", te_te("Transfer-Encoding: x, chunked\r\n")),
        ("TE.TE folded `TE:\\r\\n chunked`", te_te("Transfer-Encoding:\r\n chunked\r\n")),
        ("CL twice, same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello") + after),
        ("CL twice, differing",
         post(f"Content-Length: 5\r\nContent-Length: {5 + len(smuggled)}\r\n", "hello" + smuggled)),
        ("CL `5, 5`", post("Content-Length: 5, 5\r\n", "hello") + after),
        ("CL `+5`", post("Content-Length: +5\r\n", "hello") + after),
        ("CL `0005`", post("Content-Length: 0005\r\n", "hello") + after),
        ("CL on GET", f"GET {p}/ HTTP/1.1\r\n{h}Content-Length: {len(smuggled)}\r\n\r\n{smuggled}"),
        ("bare LF", f"GET {p}/a HTTP/1.1\nHost: {HOST}\n\nGET {p}/b HTTP/1.1\nHost: {HOST}\n\n"),
        ("bare LF, POST", f"POST {p}/a HTTP/1.1\nHost: {HOST}\nContent-Length: 2\n\nhi{after}"),
        ("obs-fold continuation", f"GET {p}/ HTTP/1.1\r\n{h}X-Folded: a\r\n b\r\n\r\n{after}"),
        ("chunk size overflow",
         post("Transfer-Encoding: chunked\r\n", "ffffffffffffffff1\r\nx\r\n0\r\n\r\n" + smuggled)),
        ("chunk size bad in 2nd chunk",
         post("Transfer-Encoding: chunked\r\n", "2\r\nhi\r\nzz\r\nhi\r\n0\r\n\r\n" + smuggled)),
        ("chunk ext odd bytes",
         post("Transfer-Encoding: chunked\r\n", "2;a=\"\\\"\x01\x7f\xff\r\nhi\r\n0\r\n\r\n") + after),
        ("chunk ext bare LF", post("Transfer-Encoding: chunked\r\n", "2;a\nb\r\nhi\r\n0\r\n\r\n" + smuggled)),
        ("chunk size `0x2`", post("Transfer-Encoding: chunked\r\n", "0x2\r\nhi\r\n0\r\n\r\n" + smuggled)),
        ("chunk size ` 2`", post("Transfer-Encoding: chunked\r\n", " 2\r\nhi\r\n0\r\n\r\n" + smuggled)),
        ("Expect 100-continue + body", post("Expect: 100-continue\r\nContent-Length: 5\r\n", "hello") + after),
        ("Expect 100-continue, no body", f"GET {p}/ HTTP/1.1\r\n{h}Expect: 100-continue\r\n\r\n{after}"),
        ("pipelined GET+GET", f"GET {p}/a HTTP/1.1\r\n{h}\r\n{after}"),
        ("pipelined GET+POST denied",
         f"GET {p}/a HTTP/1.1\r\n{h}\r\n" + post("Content-Length: 2\r\n", "hi", BLOCKED)),
        ("HTTP/1.0 keep-alive + 2nd", f"GET {p}/a HTTP/1.0\r\n{h}Connection: keep-alive\r\n\r\n{after}"),
        ("Upgrade websocket + smuggled", f"GET {p}/ws HTTP/1.1\r\n{h}{ws}\r\n{smuggled}"),
        ("duplicate Host", f"GET {p}/ HTTP/1.1\r\n{h}Host: other.example\r\n\r\n{after}"),
        ("missing Host", f"GET {p}/ HTTP/1.1\r\n\r\n{after}"),
        ("duplicate Host, chunked POST",
         f"POST {p}/ HTTP/1.1\r\n{h}Host: other.example\r\nTransfer-Encoding: chunked\r\n\r\n"
         f"2\r\nhi\r\n0\r\n\r\n{after}"),
        ("absolute-form, other Host", f"GET http://other.example{p}/x HTTP/1.1\r\n{h}\r\n{after}"),
        ("absolute-form to denied path", f"GET http://other.example{p}{BLOCKED} HTTP/1.1\r\n{h}\r\n"),
        ("NUL in header value", f"GET {p}/ HTTP/1.1\r\n{h}X-Nul: a\x00b\r\n\r\n{after}"),
        ("CR in header value", f"GET {p}/ HTTP/1.1\r\n{h}X-Cr: a\rb\r\n\r\n{after}"),
    ]


@dataclass
class Shape:
    name: str
    prefix: str
    raw: bytes


def shapes() -> list[Shape]:
    out = []
    for i in range(len(_shapes(""))):
        p = f"/s{i:02d}"
        name, raw = _shapes(p)[i]
        out.append(Shape(name, p, raw.encode("latin-1")))
    return out


# --------------------------------------------------------------------------------------------
# One exchange, and what came back


def exchange(port: int, data: bytes, quiet: float = 1.0, cap: float = 5.0) -> tuple[bytes, bool]:
    """Sends `data` on a fresh connection and reads until the peer closes (True) or has been
    quiet for `quiet` seconds (False)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    chunks = []
    closed = False
    with s:
        s.sendall(data)
        end = time.monotonic() + cap
        while time.monotonic() < end:
            s.settimeout(quiet)
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not c:
                closed = True
                break
            chunks.append(c)
    return b"".join(chunks), closed


STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\n]*\n")


def statuses(raw: bytes) -> list[int]:
    """The status codes of the responses in `raw`, read in sequence (interim ones included);
    -1 where the bytes are not a response."""
    try:
        return _statuses(raw)
    except ValueError:  # a length or chunk size that is not a number
        return [-1]


def _statuses(raw: bytes) -> list[int]:
    out = []
    pos = 0
    while pos < len(raw):
        m = STATUS_LINE.match(raw, pos)
        if not m:
            out.append(-1)
            break
        status = int(m.group(1))
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            out.append(status)
            break
        head = raw[pos:end].decode("latin-1")
        pos = end + 4
        out.append(status)
        if 100 <= status < 200 or status in (204, 304):
            continue
        fields = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            fields.setdefault(k.strip().lower(), v.strip().lower())
        if "chunked" in fields.get("transfer-encoding", ""):
            while True:
                nl = raw.find(b"\r\n", pos)
                if nl < 0:
                    return out
                size = int(raw[pos:nl].split(b";")[0] or b"0", 16)
                pos = nl + 2 + size + 2
                if size == 0:
                    break
        elif "content-length" in fields:
            pos += int(fields["content-length"])
        else:
            break
    return out


@dataclass
class Outcome:
    statuses: list[int]
    closed: bool
    upstream: list[Framed] = field(default_factory=list)

    def cell(self, prefix: str) -> str:
        st = ",".join(str(s) for s in self.statuses) or "none"
        up = ", ".join(
            f"{r.method} {r.path.removeprefix(prefix) or '/'}" + ("" if r.complete else " (cut)")
            for r in self.upstream
        ) or "-"
        return f"{st}{' closed' if self.closed else ''}; up: {up}"


def attribute(reqs: list[Framed], prefix: str) -> list[Framed]:
    return [r for r in reqs if r.path.startswith(prefix + "/") or r.path == prefix]


def run_corpus(port: int, up: RawUpstream, corpus: list[Shape]) -> dict[str, Outcome]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(lambda s: exchange(port, s.raw), corpus))
    time.sleep(0.5)  # the last requests on their way upstream
    _, reqs, _ = up.snapshot()
    return {
        s.name: Outcome(statuses(raw), closed, attribute(reqs, s.prefix))
        for s, (raw, closed) in zip(corpus, done)
    }


# --------------------------------------------------------------------------------------------
# The peers


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def start_nginx(tmp: Path, upstream_port: int) -> tuple[subprocess.Popen, int]:
    d = tmp / "nginx"
    d.mkdir()
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location ~ {BLOCKED}$ {{ return 403; }}
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }}
  }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "nginx")
    return proc, port


def start_haproxy(tmp: Path, upstream_port: int) -> tuple[subprocess.Popen, int]:
    d = tmp / "haproxy"
    d.mkdir()
    port = free_port()
    cfg = d / "haproxy.cfg"
    cfg.write_text(f"""
global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
  timeout http-request 3s
frontend fe
  bind 127.0.0.1:{port}
  http-request deny deny_status 403 if {{ path_end {BLOCKED} }}
  default_backend be
backend be
  server app 127.0.0.1:{upstream_port}
""")
    proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "haproxy")
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------------------------
# Moat's invariant


def subsequence(got: list[tuple], of: list[tuple]) -> bool:
    it = iter(of)
    return all(any(g == x for x in it) for g in got)


def moat_violations(s: Shape, o: Outcome) -> list[str]:
    strict, _ = strict_requests(s.raw)
    want = [r.key() for r in strict]
    got = [r.key() for r in o.upstream if r.complete]
    bad = []
    if any(r.path.endswith(BLOCKED) for r in o.upstream):
        bad.append("a request to the denied path reached the upstream")
    if not subsequence(got, want):
        bad.append(f"the upstream got {got}, not in order among what a strict parser reads: {want}")
    final = [x for x in o.statuses if x >= 200 or x < 0]
    if got != want and not any(x >= 400 or x < 0 for x in final) and len(final) >= len(want):
        bad.append(f"a strict parser forwards {want}; Moat forwarded {got} and answered {o.statuses}"
                   " without refusing anything or closing first")
    return bad


# --------------------------------------------------------------------------------------------
# The test


@pytest.fixture
def peers(moat_binary, tmp_path):
    """Moat, nginx and HAProxy (the last two when installed), each with its own upstream."""
    started: list = []
    ups: list[RawUpstream] = []

    def upstream() -> RawUpstream:
        u = RawUpstream().start()
        ups.append(u)
        return u

    out = {}
    up = upstream()
    cfg = tmp_path / "moat.toml"
    cfg.write_text(config_text(MOAT_RULES))
    m = Moat(up.url, tmp_path / "moat-state", cfg, presets=())
    started.append(m)
    m.start()
    out["Moat"] = (m.port, up)
    for name, path, start in (("nginx", NGINX, start_nginx), ("HAProxy", HAPROXY, start_haproxy)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            out[name] = None
            continue
        u = upstream()
        try:
            proc, port = start(tmp_path, u.port)
        except RuntimeError as e:
            print(f"{name} did not start: {e}")
            out[name] = None
            continue
        started.append(proc)
        out[name] = (port, u)
    try:
        yield out
    finally:
        for p in started:
            if isinstance(p, Moat):
                p.kill()
            else:
                stop(p)
        for u in ups:
            u.stop()


def table(corpus: list[Shape], results: dict[str, dict[str, Outcome] | None]) -> str:
    cols = list(results)
    rows = [["shape"] + cols]
    for s in corpus:
        row = [s.name]
        for c in cols:
            r = results[c]
            row.append("skipped (not installed)" if r is None else r[s.name].cell(s.prefix))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
    lines = [" | ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    legend = ("status codes in order (closed: the proxy closed the connection); up: the requests"
              " the upstream got, path after the shape's prefix, (cut) = head without its whole body")
    return "\n".join(lines) + "\n\n" + legend + "\n"


def test_smuggling_corpus(peers, tmp_path):
    corpus = shapes()
    results: dict[str, dict[str, Outcome] | None] = {}
    for name, peer in peers.items():
        results[name] = None if peer is None else run_corpus(peer[0], peer[1], corpus)
    text = table(corpus, results)
    (tmp_path / "smuggling-table.txt").write_text(text)
    print("\n" + text)
    print(f"(written to {tmp_path / 'smuggling-table.txt'})")

    moat = results["Moat"]
    _, _, errors = peers["Moat"][1].snapshot()
    problems = [f"{s.name}: {b}" for s in corpus for b in moat_violations(s, moat[s.name])]
    problems += [f"the upstream could not frame what Moat sent (connection {i}): {msg}"
                 for i, msg, cut in errors if not cut]
    assert not problems, "\n".join(problems)
    # The corpus reaches Moat's both sides: plain requests are served, and the shapes a strict
    # parser refuses are refused.
    assert moat["pipelined GET+GET"].statuses == [200, 200]
    assert moat["pipelined GET+POST denied"].statuses == [200, 403]
    for name in ("TE.TE `x, chunked`", "TE.TE `xchunked`", "CL twice, differing", "missing Host",
                 "duplicate Host", "duplicate Host, chunked POST", "NUL in header value",
                 "obs-fold continuation"):
        assert moat[name].statuses and moat[name].statuses[0] >= 400, (name, moat[name].statuses)
    # A refusal for the request's framing or Host ends the connection (on the fast path, which
    # takes the GETs, and on hyper's, which takes the chunked POST): nothing after it is read.
    for name in ("duplicate Host", "missing Host", "duplicate Host, chunked POST", "TE.TE `x, chunked`"):
        assert moat[name].closed and len(moat[name].statuses) == 1, (name, moat[name])
