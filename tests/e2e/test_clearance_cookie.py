"""Issue 16 (security review): Moat's own clearance cookie never reaches the app. The token is
Moat's business; an app that logs or echoes cookies must not hand it to anyone. Both request
paths are checked: the fast path (a plain GET) and hyper's (a chunked POST, which the fast path
hands over), and a jar that held only Moat's cookie arrives without a Cookie header at all."""

from __future__ import annotations

import socket

import requests


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_the_clearance_cookie_is_stripped_on_both_paths(moat, upstream):
    jar = "a=1; moat_clearance=SECRET1; __Host-moat=SECRET2; b=2"
    r = requests.get(moat.url("/tag/news/"), headers={"Cookie": jar}, timeout=5)
    assert r.status_code == 200
    seen = upstream.seen("/tag/news/")
    assert seen, "the GET did not reach the app"
    assert seen[-1].header_all("cookie") == ["a=1; b=2"]

    body = b'{"x":1}'
    req = (b"POST /api/other HTTP/1.1\r\nHost: blog.example\r\nContent-Type: application/json\r\n"
           b"Cookie: moat_clearance=SECRET3\r\nCookie: c=3\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    answer = raw(moat.port, req)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    seen = upstream.seen("/api/other", method="POST")
    assert seen, f"the chunked POST did not reach the app: {answer[:200]!r}"
    assert seen[-1].header_all("cookie") == ["c=3"]

    only = requests.get(moat.url("/about/"), headers={"Cookie": "moat_clearance=SECRET4"},
                        timeout=5)
    assert only.status_code == 200
    seen = upstream.seen("/about/")
    assert seen and seen[-1].header_all("cookie") == [], seen[-1].headers

    everything = " ".join(v for s in upstream.seen() for _, v in s.headers)
    assert "SECRET" not in everything, "a clearance token reached the app"
