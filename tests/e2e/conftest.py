"""Fixtures: the Moat binary, free ports, the Ghost-like upstream, and Moat processes that are
always killed on teardown."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Moat runs as root here and would put its bans in this machine's firewall: the tests ban
# addresses that may be real ones on a developer's network. Off for every Moat the tests
# start; tests/e2e/test_nftables.py turns it on inside a network namespace of its own.
os.environ.setdefault("MOAT_NFTABLES", "off")

from moat_harness import (  # noqa: E402
    Moat,
    Upstream,
    config_text,
    free_port as _free_port,
    moat_bin,
)


@pytest.fixture(scope="session")
def moat_binary() -> Path:
    p = moat_bin()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(
            f"Moat binary not found at {p}: build it with `cargo build` "
            "(CARGO_TARGET_DIR=~/.cache/moat-target) or set MOAT_BIN",
            pytrace=False,
        )
    return p


@pytest.fixture
def free_port():
    """A function returning a currently free loopback TCP port."""
    return _free_port


@pytest.fixture
def upstream():
    up = Upstream().start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def moat_factory(moat_binary, upstream, tmp_path):
    """start(extra_config="", presets=("ghost",), state_dir=None, name="moat") -> a running
    Moat in front of `upstream`. Every process started here is killed at teardown."""
    started: list[Moat] = []

    def start(extra_config: str = "", presets=("ghost",), state_dir: Path | None = None,
              name: str = "moat", listen: str = "127.0.0.1:0", env: dict | None = None) -> Moat:
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(config_text(extra_config))
        m = Moat(
            upstream.url,
            state_dir or (tmp_path / f"{name}-state"),
            cfg,
            presets=tuple(presets),
            listen=listen,
            env=env,
        )
        started.append(m)
        return m.start()

    yield start
    for m in started:
        m.kill()
        # Shown by pytest only when the test failed.
        print(f"--- {m.config_path.name}: last moat stdout/stderr lines ---")
        for line in m.stdout_lines[-12:] + m.stderr_lines[-12:]:
            print(line[:400])


@pytest.fixture
def moat(moat_factory) -> Moat:
    """Moat with the ghost preset and default limits."""
    return moat_factory()


@pytest.fixture
def browser():
    """Headless Chromium (Debian's chromium and chromium-driver), quit at teardown."""
    from browser import start_browser

    b = start_browser()
    try:
        yield b
    finally:
        b.quit()
