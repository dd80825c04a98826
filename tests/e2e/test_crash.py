"""The crash campaign's short form: `scripts/crash-campaign.py` with 25 SIGKILLs of a running
Moat (trap and admin listener) under mail and ban traffic, some of them during start-up
recovery. Nothing acknowledged may be lost: every message answered `250`, every ban
acknowledged (CLI exit 0, API 2xx), and the quarantine's index must agree with its files.
The full campaign (`--kills 200`) is run by hand."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from moat_harness import moat_bin

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash-campaign.py"


def test_25_kills_lose_nothing_acknowledged():
    seed = int(os.environ.get("MOAT_CRASH_SEED", "16003"))
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "25", "--seed", str(seed), "--quiet",
         "--bin", str(moat_bin())],
        capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    print(out)  # shown when the test fails
    assert r.returncode == 0, out[-4000:]
    assert "result: OK" in out
    m = re.search(r"messages: acknowledged=(\d+) found=(\d+) lost=(\d+)", out)
    assert m, out
    acknowledged, found, lost = map(int, m.groups())
    assert acknowledged >= 500, "too little mail acknowledged for the campaign to mean much"
    assert (found, lost) == (acknowledged, 0)
    m = re.search(r"bans: acknowledged=(\d+) \(cli=(\d+) api=(\d+)\) found=(\d+) lost=(\d+)", out)
    assert m, out
    bans, cli, api, bans_found, bans_lost = map(int, m.groups())
    assert cli > 0 and api > 0, out
    assert (bans_found, bans_lost) == (bans, 0)
    assert "problems=0" in out
