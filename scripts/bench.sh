#!/usr/bin/env bash
# Benchmarks the release runner (and deno, side by side) and writes BENCHMARKS.md at the repository
# root. Extra arguments go to the bench binary (tests/src/bin/bench), e.g. `scripts/bench.sh --quick`,
# `--deno /path/to/deno`, or `--out /tmp/b.md` (the last --out wins). Relative paths in the
# arguments stay relative to the directory you run this from.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

. "$root/scripts/env.sh"
bash "$root/scripts/setup.sh"

echo "bench: cargo build --release -p runner"
cargo build --manifest-path "$root/Cargo.toml" --release -p runner
echo "bench: cargo build --release -p e2e --bin bench"
cargo build --manifest-path "$root/Cargo.toml" --release -p e2e --bin bench

exec "$CARGO_TARGET_DIR/release/bench" --runner "$CARGO_TARGET_DIR/release/runner" \
  --out "$root/BENCHMARKS.md" "$@"
