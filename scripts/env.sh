# Source this file (`. scripts/env.sh`) before cargo: it points cargo at a target dir outside
# the clone and, where the offline V8 archive from ../shared/v8 exists, at that archive.
# Without the archive, the v8 crate downloads its prebuilt library as usual.
_sw_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/smart-worker/target}"
_sw_v8="$_sw_root/../shared/v8/librusty_v8_release_x86_64-unknown-linux-gnu.a.gz"
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -f "$_sw_v8" ]; then
  RUSTY_V8_ARCHIVE="$(realpath "$_sw_v8")"
  export RUSTY_V8_ARCHIVE
fi
unset _sw_root _sw_v8
