#!/usr/bin/env bash
# Builds the runner from this checkout's HEAD in two fresh clones, in directories of different
# lengths and with the same CARGO_TARGET_DIR, and checks that `strip --strip-all` makes them
# identical; if not, names the sections that differ. Takes a few minutes once the dependencies
# are built. See image/README.md, "Reproducibility".
#
#   scripts/check-reproducible-runner.sh [--release]   # debug profile by default
#
# cargo gives a workspace member's artifacts the same names in every checkout (it hashes the
# member's path inside the workspace), so the clones' builds replace this checkout's runner
# in the target directory, and cargo would take that for up to date here (it compares file
# times). On exit this script touches runner/build.rs and runner/src/lib.rs here, so that the
# next build in this checkout builds the runner again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$root/scripts/env.sh" # exported: the clones use the same target directory and V8 archive
work="$(mktemp -d)"
trap 'rm -rf "$work"; touch "$root/runner/build.rs" "$root/runner/src/lib.rs"' EXIT
commit="$(git -C "$root" rev-parse HEAD)"
profile=dev
out=debug
case "${1:-}" in
    --release) profile=release out=release ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac

for dir in a bb; do
    # Cloned after the previous build, so that its files are newer than that build's output.
    git clone -q "$root" "$work/$dir"
    git -C "$work/$dir" checkout -q "$commit"
    echo "building $commit ($profile) in $work/$dir" >&2
    (cd "$work/$dir" && cargo build --profile "$profile" -p runner --bin runner)
    strip --strip-all -o "$work/runner-$dir" "$CARGO_TARGET_DIR/$out/runner"
done

a="$work/runner-a"
b="$work/runner-bb"
if cmp -s "$a" "$b"; then
    echo "identical: $(stat -c %s "$a") bytes, sha256 $(sha256sum "$a" | cut -d' ' -f1)"
    exit 0
fi
echo "the stripped runners differ ($(cmp -l "$a" "$b" | wc -l) bytes); by section:" >&2
readelf -SW "$a" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]\+\) .*/\1/p' | while read -r section; do
    objcopy -O binary --only-section="$section" "$a" "$work/section-a" 2>/dev/null || continue
    objcopy -O binary --only-section="$section" "$b" "$work/section-b" 2>/dev/null || continue
    if ! cmp -s "$work/section-a" "$work/section-b"; then
        echo "  $section: $(cmp -l "$work/section-a" "$work/section-b" 2>/dev/null | wc -l) of $(stat -c %s "$work/section-a") bytes" >&2
    fi
done
exit 1
