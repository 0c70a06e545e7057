#!/usr/bin/env bash
# Builds and starts the runner; arguments go to the runner, e.g. `scripts/run.sh --listen 127.0.0.1:8080`.
# Relative paths in the arguments stay relative to the directory you run this from.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

. "$root/scripts/env.sh"
bash "$root/scripts/setup.sh"

exec cargo run --manifest-path "$root/Cargo.toml" -p runner -- "$@"
