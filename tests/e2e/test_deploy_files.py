"""Issue 15: the deploy files say what works. The Dockerfile's entry point is a `moat run` that
this binary accepts, with the Ghost image's own command after `--`; fly.toml sends Fly's
traffic to the port Moat listens on and mounts the volume the state directory is on."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from moat_harness import moat_bin

ROOT = Path(__file__).resolve().parents[2]


def entrypoint() -> list[str]:
    text = (ROOT / "deploy/Dockerfile").read_text().replace("\\\n", " ")
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert m, "no exec-form ENTRYPOINT"
    return json.loads(m.group(1))


def test_the_dockerfile_runs_moat_in_front_of_ghost():
    argv = entrypoint()
    assert argv[:2] == ["moat", "run"]
    sep = argv.index("--")
    assert argv[sep + 1:] == ["docker-entrypoint.sh", "node", "current/index.js"], "the Ghost image's CMD"
    flags = argv[2:sep]
    assert flags[flags.index("--upstream") + 1] == "http://127.0.0.1:2368"
    # This binary accepts the flags (checked without starting anything).
    args = [str(moat_bin()), "check", "--preset", "ghost"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(moat_bin()), "run", "--help"], capture_output=True, text=True, timeout=20)
    for f in flags:
        if f.startswith("--"):
            assert f in r.stdout, f"`moat run` has no {f}"


def test_fly_toml_points_at_moat_and_keeps_its_state():
    fly = tomllib.loads((ROOT / "deploy/fly.toml").read_text())
    argv = entrypoint()
    listen = argv[argv.index("--listen") + 1]
    assert fly["http_service"]["internal_port"] == int(listen.rsplit(":", 1)[1])
    assert fly["build"]["dockerfile"] == "deploy/Dockerfile"
    mount = fly["mounts"]
    assert isinstance(mount, dict), "a Fly Machine mounts one volume"
    state = argv[argv.index("--state-dir") + 1]
    assert state.startswith(mount["destination"] + "/"), "Moat's state is on the volume"


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path):
    import shutil

    import pytest
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "deploy/moat.service").read_text()
    # As installed, but pointing at this build of the binary (verify checks that it exists).
    local = tmp_path / "moat.service"
    local.write_text(unit.replace("/usr/bin/moat", str(moat_bin())))
    # `man:moat(1)` is checked only where the package installed it.
    man = [] if Path("/usr/share/man/man1/moat.1.gz").exists() else ["--man=no"]
    r = subprocess.run(["systemd-analyze", "verify", *man, str(local)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr
    settings = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k.strip(), []).append(v.strip())
    assert settings["User"] == ["moat"] and settings["StateDirectory"] == ["moat"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert settings["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"], "reload is SIGHUP"
    assert "--state-dir /var/lib/moat" in settings["ExecStart"][0]
