# Shared by qemu/run, qemu/run-snp, qemu/run-tdx: bundle discovery, the root file system, port
# forwards, console, the state disk. Sourced, not run. Sets: bundle, cmdline, forwards,
# console_args, qmp_args; defines root_setup (sets root_args) and state_disk_setup (sets
# state_disk_args); leaves "$@" with the extra QEMU arguments.

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
cmdline=""
if [ -z "${SW_DISK:-}" ]; then
  for part in vmlinuz cmdline; do
    [ -f "$bundle/$part" ] || die "no $bundle/$part: build the image first (cargo run --release -p appliance-image -- --dev)"
  done
  [ -f "$bundle/rootfs.img" ] || [ -f "$bundle/initrd.img" ] ||
    die "no $bundle/rootfs.img or initrd.img: build the image first (cargo run --release -p appliance-image -- --dev)"
  cmdline="$(cat "$bundle/cmdline")"
fi
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

# The root file system: rootfs.img (squashfs or erofs + dm-verity; the command line names
# /dev/vda and carries the root hash) as the first virtio disk, read-only, so it must come before
# any other disk on QEMU's command line; or initrd.img as the initramfs. Sets the array
# root_args; $1: extra -device options (confidential guests need disable-legacy=on,
# iommu_platform=on).
ROOT_DISK_SERIAL=sw-root
root_setup() {
  local device_opts="${1:-}"
  if [ -f "$bundle/rootfs.img" ]; then
    root_args=(
      -drive "file=${bundle//,/,,}/rootfs.img,if=none,id=root,format=raw,readonly=on"
      -device "virtio-blk-pci,drive=root,serial=$ROOT_DISK_SERIAL$device_opts"
    )
  else
    root_args=(-initrd "$bundle/initrd.img")
  fi
}

# The state disk (SW_STATE_DISK=PATH): a raw image (or block device) attached as a virtio-blk disk
# with serial "sw-state", the only disk the appliance mounts (ext4 on the whole disk; it keeps its
# sealed worker records there across reboots). A missing PATH is created: SW_STATE_DISK_SIZE
# (default 256M, truncate(1) syntax), formatted here with mkfs.ext4 (the guest has no mkfs). An
# existing PATH is never formatted. Sets the array state_disk_args; $1: extra -device options
# (confidential guests need disable-legacy=on,iommu_platform=on).
STATE_DISK_SERIAL=sw-state
state_disk_setup() {
  state_disk_args=()
  local disk="${SW_STATE_DISK:-}" device_opts="${1:-}" mkfs
  [ -n "$disk" ] || return 0
  if [ ! -e "$disk" ]; then
    mkfs="$(PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 || true)"
    [ -n "$mkfs" ] || die "SW_STATE_DISK=$disk does not exist and mkfs.ext4 is missing (e2fsprogs; scripts/setup.sh installs it)"
    log "creating the state disk $disk (${SW_STATE_DISK_SIZE:-256M}, ext4, label $STATE_DISK_SERIAL)"
    truncate -s "${SW_STATE_DISK_SIZE:-256M}" "$disk.partial"
    # Inode tables and journal zeroed now, on the host, rather than by the guest's ext4lazyinit.
    "$mkfs" -q -F -L "$STATE_DISK_SERIAL" -m 0 -E lazy_itable_init=0,lazy_journal_init=0 "$disk.partial" ||
      { rm -f "$disk.partial"; die "mkfs.ext4 failed on $disk"; }
    mv "$disk.partial" "$disk"
  fi
  [ -f "$disk" ] || [ -b "$disk" ] || die "SW_STATE_DISK=$disk is neither a file nor a block device"
  # format=raw: never guess the format of a file the guest writes to. QEMU escapes ',' as ',,'.
  state_disk_args=(
    -drive "file=${disk//,/,,},if=none,id=state,format=raw,cache=writeback,discard=unmap"
    -device "virtio-blk-pci,drive=state,serial=$STATE_DISK_SERIAL$device_opts"
  )
}
