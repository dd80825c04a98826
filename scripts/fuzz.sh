#!/usr/bin/env bash
# Runs every fuzz target listed in fuzz/Cargo.toml for SECONDS each (default 600) with
# cargo-fuzz (nightly, libFuzzer, AddressSanitizer, debug assertions), then prints one summary
# line per target and exits non-zero if any target crashed, hung or ran out of memory.
#
#   scripts/fuzz.sh [SECONDS]
#
# Each target keeps a working corpus in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>
# the first time) and writes failing inputs to fuzz/artifacts/<target>; both are git-ignored.
# Reproduce a failure with `cargo +nightly fuzz run --fuzz-dir fuzz <target> <artifact>`.
# Extra libFuzzer flags can be passed in FUZZ_ARGS (e.g. FUZZ_ARGS="-max_len=65536").
# Each target's checks also run on stable, over its seeds and bounded random input, in a
# `*_garbage` test of the crate it exercises (fuzz/stable.rs says which and how to rewrite the
# seeds).
# journal_recovery works in /dev/shm/moat-fuzz-journal-<pid> (removed by the next run).
# Needs: rustup's nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: $0 [SECONDS]   (SECONDS > 0 per target, default 600)" >&2
  exit 2
fi
# Fuzz builds (nightly, sanitizers) never share a target directory with normal builds.
export CARGO_TARGET_DIR="$HOME/.cache/moat-fuzz-target"

targets=$(cargo +nightly fuzz list --fuzz-dir fuzz)
if [ -z "$targets" ]; then
  echo "no fuzz targets in fuzz/Cargo.toml" >&2
  exit 2
fi

# How many failing inputs libFuzzer has saved in an artifact directory.
failures() {
  find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l
}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=0
summary=()
for t in $targets; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "fuzz/seeds/$t" ] && [ -z "$(ls -A "$corpus")" ]; then
    cp "fuzz/seeds/$t"/* "$corpus"/
  fi
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  before=$(failures "$artifacts")
  log="$logs/$t.log"
  echo "== $t: ${seconds}s (log: fuzz/artifacts/$t/last-run.log)" >&2
  status=0
  # -timeout: an input taking 10 s is a hang worth reporting (quadratic behaviour on
  # adversarial input), not something to wait 20 minutes for.
  # shellcheck disable=SC2086
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  cp "$log" "$artifacts/last-run.log"
  new=$(($(failures "$artifacts") - before))
  runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | grep -oE '[0-9]+' | head -1 || true)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | grep -oE '[0-9]+' | tail -1 || true)
  if [ -z "$runs" ]; then
    # Stopped early (a crash): take the last status line's count.
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  fi
  execs=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  if [ -z "$execs" ] && [ -n "$runs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then
    execs=$((runs / secs))
  fi
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  crashed=0
  if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
    crashed=1
    failed=1
  fi
  line="$t: runs=${runs:-?} execs/s=${execs:-?} cov=${cov:-?} corpus=${corp:-?} crashes=$crashed"
  if [ "$crashed" -ne 0 ]; then
    unit=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
    line="$line exit=$status ${unit:+artifact=$unit}"
  fi
  summary+=("$line")
done

printf '%s\n' "${summary[@]}"
exit "$failed"
