#!/usr/bin/env bash
# Builds every fuzz target with cargo-fuzz and runs each briefly from its committed seeds, so a
# target that stops compiling, or that crashes at once, fails CI. Long runs are by hand: see
# docs/fuzzing.md.
#
# The build is `cargo fuzz build --dev`: the same targets, AddressSanitizer, SanitizerCoverage,
# debug assertions and cfg(fuzzing) as `cargo fuzz run` uses, without optimisation, which halves
# a cold build of the server under instrumentation (measured in docs/fuzzing.md). It goes to
# fuzz/target, apart from the main workspace's target/.
#
#   fuzz/smoke.sh                     # what .ci/run does
#   FUZZ_SMOKE_RUNS=0 fuzz/smoke.sh   # build only
#   FUZZ_BUILD=--release fuzz/smoke.sh   # as the long runs build
#
# Environment: FUZZ_SMOKE_RUNS (executions per target, default 10000), FUZZ_SMOKE_SECONDS (the
# most each target runs, default 30), FUZZ_BUILD (--dev or --release), FUZZ_TARGET_DIR (default
# fuzz/target).
set -euo pipefail
cd "$(dirname "$0")"

# cargo-fuzz passes -Z flags to rustc (-Zsanitizer, SanitizerCoverage passes); the machine has
# only a stable toolchain, which accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

runs="${FUZZ_SMOKE_RUNS:-10000}"
# Unoptimised, tpm_verify checks a few dozen signatures a second: each target stops at $runs
# executions or after this many seconds, whichever comes first.
secs="${FUZZ_SMOKE_SECONDS:-30}"
target_dir="${FUZZ_TARGET_DIR:-target}"
build="${FUZZ_BUILD:---dev}"
# Line tables are enough for a crash's stack trace, and much cheaper than full debug info.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

# The committed fuzz/Cargo.lock must be complete and current (cargo fuzz has no --locked).
cargo fetch --locked --quiet
start=$SECONDS
cargo fuzz build "$build" --target-dir "$target_dir"
echo "fuzz: built every target in $((SECONDS - start)) s"

if [ "$runs" -gt 0 ]; then
  corpus="$(mktemp -d)"
  trap 'rm -rf "$corpus"' EXIT
  for t in $(cargo fuzz list); do
    seeds=()
    if [ -d "seeds/$t" ]; then seeds=("seeds/$t"); fi
    mkdir -p "$corpus/$t"
    log="$corpus/$t.log"
    if ! cargo fuzz run "$build" --target-dir "$target_dir" "$t" "$corpus/$t" "${seeds[@]}" -- \
      -runs="$runs" -max_total_time="$secs" >"$log" 2>&1; then
      tail -n 80 "$log"
      echo "fuzz $t: FAILED (the crashing input is under fuzz/artifacts/$t/)"
      exit 1
    fi
    echo "fuzz $t: $(grep -E '^Done' "$log" | tail -n 1)"
  done
  echo "fuzz: every target ran (up to $runs executions or $secs s each), no crash"
fi
