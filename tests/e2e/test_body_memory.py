"""Issue 16 (security review): bodies read for JSON fields share one memory budget across
connections (limits.max_body_memory_bytes). A client trickling a large body holds its share;
when slow bodies hold it all, the next request that needs its body read waits a moment and is
told 503 with Retry-After (never dropped silently), and is served again once memory is free."""

from __future__ import annotations

import socket
import time

import requests

from moat_harness import ADMIN_TOKEN

MAGIC = "/members/api/send-magic-link/"


def chunked_head(host: str = "blog.example") -> bytes:
    # Chunked: no declared length, so the read reserves the whole JSON cap (and is not taken
    # by the fast path, which reads only bodies with a Content-Length).
    return (f"POST {MAGIC} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def read_status(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        got = s.recv(65536)
        if not got:
            break
        data += got
    return data


def metric(moat, name: str) -> float:
    r = requests.get(moat.admin_base + "/metrics",
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_slow_bodies_cannot_hold_more_than_the_budget(moat_factory, upstream):
    moat = moat_factory("[limits]\nmax_json_body_bytes = 65536\nmax_body_memory_bytes = 65536\n"
                        'body_timeout = "20s"\n')
    slow = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    slow.sendall(chunked_head() + chunk(b'{"email": "'))
    time.sleep(0.5)  # its read has begun and holds the whole budget

    started = time.monotonic()
    second = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    second.sendall(chunked_head() + chunk(b'{"email":"b@victim.example"}') + b"0\r\n\r\n")
    answer = read_status(second, 10)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"\r\nretry-after: 2\r\n" in answer.lower(), answer[:300]
    assert 1.5 < waited < 6, waited
    assert metric(moat, "moat_http_body_memory_refused_total") >= 1
    second.close()

    # The slow client finishes: its request is served and the memory is free again.
    slow.sendall(chunk(b'a@victim.example"}') + b"0\r\n\r\n")
    answer = read_status(slow, 10)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    slow.close()
    third = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    third.sendall(chunked_head() + chunk(b'{"email":"c@victim.example"}') + b"0\r\n\r\n")
    answer = read_status(third, 10)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    third.close()


def test_a_slow_form_on_the_fast_path_counts_against_the_same_budget(moat_factory, upstream):
    moat = moat_factory("[limits]\nmax_json_body_bytes = 65536\nmax_body_memory_bytes = 65536\n"
                        'body_timeout = "20s"\n')
    # A Content-Length POST is read by the fast path; this one declares 60,000 bytes and sends
    # a few, holding 60,000 of the 65,536.
    slow = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    slow.sendall((f"POST {MAGIC} HTTP/1.1\r\nHost: blog.example\r\nContent-Type: application/json\r\n"
                  "Content-Length: 60000\r\n\r\n").encode() + b'{"email": "')
    time.sleep(0.5)
    # Another slow one that declares 10,000 bytes no longer fits, on either path.
    second = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    second.sendall((f"POST {MAGIC} HTTP/1.1\r\nHost: blog.example\r\nContent-Type: application/json\r\n"
                    "Content-Length: 10000\r\n\r\n").encode() + b'{"email": "')
    answer = read_status(second, 10)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    second.close()
    third = socket.create_connection(("127.0.0.1", moat.port), timeout=5)
    third.sendall(chunked_head() + chunk(b'{"email":"c@victim.example"}') + b"0\r\n\r\n")
    answer = read_status(third, 10)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    third.close()
    # A form that arrives whole with its head holds nothing while waiting: it is served.
    whole = requests.post(moat.url(MAGIC), json={"email": "d@victim.example"},
                          headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"},
                          timeout=5)
    assert whole.status_code != 503, "a whole form was refused for memory it never waited on"
    slow.close()
