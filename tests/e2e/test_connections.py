"""Connection-level abuse: slow-loris under the header timeout, malformed requests, oversized
headers and bodies. Each only ever costs its own connection; Moat keeps serving."""

from __future__ import annotations

import asyncio
import time

from moat_harness import (
    COHORT_PER_ADDRESS,
    MAGIC_LINK,
    chrome_headers,
    cleared_headers,
    get_from,
    post_from,
    raw_exchange,
    status_of,
)

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 5.0
SLOW_LIMITS = f"""[limits]
header_timeout = "{int(HEADER_TIMEOUT)}s"
idle_timeout = "{int(IDLE_TIMEOUT)}s"
"""


async def _slow_client(ip: str, port: int, payload: bytes, interval: float, give_up: float):
    """Trickles `payload` one byte per `interval`; returns (outcome, seconds, data)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    sent = 0
    try:
        while loop.time() - t0 < give_up:
            if payload and sent < len(payload):
                try:
                    writer.write(payload[sent:sent + 1])
                    await writer.drain()
                    sent += 1
                except (ConnectionError, OSError):
                    return "reset", loop.time() - t0, b""
            try:
                data = await asyncio.wait_for(reader.read(4096), interval)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, OSError):
                return "reset", loop.time() - t0, b""
            if not data:
                return "closed", loop.time() - t0, b""
            return "answered", loop.time() - t0, data
        return "open", loop.time() - t0, b""
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1)
        except Exception:
            pass


def test_slow_loris_connections_are_cut_and_others_are_served(moat_factory, upstream):
    # The normal traffic's five sign-ups come from one /16 and never click their links: each
    # address is its own cohort here (the per-cohort limit is test_cohorts.py's).
    m = moat_factory(SLOW_LIMITS + COHORT_PER_ADDRESS)
    give_up = 12.0
    # Closed by the header timeout (plus slack for a loaded 2-core machine); without one, a
    # trickle that never goes quiet would hold the connection for as long as it likes.
    bound = HEADER_TIMEOUT + IDLE_TIMEOUT + 1.0
    slow_line = b"GET /" + b"a" * 500
    slow_headers = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nUser-Agent: slow\r\n"
                    "X-Slow: ").encode() + b"b" * 500

    async def scenario():
        clients = []
        for i in range(50):
            ip = f"127.88.{i // 10}.{10 + i % 10}"
            payload = slow_line if i % 2 else slow_headers
            clients.append(asyncio.create_task(_slow_client(ip, m.port, payload, 0.2, give_up)))
        # Ten more that connect and never send a byte.
        silent = [asyncio.create_task(_slow_client(f"127.89.0.{10 + i}", m.port, b"", 0.2, give_up))
                  for i in range(10)]
        await asyncio.sleep(0.5)
        # Normal traffic while the 60 connections are held.
        served = []
        for i in range(5):
            r = await asyncio.to_thread(get_from, f"127.90.{i}.10", m.url("/"))
            served.append(("GET /", r.status, r.body[:40]))
            r = await asyncio.to_thread(
                post_from, f"127.90.{i}.10", m.url(MAGIC_LINK),
                headers=cleared_headers(m.base, f"127.90.{i}.10"),
                json_body={"email": f"real{i}@example.com"})
            served.append(("POST magic link", r.status, r.body))
        return served, await asyncio.gather(*clients), await asyncio.gather(*silent)

    served, slow, silent = asyncio.run(scenario())

    assert all(s == ("GET /", 200, s[2]) or s == ("POST magic link", 201, b"Created.")
               for s in served), f"normal requests not served during the slow-loris: {served}"
    assert len(upstream.magic_links()) == 5

    def ok(outcome):
        kind, t, data = outcome
        if kind in ("closed", "reset"):
            return t <= bound
        if kind == "answered":
            return status_of(data) == 408 and t <= bound
        return False

    bad = [(i, o[0], round(o[1], 1), o[2][:60]) for i, o in enumerate(slow) if not ok(o)]
    assert not bad, (
        f"{len(bad)} of 50 trickling connections not cut within {bound}s "
        f"(header_timeout {HEADER_TIMEOUT}s): {bad[:5]}")
    bad = [(i, o[0], round(o[1], 1), o[2][:60]) for i, o in enumerate(silent) if not ok(o)]
    assert not bad, f"{len(bad)} of 10 silent connections not cut within {bound}s: {bad[:5]}"

    # And Moat still serves afterwards.
    assert get_from("127.90.9.10", m.url("/")).status == 200


BODY_LIMITS = """[limits]
max_body_bytes = 1000
max_header_bytes = 16384
"""


def test_garbage_request_line_gets_400_and_moat_keeps_serving(moat_factory, upstream):
    m = moat_factory(BODY_LIMITS)
    for garbage in (
        b"THIS IS NOT HTTP AT ALL\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nthis header has no colon\r\n\r\n",
    ):
        raw = raw_exchange("127.91.0.10", m.port, garbage)
        assert status_of(raw) == 400, f"{garbage!r} answered {raw[:80]!r}"
        r = get_from("127.91.0.11", m.url("/"))
        assert r.status == 200, f"Moat stopped serving after {garbage!r}"
    assert upstream.seen("/", "GET") and all(s.path == "/" for s in upstream.seen())


def test_header_block_over_the_limit_gets_431(moat_factory, upstream):
    m = moat_factory(BODY_LIMITS)

    def request(header_bytes: int) -> bytes:
        head = f"GET /big HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\n"
        n = header_bytes // 1000
        head += "".join(f"X-Filler-{i}: {'f' * 980}\r\n" for i in range(n))
        return (head + "Connection: close\r\n\r\n").encode()

    raw = raw_exchange("127.92.0.10", m.port, request(40_000))
    assert status_of(raw) == 431, f"a 40 kB header block answered {raw[:80]!r}"
    assert upstream.seen("/big") == []
    # Within the configured limit (16 kB) headers pass.
    raw = raw_exchange("127.92.0.10", m.port, request(6_000))
    assert status_of(raw) == 200, f"a 6 kB header block answered {raw[:80]!r}"
    assert get_from("127.92.0.11", m.url("/")).status == 200


def test_declared_body_over_max_body_bytes_gets_413(moat_factory, upstream):
    m = moat_factory(BODY_LIMITS)
    for path in ("/upload", MAGIC_LINK):
        r = post_from("127.93.0.10", m.url(path), headers=chrome_headers(m.base),
                      data=b'{"email":"a@example.com","pad":"' + b"x" * 5000 + b'"}')
        assert r.status == 413, f"POST {path} with Content-Length 5000+ answered {r.status} {r.body!r}"
    assert upstream.seen("/upload") == [] and upstream.magic_links() == []
    # Only the declaration: no body follows, still refused at once.
    raw = raw_exchange("127.93.0.10", m.port, (
        f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\nContent-Length: 1001\r\n"
        "Content-Type: application/octet-stream\r\n\r\n").encode())
    assert status_of(raw) == 413, f"Content-Length 1001 answered {raw[:80]!r}"
    # Under the limit passes.
    r = post_from("127.93.0.11", m.url("/upload"), data=b"y" * 900)
    assert r.status == 200, r
    assert [len(s.body) for s in upstream.seen("/upload")] == [900]


def test_chunked_body_over_max_body_bytes_gets_413(moat_factory, upstream):
    """The limit also holds when no Content-Length is declared."""
    m = moat_factory(BODY_LIMITS)
    chunks = b"".join(b"%x\r\n%s\r\n" % (500, b"z" * 500) for _ in range(6)) + b"0\r\n\r\n"
    raw = raw_exchange("127.94.0.10", m.port, (
        f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{m.port}\r\n"
        "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode() + chunks)
    assert status_of(raw) == 413, f"a 3000-byte chunked body answered {raw[:80]!r}"
    assert all(len(s.body) <= 1000 for s in upstream.seen("/upload")), (
        f"the upstream received {[len(s.body) for s in upstream.seen('/upload')]} bytes")
    assert get_from("127.94.0.11", m.url("/")).status == 200
