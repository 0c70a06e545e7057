#!/usr/bin/env bash
# The fresh-machine path without a fresh machine: runs `scripts/test.sh` once as a new user would
# on a new machine, with an empty HOME (a temporary directory, deleted afterwards), so every
# cache the project keeps under `~/.cache/smart-worker` is empty (npm tools for contracts/, the
# sev-snp-measure venv, the image tool's downloads and kernel/firmware builds), and so are npm's
# and pip's caches and every tool's user configuration (hardhat's `~/.config/hardhat-nodejs`, …).
# It keeps what a fresh clone would not rebuild differently: the Rust toolchain (RUSTUP_HOME,
# CARGO_HOME with its registry) and the build (CARGO_TARGET_DIR). Run it before every stop that
# changes set-up, tools or tests. Extra arguments go to `scripts/test.sh`.
#
#   --keep-image-cache  reuse the image tool's cache (kernel, firmware: ~15 minutes cold on
#                       2 cores) instead of building it again; everything else stays fresh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

keep_image_cache=false
if [ "${1:-}" = "--keep-image-cache" ]; then
  keep_image_cache=true
  shift
fi

# The real toolchain and build, fixed before HOME changes (rustup and cargo default to
# $HOME/.rustup and $HOME/.cargo, scripts/env.sh's target dir to $HOME/.cache/smart-worker).
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
. "$root/scripts/env.sh"
image_cache="${XDG_CACHE_HOME:-$HOME/.cache}/smart-worker/image"

fresh_home="$(mktemp -d "${TMPDIR:-/tmp}/sw-fresh-home.XXXXXX")"
trap 'rm -rf "$fresh_home"' EXIT
export HOME="$fresh_home"
# Nothing may point back at the old HOME's state.
unset XDG_CONFIG_HOME XDG_CACHE_HOME XDG_DATA_HOME XDG_STATE_HOME CONTRACTS_NPM_DIR WORKER_NPM_DIR
unset npm_config_cache npm_config_userconfig
if [ "$keep_image_cache" = true ]; then
  mkdir -p "$HOME/.cache/smart-worker" "$image_cache"
  ln -s "$image_cache" "$HOME/.cache/smart-worker/image"
fi

echo "fresh-check: HOME=$HOME (empty), RUSTUP_HOME=$RUSTUP_HOME, CARGO_HOME=$CARGO_HOME,"
echo "fresh-check: CARGO_TARGET_DIR=$CARGO_TARGET_DIR, image cache $([ "$keep_image_cache" = true ] && echo "kept ($image_cache)" || echo empty)"
status=0
bash "$root/scripts/test.sh" "$@" || status=$?
echo "fresh-check: scripts/test.sh exited with $status"
exit "$status"
