#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, checks formatting and clippy,
# builds the runner binary that the end-to-end tests drive, then runs every test of the workspace. Extra arguments go to
# `cargo test`, e.g. `scripts/test.sh -p e2e -- sandbox`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. scripts/env.sh
bash scripts/setup.sh

echo "test: licences of every dependency"
python3 scripts/check-licenses.py

# Style is part of passing: formatting and clippy's warnings (the rule in the README), checked
# before anything is built for the tests. Skipped when only some tests are asked for.
if [ $# -eq 0 ]; then
  echo "test: cargo fmt --check"
  cargo fmt --all --check
  echo "test: cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi

echo "test: cargo build -p runner --bins"
cargo build -p runner --bins

# The e2e harness starts this binary (tests/src/lib.rs).
export RUNNER_BIN="$CARGO_TARGET_DIR/debug/runner"

echo "test: cargo test --workspace $*"
cargo test --workspace "$@"
