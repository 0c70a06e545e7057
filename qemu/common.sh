# Shared by qemu/run, qemu/run-snp, qemu/run-tdx: bundle discovery, port forwards, console.
# Sourced, not run. Sets: bundle, cmdline, forwards, console_args, qmp_args; leaves "$@" with the
# extra QEMU arguments.

log() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }
die() { log "$*"; exit 1; }

QEMU="${QEMU:-qemu-system-x86_64}"
bundle="${CARGO_TARGET_DIR:-target}/image"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  bundle="$1"
  shift
fi
if [ "${1:-}" = "--" ]; then shift; fi

command -v "$QEMU" >/dev/null 2>&1 ||
  die "$QEMU not found: install qemu-system-x86 (scripts/setup.sh does, from bookworm-backports)"
for part in vmlinuz initrd.img cmdline; do
  [ -f "$bundle/$part" ] || die "no $bundle/$part: build the image first (cargo run --release -p appliance-image)"
done

cmdline="$(cat "$bundle/cmdline")"
if [ -n "${SW_CMDLINE_APPEND:-}" ]; then
  cmdline="$cmdline $SW_CMDLINE_APPEND"
fi

forwards=""
http="${SW_HTTP-127.0.0.1:8080}"
https="${SW_HTTPS-127.0.0.1:8443}"
if [ -n "$http" ]; then forwards="$forwards,hostfwd=tcp:$http-:8080"; fi
if [ -n "$https" ]; then forwards="$forwards,hostfwd=tcp:$https-:8443"; fi

qmp_args=()
if [ -n "${SW_QMP:-}" ]; then qmp_args=(-qmp "unix:$SW_QMP,server=on,wait=off"); fi

if [ -t 0 ]; then
  # Interactive: serial and monitor multiplexed on the terminal (Ctrl-A C), Ctrl-C goes to the guest.
  console_args=(-chardev stdio,id=console,mux=on,signal=off -serial chardev:console -mon chardev=console)
else
  console_args=(-serial stdio)
fi
