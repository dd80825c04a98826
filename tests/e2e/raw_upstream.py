"""A raw recording upstream for the request-smuggling corpus: an asyncio server on loopback that
keeps the exact bytes of every connection, frames them with h11 (a strict HTTP/1.1 parser) and
answers each request it can frame with a fixed `200` with a Content-Length. Where h11 cannot
frame what arrived, it answers 400 and closes, as a strict server would, and keeps the error.

`strict_requests` is the same strict reading of a byte stream, offline: the reference for what
a client's bytes hold, and for what a proxy sent upstream."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import h11

BODY = b"upstream-ok\n"


@dataclass
class Framed:
    """One request as h11 framed it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    # The whole request arrived (h11 reached its end); False: the head and part of the body.
    complete: bool = True
    conn: int = -1
    at: float = 0.0

    @property
    def path(self) -> str:
        """The target in origin form: an absolute-form target loses scheme and authority."""
        t = self.target
        for scheme in ("http://", "https://"):
            if t.lower().startswith(scheme):
                rest = t[len(scheme):]
                slash = rest.find("/")
                return rest[slash:] if slash >= 0 else "/"
        return t

    def key(self) -> tuple[str, str, bytes]:
        return (self.method, self.path, self.body)

    def header_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]


def _framed(ev: h11.Request, body: bytes, complete: bool) -> Framed:
    return Framed(
        method=ev.method.decode("latin-1"),
        target=ev.target.decode("latin-1"),
        version=ev.http_version.decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers],
        body=body,
        complete=complete,
    )


def _persists(r: Framed) -> bool:
    """Whether the connection goes on after `r` (RFC 9112 section 9.3): HTTP/1.1 unless it says
    close, HTTP/1.0 only if it says keep-alive (h11 itself never keeps an HTTP/1.0 connection,
    which is a choice, not framing)."""
    tokens = {t.strip().lower() for v in r.header_all("connection") for t in v.split(",")}
    if "close" in tokens:
        return False
    return r.version == "1.1" or "keep-alive" in tokens


def strict_requests(data: bytes) -> tuple[list[Framed], str | None]:
    """The requests a strict HTTP/1.1 server reads from `data` (a connection's bytes, then its
    end), each framed by h11 from where the previous one ended: (requests, the error that
    stopped the reading or None). A request whose body the stream ends inside is left out."""
    out: list[Framed] = []
    rest = data
    while rest:
        c = h11.Connection(h11.SERVER)
        c.receive_data(rest)
        c.receive_data(b"")
        req = None
        body = bytearray()
        try:
            while True:
                ev = c.next_event()
                if isinstance(ev, h11.Request):
                    req = ev
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    break
                else:  # NEED_DATA, PAUSED, ConnectionClosed: the stream ended first
                    return out, ("cut inside a request" if req is not None else None)
        except h11.RemoteProtocolError as e:
            return out, f"{e} ({e.error_status_hint})"
        r = _framed(req, bytes(body), True)
        out.append(r)
        rest = c.trailing_data[0]
        if not _persists(r):
            return out, None
    return out, None


class RawUpstream:
    """The recording server, on its own event loop in a background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Every connection's bytes, in the order connections came.
        self.connections: list[bytearray] = []
        # Every request framed, in the order they were framed (incomplete ones when their
        # connection ended inside the body).
        self.requests: list[Framed] = []
        # h11's errors: (connection index, message, whether it was only the connection ending
        # inside a request).
        self.errors: list[tuple[int, str, bool]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            idx = len(self.connections)
            rec = bytearray()
            self.connections.append(rec)
        conn = h11.Connection(h11.SERVER)
        req: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                data = await reader.read(65536)
                with self._lock:
                    rec += data
                conn.receive_data(data)
                while True:
                    try:
                        ev = conn.next_event()
                    except h11.RemoteProtocolError as e:
                        with self._lock:
                            self.errors.append((idx, str(e), not data))
                        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                         b"Connection: close\r\n\r\n")
                        return
                    if ev is h11.NEED_DATA:
                        break
                    if isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                        return
                    if isinstance(ev, h11.Request):
                        req, body = ev, bytearray()
                        if conn.they_are_waiting_for_100_continue:
                            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        r = _framed(req, bytes(body), True)
                        r.conn, r.at = idx, time.monotonic()
                        with self._lock:
                            self.requests.append(r)
                        req = None
                        writer.write(conn.send(h11.Response(
                            status_code=200,
                            headers=[("Content-Length", str(len(BODY))), ("Content-Type", "text/plain")])))
                        writer.write(conn.send(h11.Data(data=BODY)))
                        writer.write(conn.send(h11.EndOfMessage()))
                        await writer.drain()
                        if conn.our_state is h11.MUST_CLOSE:
                            return
                        conn.start_next_cycle()
                if not data:
                    return
        except (ConnectionError, h11.LocalProtocolError) as e:
            with self._lock:
                self.errors.append((idx, f"{type(e).__name__}: {e}", True))
        finally:
            if req is not None:
                r = _framed(req, bytes(body), False)
                r.conn, r.at = idx, time.monotonic()
                with self._lock:
                    self.requests.append(r)
            try:
                writer.close()
            except Exception:
                pass

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "RawUpstream":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> tuple[list[bytes], list[Framed], list[tuple[int, str, bool]]]:
        with self._lock:
            return ([bytes(c) for c in self.connections], list(self.requests), list(self.errors))
