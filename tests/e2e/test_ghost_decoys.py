"""The ghost preset against list-validation scripts on rotating addresses: scripts never reach
Ghost's magic-link handler and cannot tell their answer from a genuine success; browsers do
reach it, with their real address in X-Forwarded-For."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from moat_harness import (
    CHROME_UA,
    MAGIC_LINK,
    Reply,
    address_pool,
    aio_post,
    cleared_headers,
    click_link,
    person_post,
    post_from,
    raw_exchange,
    status_of,
)

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def genuine_reference(moat, upstream, ip: str, email: str) -> Reply:
    """A browser-like sign-up through Moat: it reaches Ghost, and Moat learns its answer."""
    before = len(upstream.magic_links())
    ref = post_from(ip, moat.url(MAGIC_LINK), headers=cleared_headers(moat.base, ip),
                    json_body={"email": email})
    assert ref.status == 201, ref
    assert ref.body == b"Created.", ref
    assert "content-type" not in ref.header_names(), f"the upstream's success has no content type: {ref.headers}"
    assert len(upstream.magic_links()) == before + 1, "the genuine sign-up did not reach the upstream"
    return ref


def assert_all_decoys(replies: list[tuple[str, Reply]], ref: Reply) -> None:
    want = ref.comparable()
    bad = [(who, r.comparable()) for who, r in replies if r.comparable() != want]
    assert not bad, (
        f"{len(bad)} of {len(replies)} answers differ from the genuine success\n"
        f"genuine: {want}\nfirst different ({bad[0][0]}): {bad[0][1]}"
    )


def test_default_user_agent_scripts_never_reach_ghost(moat, upstream):
    ref = genuine_reference(moat, upstream, "127.0.0.2", "reader@example.com")

    # 60 emails from 60 addresses over 6 /24s: 30 with aiohttp's own UA, 30 with requests'.
    addrs = address_pool(60, first_octets=(10, 11, 12), per_prefix=10)
    assert len({a.rsplit(".", 1)[0] for a in addrs}) == 6
    emails = [f"victim{i}@example.org" for i in range(60)]

    async def aio_attack():
        sem = asyncio.Semaphore(8)

        async def one(ip, email):
            async with sem:
                return ip, await aio_post(ip, moat.url(MAGIC_LINK), {"email": email})

        return await asyncio.gather(*(one(ip, e) for ip, e in zip(addrs[:30], emails[:30])))

    replies = list(asyncio.run(aio_attack()))
    with ThreadPoolExecutor(4) as pool:
        replies += list(pool.map(
            lambda ie: (ie[0], post_from(ie[0], moat.url(MAGIC_LINK), json_body={"email": ie[1]})),
            zip(addrs[30:], emails[30:]),
        ))

    assert len(replies) == 60
    reached = [r.json for r in upstream.magic_links()]
    assert reached == [{"email": "reader@example.com"}], f"scripts reached the upstream: {reached}"
    assert_all_decoys(replies, ref)

    # The attack decided per request: each script request was logged as a script user agent.
    moat.wait_for(lambda: len(moat.decisions()) >= 60, timeout=3)
    uas = {d.get("user_agent", "").split("/")[0] for d in moat.decisions()}
    assert {"Python", "python-requests"} <= uas, f"user agents seen in decisions: {uas}"

    # A person signing up afterwards is still served.
    genuine_reference(moat, upstream, "127.0.0.3", "late.reader@example.com")


def test_spoofed_browser_user_agent_without_browser_headers_never_reaches_ghost(moat, upstream):
    ref = genuine_reference(moat, upstream, "127.0.0.2", "reader@example.com")
    base = moat.base
    common = {"Accept": "*/*", "Accept-Language": "en-US,en;q=0.9",
              "Content-Type": "application/json"}
    variants = {
        "chrome, no origin": {**common, "User-Agent": CHROME_UA},
        "chrome, origin": {**common, "User-Agent": CHROME_UA, "Origin": base,
                           "Referer": base + "/"},
        "chrome, origin and sec-fetch-*, no sec-ch-ua": {
            **common, "User-Agent": CHROME_UA, "Origin": base, "Referer": base + "/",
            "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"},
        "firefox, origin, no sec-fetch-*": {**common, "User-Agent": FIREFOX_UA, "Origin": base},
    }
    addrs = address_pool(60, first_octets=(30, 31, 32), per_prefix=10)
    jobs = []
    for i, ip in enumerate(addrs):
        name = list(variants)[i % len(variants)]
        jobs.append((f"{name} from {ip}", ip, variants[name], f"list{i}@example.net"))

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(
            lambda j: (j[0], post_from(j[1], moat.url(MAGIC_LINK), headers=j[2],
                                       json_body={"email": j[3]})),
            jobs,
        ))

    reached = [r.json for r in upstream.magic_links()]
    assert reached == [{"email": "reader@example.com"}], f"spoofed browsers reached the upstream: {reached}"
    assert_all_decoys(replies, ref)


def test_browser_requests_reach_ghost_with_the_real_client_address(moat, upstream):
    # 20 addresses, each in its own /24, each a different person.
    addrs = address_pool(20, first_octets=(20,), per_prefix=1)
    assert len({a.rsplit(".", 1)[0] for a in addrs}) == 20
    sent = {}
    replies = []
    for i, ip in enumerate(addrs):
        email = f"Person.{i}@Example.com"
        spoof = {"X-Forwarded-For": "1.2.3.4"}
        if i % 2:
            spoof.update({"Forwarded": "for=1.2.3.4", "X-Real-IP": "1.2.3.4"})
        headers = cleared_headers(moat.base, ip, **spoof)
        r = person_post(ip, moat.url(MAGIC_LINK), headers=headers, json_body={"email": email})
        replies.append((ip, r))
        sent[email] = ip
        # People click the link they asked for; that is what keeps their network's sign-ups
        # apart from a script's (the ghost preset's cohorts).
        click_link(upstream, moat.base, ip, email, headers)

    not_created = [(ip, r.status, r.body) for ip, r in replies if (r.status, r.body) != (201, b"Created.")]
    assert not not_created, f"browser sign-ups not answered by Ghost: {not_created}"

    seen = upstream.magic_links()
    assert len(seen) == len(addrs), f"{len(seen)} of {len(addrs)} browser sign-ups reached the upstream"
    by_email = {s.json["email"]: s for s in seen}
    assert set(by_email) == set(sent), "the upstream got different emails than were sent"
    for email, ip in sent.items():
        s = by_email[email]
        assert s.json == {"email": email}, s.json
        assert s.header_all("x-forwarded-for") == [ip], (
            f"request from {ip} (spoofing X-Forwarded-For: 1.2.3.4) reached the upstream with "
            f"X-Forwarded-For {s.header_all('x-forwarded-for')}")
        for h in ("x-forwarded-for", "forwarded", "x-real-ip"):
            for v in s.header_all(h):
                assert "1.2.3.4" not in v, f"spoofed address passed through in {h}: {v}"
        # What makes it a browser request arrives intact.
        assert s.header("origin") == moat.base
        assert s.header("sec-fetch-mode") == "cors"
        assert s.header("sec-ch-ua") and "Chromium" in s.header("sec-ch-ua")
        assert s.header("user-agent") == CHROME_UA


def _raw_post(moat, headers: dict[str, str], email: str) -> bytes:
    body = ('{"email":"%s"}' % email).encode()
    head = f"POST {MAGIC_LINK} HTTP/1.1\r\nHost: 127.0.0.1:{moat.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _mask_date(raw: bytes) -> bytes:
    import re

    return re.sub(rb"(?im)^(date: )[^\r\n]*", rb"\1<masked>", raw)


def test_decoy_is_byte_identical_on_the_wire(moat, upstream):
    """ghost.toml promises an answer byte-identical to Ghost's own success: the same bytes on
    the wire, header order included, with only the Date value differing."""
    genuine = raw_exchange("127.0.0.2", moat.port,
                           _raw_post(moat, cleared_headers(moat.base, "127.0.0.2"), "reader@example.com"))
    assert len(upstream.magic_links()) == 1
    script = raw_exchange("127.10.0.10", moat.port,
                          _raw_post(moat, {"User-Agent": "python-requests/2.32.3",
                                           "Accept": "*/*", "Content-Type": "application/json"},
                                    "victim@example.org"))
    assert len(upstream.magic_links()) == 1, "the script reached the upstream"
    assert status_of(genuine) == 201 and genuine.endswith(b"\r\n\r\nCreated."), genuine
    assert _mask_date(script) == _mask_date(genuine), (
        f"decoy and genuine success differ on the wire\ngenuine: {genuine!r}\ndecoy:   {script!r}")
