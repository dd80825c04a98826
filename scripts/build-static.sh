#!/usr/bin/env bash
# Builds a fully static x86_64 `moat`: no dynamic loader, no shared libraries, nothing from the
# host's libc needed at run time, so the one file runs in an empty chroot or a `FROM scratch`
# image. See docs/static-binary.md.
#
# glibc linked statically (`+crt-static`), not musl: the musl target is not installable
# everywhere, and glibc's allocator is not on the hot path anyway (Moat uses mimalloc). What
# static glibc cannot do on its own is NSS (getaddrinfo, getpwnam, ...) beyond its built-in
# `files` and `dns`: whatever else /etc/nsswitch.conf names (systemd's `resolve`, LDAP, ...)
# it would load as shared modules of the very glibc it was linked with, or not at all. Moat
# resolves host names itself (moat-dns's `host` module, reading /etc/resolv.conf) and looks up
# no users or groups, so it never calls NSS.
#
# `--target` is given explicitly so that `+crt-static` applies to the binary only, not to build
# scripts and proc macros (which cargo then builds for the host, dynamically, as usual).
# The release profile, stripped, without debug info (`debug = 1` in Cargo.toml is for profiling
# the normal build). Its own target directory, so it never invalidates the normal build's cache.
#
# Output: the binary's path on the last (only) line of stdout; everything else goes to stderr.
# Exit status 3: a build tool is missing (cargo, a C compiler, glibc's static libraries).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${MOAT_STATIC_TARGET_DIR:-$HOME/.cache/moat-static-target}"

missing() {
  echo "build-static: $1" >&2
  exit 3
}
[ "$(uname -m)" = x86_64 ] || missing "builds for x86_64 only (this machine is $(uname -m))"
command -v cargo >/dev/null || missing "cargo not found"
command -v cc >/dev/null || missing "no C compiler (cc): apt-get install gcc"
command -v readelf >/dev/null || missing "readelf not found: apt-get install binutils"
# gcc prints the bare name back when it cannot find the file.
libc_a=$(cc -print-file-name=libc.a)
[ -f "$libc_a" ] || missing "glibc's static libraries (libc.a) are missing: apt-get install libc6-dev"
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  ! command -v rustup >/dev/null || missing "rust target $target not installed: rustup target add $target"

# getrandom 0.3+ (hickory-resolver's rand) looks glibc's getrandom() up with dlsym, which
# finds nothing in a static binary, and then reads /dev/urandom, which an empty chroot does
# not have (the first DNS lookup panicked there): make it call getrandom() directly, which
# is linked in (it needs Linux 3.17 or later, from 2014).
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_RELEASE_DEBUG=0
cargo build --release --locked --target "$target" --bin moat 1>&2

bin="$CARGO_TARGET_DIR/$target/release/moat"
# Refuse to hand out a binary that would need a loader after all (a dependency that forces
# dynamic linking, a RUSTFLAGS override).
if readelf -lW "$bin" | grep -q 'INTERP' || readelf -dW "$bin" | grep -q '(NEEDED)'; then
  echo "build-static: $bin is not static:" >&2
  readelf -lW "$bin" | grep -A1 INTERP >&2 || true
  readelf -dW "$bin" | grep NEEDED >&2 || true
  exit 1
fi
kind=$(file -b "$bin" 2>/dev/null | grep -o 'static[-a-z]* linked' || echo 'no INTERP, no NEEDED')
echo "build-static: $(stat -c %s "$bin") bytes, $kind" >&2
echo "$bin"
