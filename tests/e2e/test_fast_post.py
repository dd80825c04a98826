"""Issue 15 (attack path): the fast path now takes a POST whose small body is framed by one
plain Content-Length, so a flood of scripted sign-ups is decided without hyper. These check
that the framing is exact on a kept-alive connection (a body split over several reads, a
pipelined request after it), that a forwarded body reaches the app byte for byte, that a
stalled body gets 408, and that a doubtful framing still goes to hyper's stricter handling."""

from __future__ import annotations

import socket
import time

from moat_harness import CHROME_UA, MAGIC_LINK


def connect(ip: str, port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ip, 0))
    return s


def read_responses(s: socket.socket, n: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """Reads `n` Content-Length-framed responses from `s`: (status, body) each."""
    s.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            c = s.recv(65536)
            assert c, f"closed after {len(out)} responses: {buf[:200]!r}"
            buf += c
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while len(rest) < length:
            c = s.recv(65536)
            assert c, "closed inside a body"
            rest += c
        out.append((status, rest[:length]))
        buf = rest[length:]
    return out


def post(path: str, port: int, body: bytes, ua: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {ua}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_a_split_body_and_a_pipelined_request_are_framed_exactly(moat_factory, upstream):
    m = moat_factory()
    body = b'{"name":"' + b"n" * 3000 + b'"}'
    s = connect("127.94.0.10", m.port)
    with s:
        req = post("/form", m.port, body, CHROME_UA)
        # The head and the first bytes of the body, a pause, then the rest of the body with a
        # pipelined GET right behind it in the same write.
        s.sendall(req[: len(req) - 2000])
        time.sleep(0.3)
        s.sendall(req[len(req) - 2000 :] + f"GET /after HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\n\r\n".encode())
        (st1, _), (st2, _) = read_responses(s, 2)
    assert (st1, st2) == (200, 200)
    seen = upstream.seen("/form")
    assert len(seen) == 1 and seen[0].body == body, "the app got the body byte for byte"
    assert len(upstream.seen("/after")) == 1, "the pipelined GET was a request of its own"


def test_scripted_posts_get_the_decoy_on_one_kept_alive_connection(moat_factory, upstream):
    m = moat_factory()
    s = connect("127.94.1.10", m.port)
    with s:
        n = 12
        data = b"".join(post(MAGIC_LINK, m.port, f'{{"email":"v{i}@example.com"}}'.encode(),
                             "python-requests/2.32.3") for i in range(n))
        s.sendall(data)
        answers = read_responses(s, n)
    assert all(st == 201 for st, _ in answers), answers
    assert upstream.magic_links() == [], "no scripted send reached the app"


def test_a_stalled_body_gets_408(moat_factory, upstream):
    m = moat_factory('[limits]\nbody_timeout = "1s"\n')
    s = connect("127.94.2.10", m.port)
    with s:
        s.sendall(post("/form", m.port, b"x" * 100, CHROME_UA)[:-60])
        t = time.monotonic()
        (st, _), = read_responses(s, 1, timeout=10)
        took = time.monotonic() - t
        assert st == 408 and 0.8 < took < 5, (st, took)
        s.settimeout(2)
        assert s.recv(100) == b"", "the connection is closed after the 408"
    assert upstream.seen("/form") == []


def test_doubtful_framing_is_left_to_hyper(moat_factory, upstream):
    m = moat_factory()
    # Content-Length and Transfer-Encoding together: refused (RFC 9112, section 6.1).
    s = connect("127.94.3.10", m.port)
    with s:
        s.sendall(post("/form", m.port, b"hello", CHROME_UA, "Transfer-Encoding: chunked\r\n"))
        (st, _), = read_responses(s, 1)
    assert st == 400, st
    assert upstream.seen("/form") == []
    # Two identical Content-Lengths: hyper takes them as one (RFC 9110, section 8.6 allows
    # either); the app gets the body once, exactly, and nothing after it is a request.
    s = connect("127.94.3.11", m.port)
    with s:
        s.sendall(post("/form", m.port, b"hello", CHROME_UA, "Content-Length: 5\r\n"))
        (st, _), = read_responses(s, 1)
    assert st == 200, st
    assert [x.body for x in upstream.seen("/form")] == [b"hello"]
