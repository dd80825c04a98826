"""Bans: earned by repeated offences or added by hand, kept in the state directory across a
kill -9, enforced (403 on pages, the decoy on protected routes), and lifted by `moat allow`
while Moat runs."""

from __future__ import annotations

import signal
import time

from moat_harness import MAGIC_LINK, chrome_headers, get_from, post_from


def banned_scopes(moat) -> set[str]:
    return {b["scope"] for b in moat.bans()}


def is_banned(scopes: set[str], ip: str) -> bool:
    return ip in scopes or f"{ip}/32" in scopes


def test_ban_survives_kill_9_and_restart_and_allow_lifts_it(moat_factory, upstream, tmp_path):
    state = tmp_path / "state"
    m = moat_factory(state_dir=state)
    offender, manual, bystander = "127.66.0.9", "127.66.2.9", "127.66.1.9"

    # Five offences (script user agent on the magic-link route) from one address: banned.
    for i in range(5):
        r = post_from(offender, m.url(MAGIC_LINK), json_body={"email": f"list{i}@example.com"})
        assert (r.status, r.body) == (201, b"Created."), r
    assert upstream.magic_links() == []
    scopes = m.wait_for(lambda: (lambda s: s if is_banned(s, offender) else None)(banned_scopes(m)),
                        timeout=5)
    assert scopes and is_banned(scopes, offender), (
        f"5 offences from {offender} did not ban it: bans list = {m.bans()}")
    assert get_from(offender, m.url("/")).status == 403
    assert get_from(bystander, m.url("/")).status == 200

    # A manual ban from the CLI reaches the running instance within ~2 s.
    r = m.cli("bans", "add", manual)
    assert r.returncode == 0, r.stdout + r.stderr
    assert m.wait_for(lambda: get_from(manual, m.url("/")).status == 403, timeout=3, interval=0.2), (
        f"`moat bans add {manual}` was not enforced by the running instance within 3 s")

    # kill -9 and restart on the same state directory.
    m.kill(signal.SIGKILL)
    assert m.proc.returncode == -signal.SIGKILL
    m.start()
    assert m.starts == 2
    scopes = banned_scopes(m)
    assert is_banned(scopes, offender) and is_banned(scopes, manual), (
        f"bans lost across kill -9: {m.bans()}")
    for ip in (offender, manual):
        r = get_from(ip, m.url("/"))
        assert r.status == 403, f"{ip} served after restart: {r.status} {r.body!r}"
    assert get_from(bystander, m.url("/")).status == 200

    # A banned client on the protected route gets the decoy, even with a browser's headers.
    r = post_from(offender, m.url(MAGIC_LINK), headers=chrome_headers(m.base),
                  json_body={"email": "banned@example.com"})
    assert (r.status, r.body) == (201, b"Created."), r
    assert upstream.magic_links() == [], "a banned client reached the upstream"

    # `moat allow` lifts the ban; the running instance notices within ~2 s.
    r = m.cli("allow", offender)
    assert r.returncode == 0, r.stdout + r.stderr
    t0 = time.monotonic()
    ok = m.wait_for(lambda: get_from(offender, m.url("/")).status == 200, timeout=3, interval=0.2)
    assert ok, f"{offender} still refused {time.monotonic() - t0:.1f}s after `moat allow`"
    assert not is_banned(banned_scopes(m), offender), f"ban still listed after allow: {m.bans()}"
    assert is_banned(banned_scopes(m), manual), "allow lifted an unrelated ban"
    assert get_from(manual, m.url("/")).status == 403
