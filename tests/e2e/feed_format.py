"""Moat's feed format written a second time, in Python (docs/feeds.md), for the tests' and
bench/hub.py's own publishers: a C2SP signed note with Ed25519 (Python's `cryptography`) naming
gzip'd JSON-lines files by SHA-256."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json


class FeedKey:
    def __init__(self, name: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.name = name
        self.priv = Ed25519PrivateKey.generate()
        self.pub = self.priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.hash = hashlib.sha256(name.encode() + b"\n\x01" + self.pub).digest()[:4]

    @property
    def vkey(self) -> str:
        """What a subscriber pins: NAME+HEX8(KEYHASH)+BASE64(0x01 || KEY)."""
        raw = b"\x01" + self.pub
        return f"{self.name}+{self.hash.hex()}+{base64.b64encode(raw).decode()}"

    def sign(self, text: str) -> bytes:
        sig = self.priv.sign(text.encode())
        return (text + "\n" + f"\u2014 {self.name} {base64.b64encode(self.hash + sig).decode()}\n").encode()


def indicator(value: str, now: int, expires: int, detector: str = "jail:sshd", count: int = 1) -> dict:
    return {"op": "add", "kind": "prefix" if "/" in value else "ip", "value": value,
            "detector": detector, "count": count, "first_seen": now - 60, "last_seen": now,
            "expires": expires}


def feed_file(feed: str, number: int, kind: str, ops: list[dict]) -> bytes:
    """A snapshot or delta: the header line, then the ops, gzip'd."""
    lines = [json.dumps({"feed": feed, "number": number, "type": kind})] + [json.dumps(o) for o in ops]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def head(key: FeedKey, seq: int, expires: int, snapshot: tuple[int, bytes],
         deltas: list[tuple[int, bytes]] = ()) -> bytes:
    """The signed head naming a snapshot and the deltas after it."""
    def ref(kind: str, n: int, data: bytes) -> str:
        return f"{kind} {n} {hashlib.sha256(data).hexdigest()} {len(data)}\n"
    text = f"moat-feed/1\norigin {key.name}\nseq {seq}\nexpires {expires}\n" + ref("snapshot", *snapshot)
    for n, data in deltas:
        text += ref("delta", n, data)
    return key.sign(text)
