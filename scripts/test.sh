#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests (pebble for ACME),
# then the Python end-to-end attacks against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
scripts/install-test-deps.sh
# cargo-deb packages the .deb (scripts/build-deb.sh, tests/e2e/test_deb.py).
command -v cargo-deb >/dev/null 2>&1 || cargo install -q cargo-deb --locked
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --bin moat
cargo test --workspace
MOAT_BIN="$CARGO_TARGET_DIR/debug/moat" python3 -m pytest tests/e2e -q
