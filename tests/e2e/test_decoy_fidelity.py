"""Issue 18, item 4: decoys that cannot be told apart from Ghost's own success. On a fresh
install, before Moat has seen one genuine sign-up, the ghost preset's decoy is already Ghost 5's
answer byte for byte (headers and their order included); and decoys take as long as Ghost does
on the route, so timing does not tell a script that it was caught."""

from __future__ import annotations

import re
import statistics
import time

from moat_harness import (
    MAGIC_LINK,
    NO_ACTION_PROOFS,
    cleared_headers,
    click_link,
    post_from,
    raw_exchange,
    status_of,
)
from test_ghost_decoys import _mask_date, _raw_post

SCRIPT = {"User-Agent": "python-requests/2.32.3", "Accept": "*/*", "Content-Type": "application/json"}


def test_the_first_decoy_of_a_fresh_install_is_byte_identical_to_ghosts_answer(moat, upstream):
    # The script comes first: nothing has been learned yet, so this is the preset's decoy.
    script = raw_exchange("127.10.0.10", moat.port, _raw_post(moat, SCRIPT, "victim@example.org"))
    assert upstream.magic_links() == [], "the script reached the upstream"
    genuine = raw_exchange("127.0.0.2", moat.port,
                           _raw_post(moat, cleared_headers(moat.base, "127.0.0.2"), "reader@example.com"))
    assert len(upstream.magic_links()) == 1, "the person's sign-up did not reach the upstream"
    assert status_of(genuine) == 201 and genuine.endswith(b"\r\n\r\nCreated."), genuine
    assert re.search(rb"(?i)\r\nx-powered-by: express\r\n", genuine), genuine
    assert _mask_date(script) == _mask_date(genuine), (
        f"the preset's decoy and Ghost's success differ on the wire\n"
        f"genuine: {genuine!r}\ndecoy:   {script!r}")


def _timed_post(ip: str, url: str, headers: dict, email: str) -> float:
    t = time.monotonic()
    r = post_from(ip, url, headers=headers, json_body={"email": email})
    assert (r.status, r.body) == (201, b"Created."), r
    return time.monotonic() - t


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def test_decoys_take_as_long_as_ghost_takes_on_the_route(moat_factory, upstream):
    # People's sends are timed here, not the per-action proofs they would solve under pressure.
    moat = moat_factory(NO_ACTION_PROOFS)
    upstream.magic_link_delay = 0.3
    url = moat.url(MAGIC_LINK)
    # People sign up (each from its own network, each for their own address, each clicking the
    # link they were sent): Moat times them.
    genuine = []
    for i in range(12):
        ip = f"127.20.{i}.2"
        headers = cleared_headers(moat.base, ip)
        genuine.append(_timed_post(ip, url, headers, f"reader{i}@example.com"))
        assert click_link(upstream, moat.base, ip, f"reader{i}@example.com", headers)
    assert len(upstream.magic_links()) == 12
    # Scripts on rotating addresses get the decoy, and wait as long.
    decoys = [_timed_post(f"127.21.{i}.9", url, SCRIPT, f"victim{i}@example.org") for i in range(30)]
    assert len(upstream.magic_links()) == 12, "a script reached the upstream"
    for what, g, d in (("median", statistics.median(genuine), statistics.median(decoys)),
                       ("p90", _p90(genuine), _p90(decoys))):
        assert abs(d - g) <= 0.2 * g, (
            f"{what}: decoys {d * 1000:.0f} ms against genuine {g * 1000:.0f} ms\n"
            f"genuine {sorted(round(x * 1000) for x in genuine)}\n"
            f"decoys {sorted(round(x * 1000) for x in decoys)}")


def test_before_any_genuine_answer_decoys_wait_the_presets_time(moat, upstream):
    url = moat.url(MAGIC_LINK)
    waits = [_timed_post(f"127.22.{i}.9", url, SCRIPT, f"victim{i}@example.org") for i in range(8)]
    assert upstream.magic_links() == []
    # 300 ms give or take a quarter, plus the exchange itself.
    assert all(0.2 <= w <= 0.6 for w in waits), waits
