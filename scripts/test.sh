#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, checks formatting and clippy,
# builds the runner binary that the end-to-end tests drive, then runs every test of the workspace
# under `cargo test --no-fail-fast` (one failing test binary does not hide the others). Extra
# arguments go to `cargo test`, e.g. `scripts/test.sh -p e2e -- sandbox`.
#
# At the end it prints how long each phase took and one summary line: test binaries, tests,
# failed. `scripts/fresh-check.sh` runs this as on a fresh machine (empty HOME, empty caches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Cold CI (first build and every cache empty) must stay under this; the total says when it is not.
BUDGET_SECONDS=$((45 * 60))

phases=()
# Runs "$@" as the phase called $1, recording its duration; a failing phase stops the script.
phase() {
  local name="$1" started=$SECONDS status=0
  shift
  "$@" || status=$?
  phases+=("$name $((SECONDS - started)) s")
  if [ "$status" -ne 0 ]; then
    echo "test: phase $name failed (exit status $status)"
    exit "$status"
  fi
}

# The time of each phase and the total, printed at the end even when a phase fails.
print_times() {
  local over=""
  [ "$SECONDS" -le "$BUDGET_SECONDS" ] || over=" (over the $((BUDGET_SECONDS / 60))-minute budget)"
  local joined
  joined="$(printf '%s, ' "${phases[@]}")"
  echo "test: time per phase: ${joined%, }; total $SECONDS s$over"
}
scratch=""
summary=""
finish() {
  [ -z "$scratch" ] || rm -rf "$scratch"
  echo
  print_times
  [ -z "$summary" ] || echo "test: summary: $summary"
}
trap finish EXIT

. scripts/env.sh
phase setup bash scripts/setup.sh

echo "test: licences of every dependency"
phase licences python3 scripts/check-licenses.py

# Style is part of passing: formatting and clippy's warnings (the rule in the README), checked
# before anything is built for the tests. Skipped when only some tests are asked for.
if [ $# -eq 0 ]; then
  echo "test: cargo fmt --check"
  phase fmt cargo fmt --all --check
  echo "test: cargo clippy --workspace --all-targets -- -D warnings"
  phase clippy cargo clippy --workspace --all-targets -- -D warnings
fi

echo "test: cargo build -p runner --bins"
phase build cargo build -p runner --bins

# The e2e harness starts this binary (tests/src/runner.rs): a private copy, so that a build in
# another checkout sharing the target dir cannot replace it while the tests run.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/sw-test.XXXXXX")"
cp "$CARGO_TARGET_DIR/debug/runner" "$scratch/runner"
export RUNNER_BIN="$scratch/runner"

# The whole workspace unless the arguments name packages (`--workspace` would override `-p`).
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    -p | -p* | --package | --package=*) scope=() ;;
  esac
done

echo "test: cargo test ${scope[*]} --no-fail-fast $*"
log="$scratch/cargo-test.log"
started=$SECONDS
status=0
cargo test "${scope[@]}" --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
phases+=("tests $((SECONDS - started)) s")

# The summary, from cargo's own lines: `Running …` / `Doc-tests …` start a test binary,
# `test result: …. N passed; M failed; K ignored; …` ends one, `test <name> ... FAILED` is a
# failed test, and cargo lists the targets that failed (including any that crashed) at the end.
summary="$(awk '
  function add(target) {
    if (!(target in seen)) { seen[target] = 1; targets = targets (targets ? ", " : "") target }
  }
  /^ +Running .*\(.*\)$/ { binaries++ }
  /^ +Doc-tests [^ ]+$/ { doctests++ }
  /^test result: / {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed/) passed += $i
      if ($(i + 1) ~ /^failed/) failed += $i
      if ($(i + 1) ~ /^ignored/) ignored += $i
    }
    results++
  }
  /^error: [0-9]+ targets? failed:/ { listing = 1; next }
  listing && /^ +`/ { t = $0; gsub(/^ +|`/, "", t); add(t); next }
  listing { listing = 0 }
  /^error: test failed, to rerun pass `/ { t = $0; sub(/.*pass `/, "", t); sub(/`.*/, "", t); add(t) }
  END {
    printf "test binaries: %d (+%d doc-test runs); tests: %d (passed %d, failed %d, ignored %d)",
      binaries, doctests, passed + failed + ignored, passed, failed, ignored
    if (binaries + doctests > results)
      printf "; %d without a result (crashed?)", binaries + doctests - results
    if (targets != "") printf "; failed targets: %s", targets
    printf "\n"
  }' "$log")"
exit "$status"
