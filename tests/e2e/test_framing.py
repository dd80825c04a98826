"""Requests whose Host or transfer coding an upstream could read otherwise than Moat did are
refused before the policy (RFC 9112 sections 3.2 and 6.1; issue 16 names them): an HTTP/1.1
request without a Host or with two gets 400, a transfer coding other than a single `chunked`
gets 501. Before, Moat forwarded two Hosts as they came, an absent one as empty, and decoded
`x, chunked` as chunked."""

from __future__ import annotations

from moat_harness import CHROME_UA, raw_exchange, status_of

PROBE = "127.95.0.10"


def test_host_must_be_there_once_in_http_1_1(moat_factory, upstream):
    m = moat_factory()
    for head in (
        "GET /nohost HTTP/1.1\r\nUser-Agent: {ua}\r\nConnection: close\r\n\r\n",
        "GET /twohosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nUser-Agent: {ua}\r\nConnection: close\r\n\r\n",
        "POST /twohosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nUser-Agent: {ua}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ):
        raw = raw_exchange(PROBE, m.port, head.format(ua=CHROME_UA).encode())
        assert status_of(raw) == 400, (head, raw[:120])
    assert upstream.seen("/nohost") == [] and upstream.seen("/twohosts") == []
    # HTTP/1.0 needs no Host, and one Host passes.
    raw = raw_exchange(PROBE, m.port, f"GET /old HTTP/1.0\r\nUser-Agent: {CHROME_UA}\r\n\r\n".encode())
    assert status_of(raw) == 200, raw[:120]
    raw = raw_exchange(PROBE, m.port, (f"GET /one HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\n"
                                       f"User-Agent: {CHROME_UA}\r\nConnection: close\r\n\r\n").encode())
    assert status_of(raw) == 200, raw[:120]


def test_only_chunked_is_a_transfer_coding_moat_accepts(moat_factory, upstream):
    m = moat_factory()
    body = "2\r\nok\r\n0\r\n\r\n"
    for te in ("x, chunked", "gzip, chunked", "chunked, chunked"):
        raw = raw_exchange(PROBE, m.port, (
            f"POST /te HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: {CHROME_UA}\r\n"
            f"Transfer-Encoding: {te}\r\nConnection: close\r\n\r\n{body}").encode())
        assert status_of(raw) == 501, (te, raw[:120])
    assert upstream.seen("/te") == []
    raw = raw_exchange(PROBE, m.port, (
        f"POST /te HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: {CHROME_UA}\r\n"
        f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}").encode())
    assert status_of(raw) == 200, raw[:120]
    assert [s.body for s in upstream.seen("/te")] == [b"ok"]


def test_a_malformed_chunked_body_is_the_clients_error(moat_factory, upstream):
    """A chunked body Moat cannot decode is answered 400 (the client's fault), not 502 as if the
    upstream had failed, and it never counts as an upstream error."""
    m = moat_factory()
    for body in ("ffffffffffffffff1\r\nx\r\n0\r\n\r\n",   # chunk size overflow
                 "0x2\r\nhi\r\n0\r\n\r\n",                 # not hex digits
                 "2\r\nhi\r\nzz\r\nxx\r\n0\r\n\r\n"):       # bad size in the second chunk
        raw = raw_exchange(PROBE, m.port, (
            f"POST /badchunk HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: {CHROME_UA}\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}").encode())
        assert status_of(raw) == 400, (body, raw[:120])


def test_a_head_over_the_cap_gets_431_even_when_it_arrives_whole(moat_factory, upstream):
    """limits.max_header_bytes (32 KiB by default) holds however the head arrives: hyper bounds
    only a head still incomplete, so one sent in a single write used to pass at 40 KB."""
    m = moat_factory()
    pad = "a" * 40_000
    raw = raw_exchange(PROBE, m.port, (
        f"GET /bighead HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: {CHROME_UA}\r\n"
        f"X-Pad: {pad}\r\nConnection: close\r\n\r\n").encode())
    assert status_of(raw) == 431, raw[:120]
    assert upstream.seen("/bighead") == []
    raw = raw_exchange(PROBE, m.port, (
        f"GET /bighead HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: {CHROME_UA}\r\n"
        f"X-Pad: {pad[:8_000]}\r\nConnection: close\r\n\r\n").encode())  # under the test app's own 8 KB
    assert status_of(raw) == 200, raw[:120]
