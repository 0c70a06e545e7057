#!/usr/bin/env bash
# Installs what building and testing the workspace needs on a fresh Debian 12 machine.
#
# Idempotent: every step checks first and does nothing when its tool is already there, so
# re-running it is quick. `apt-get update` runs only when a package is actually missing.
# Installing needs root (or sudo); checking does not, so CI runs it unconditionally.
set -euo pipefail

# Debian packages the build and the tests need.
#   clang, libclang-dev  C toolchain and bindgen for native crates in deno_runtime's tree
#   cmake                native builds inside the deno_runtime tree
#   curl                 the e2e test that runs the reference's curl command verbatim
#   e2fsprogs            mkfs.ext4 for qemu/run's state disk (SW_STATE_DISK), dumpe2fs for its test
APT_PACKAGES=(clang libclang-dev cmake curl e2fsprogs)

log() { printf 'setup: %s\n' "$*"; }

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root to run: $*" >&2
    exit 1
  fi
}

apt_updated=false
apt_update_once() {
  if [ "$apt_updated" = false ]; then
    log "apt-get update"
    as_root apt-get update
    apt_updated=true
  fi
}

# Installs the given Debian packages that are not installed yet.
apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages present: $*"
    return
  fi
  apt_update_once
  log "apt-get install -y ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian system: install these yourself: ${APT_PACKAGES[*]}"
  exit 0
fi

apt_install_missing "${APT_PACKAGES[@]}"

# ---------------------------------------------------------------------------------------------
# The appliance image (issue 7): `image` downloads a pinned Debian kernel with `apt-get download`
# and `qemu/run` boots the image. Both come from bookworm-backports: its 6.12 kernel has the
# confidential-guest drivers and configfs-tsm, and its QEMU 10 (bookworm's 7.2 conflicts with the
# backported qemu-utils of the machine image, and cannot launch SNP guests).
BACKPORTS_SUITE=bookworm-backports
BACKPORTS_SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources
BACKPORTS_PACKAGES=(qemu-system-x86)

# Writes an apt sources file ($2) for suite $1 from the mirror apt already uses: the URIs line is
# copied from debian.sources at run time, so no host name is written into this repository. Fails
# (returns 1) when there is no such line.
write_suite_sources() {
  local suite="$1" file="$2" debian_sources=/etc/apt/sources.list.d/debian.sources uris
  uris="$(grep -m1 -E '^URIs:' "$debian_sources" 2>/dev/null || true)"
  if [ -z "$uris" ]; then
    log "no URIs line in $debian_sources to add $suite from" >&2
    return 1
  fi
  log "adding $suite ($uris) as $file"
  printf 'Types: deb\n%s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "$uris" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg |
    as_root tee "$file" >/dev/null
}

enable_backports() {
  if apt-cache policy 2>/dev/null | grep -q " $BACKPORTS_SUITE/main "; then
    log "apt suite present: $BACKPORTS_SUITE"
    return
  fi
  write_suite_sources "$BACKPORTS_SUITE" "$BACKPORTS_SOURCES" ||
    { log "cannot enable $BACKPORTS_SUITE: add the suite yourself" >&2; return 1; }
  apt_updated=false
  apt_update_once
}

# binutils: `image` strips the runner with `strip` (usually there already, with clang).
apt_install_missing binutils

# The minimal kernel (image/src/kernel/minimal.rs) is built from Debian's linux-source package:
#   gcc, make, libc6-dev  the compiler and make (binutils above links it)
#   flex, bison           Kconfig's parser
#   bc                    kernel/time/timeconst.h
#   libelf-dev            objtool (x86_64 always builds it: ORC unwinder, retpoline checks)
#   lz4                   compresses the bzImage payload (CONFIG_KERNEL_LZ4)
#   xz-utils              unpacks the package's linux-source-6.12.tar.xz
# Not needed with image/kernel/appliance.config: libssl-dev (module signing, trusted keys),
# cpio (IKHEADERS), dwarves (BTF), python3.
apt_install_missing gcc make libc6-dev flex bison bc libelf-dev lz4 xz-utils

enable_backports
missing_backports=()
for pkg in "${BACKPORTS_PACKAGES[@]}"; do
  is_installed "$pkg" || missing_backports+=("$pkg")
done
if [ "${#missing_backports[@]}" -eq 0 ]; then
  log "apt packages present: ${BACKPORTS_PACKAGES[*]}"
else
  apt_update_once
  log "apt-get install -y -t $BACKPORTS_SUITE ${missing_backports[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -t "$BACKPORTS_SUITE" "${missing_backports[@]}"
fi

# The image's root disk (issue 7): mksquashfs (the default) or mkfs.erofs makes the read-only root
# file system, veritysetup its dm-verity hash tree (image/src/root_disk.rs).
apt_install_missing squashfs-tools erofs-utils cryptsetup-bin

# The TDX firmware the image's expected measurements are computed for: Debian 13's ovmf (its
# 2025.02 OVMF measures the kernel, command line and initrd into RTMRs; bookworm's 2022.11 has no
# TDX measurement). `image` fetches the pinned version with `apt-get download`, which needs trixie
# in apt's sources. Pinned at priority 1 so that nothing is ever installed or upgraded from it
# unless asked for by name and version.
TRIXIE_SOURCES=/etc/apt/sources.list.d/trixie-downloads.sources
TRIXIE_PREFERENCES=/etc/apt/preferences.d/trixie-downloads.pref
enable_trixie_downloads() {
  if [ -f "$TRIXIE_SOURCES" ] && [ -f "$TRIXIE_PREFERENCES" ] &&
    apt-cache policy 2>/dev/null | grep -q " trixie/main "; then
    log "apt suite present: trixie (downloads only, priority 1)"
    return
  fi
  # The pin first: trixie is never at its default priority, not even for a moment.
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 1\n' |
    as_root tee "$TRIXIE_PREFERENCES" >/dev/null
  write_suite_sources trixie "$TRIXIE_SOURCES" ||
    { log "cannot add trixie: image needs --no-tdx or --tdx-ovmf" >&2; return 0; }
  apt_updated=false
  apt_update_once
}
enable_trixie_downloads

# The UEFI disk (image --format; image/src/disk/): `image` fetches systemd's EFI stub
# (systemd-boot-efi, pinned, from trixie like the TDVF) with `apt-get download`; qemu/run's
# SW_DISK boots the disk with Debian's stock OVMF (/usr/share/OVMF/OVMF_CODE_4M.fd), which the
# e2e tests `the_raw_uefi_disk_boots_...` and `the_firmware_measures_the_uefi_disk_...` use, the
# latter with a software TPM (swtpm) whose PCRs it compares with the manifest's predictions.
apt_install_missing ovmf swtpm

# The SEV-SNP firmware (image/src/measure/amdsev_ovmf.rs): OVMF's AmdSevX64 built from Debian's
# pinned edk2 source tarballs, downloaded with curl (the mirror does not serve the .dsc that
# `apt-get source` needs) and patched with patch. The tools whose versions change the firmware's
# bytes are pinned with its expected SHA-256: bookworm's gcc, binutils, nasm, iasl, python3.
#   gcc, g++, make, uuid-dev  BaseTools' C tools (VfrCompile is C++, GenFv links libuuid)
#   nasm                      the firmware's assembly
#   acpica-tools              iasl, the ACPI compiler edk2's build requires
#   python3                   edk2's build system
#   curl, xz-utils, patch     fetching, unpacking and patching the source
apt_install_missing gcc g++ make uuid-dev nasm acpica-tools python3 curl xz-utils patch

# ---------------------------------------------------------------------------------------------
# Chain tools for contracts/ (issues 5, 8): solc-js (compiles the contracts offline), hardhat 2
# (a local EVM node for the tests) and the Sapphire JS client (the envelope's test oracle),
# pinned by contracts/npm/package.json + package-lock.json and installed into a cache directory
# outside the repository. Skipped when the installed lock file already equals the pinned one.
# Node and npm: whatever the machine has (some ship nodesource's nodejs, which bundles npm and
# conflicts with Debian's npm package); Debian's otherwise.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install_missing nodejs npm
fi
# npm_ci_pinned WHAT SRC DIR: `npm ci` of SRC's package.json + package-lock.json into DIR,
# skipped when DIR's installed lock file already equals SRC's.
npm_ci_pinned() {
  local what="$1" src="$2" dir="$3"
  if cmp -s "$src/package-lock.json" "$dir/node_modules/.package-lock.json.pinned" 2>/dev/null; then
    log "npm packages ($what) present in $dir"
    return 0
  fi
  log "npm ci ($what) into $dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund)
  cp "$src/package-lock.json" "$dir/node_modules/.package-lock.json.pinned"
}
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
npm_ci_pinned "solc, hardhat, sapphire-paratime" "$SCRIPTS_DIR/../contracts/npm" \
  "${CONTRACTS_NPM_DIR:-$HOME/.cache/smart-worker/chain-npm}"

# Test workers bundled the way their users do (tests/tests/e2e/escrin.rs): Escrin's published
# `@escrin/worker` and esbuild, pinned by tests/npm/package.json + package-lock.json.
npm_ci_pinned "@escrin/worker, esbuild" "$SCRIPTS_DIR/../tests/npm" \
  "${WORKER_NPM_DIR:-$HOME/.cache/smart-worker/worker-npm}"

# The bench's external HTTP client (tests/src/bin/bench/wrk.rs): the HTTP trigger and
# `deno serve` under `wrk` as well as under the bench's own client.
apt_install_missing wrk

# A software TPM 2.0 for attest's TPM tests (attest/src/tpm/tests/) and the swtpm boot:
# `swtpm socket --tpm2` serves TPM commands on a TCP port; swtpm-tools has swtpm_setup.
apt_install_missing swtpm swtpm-tools

# ---------------------------------------------------------------------------------------------
# An independent SEV-SNP launch-digest calculator: virtee's sev-snp-measure (Python, PyPI), pinned
# with its dependencies, in a venv outside the repository. The e2e image test checks the
# manifest's digest (computed by the `sev` crate) against it.
SNP_MEASURE_DIR="$HOME/.cache/smart-worker/sev-snp-measure"
SNP_MEASURE_PIN="sev-snp-measure==0.0.13 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12"
if [ "$(cat "$SNP_MEASURE_DIR/.pinned" 2>/dev/null)" = "$SNP_MEASURE_PIN" ]; then
  log "sev-snp-measure present in $SNP_MEASURE_DIR"
else
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install_missing python3-venv
  log "pip install $SNP_MEASURE_PIN into $SNP_MEASURE_DIR"
  rm -rf "$SNP_MEASURE_DIR"
  python3 -m venv "$SNP_MEASURE_DIR"
  # shellcheck disable=SC2086 # the pin is a list of requirements
  "$SNP_MEASURE_DIR/bin/pip" install --quiet --disable-pip-version-check $SNP_MEASURE_PIN
  echo "$SNP_MEASURE_PIN" >"$SNP_MEASURE_DIR/.pinned"
fi

# ---------------------------------------------------------------------------------------------
# LATER ADDITIONS go here, each as a check-then-install step like the one above:
#   - npm tools (contracts build, bundling test workers): `npm ci` against the registry npm
#     is configured for, skipped when node_modules is up to date.
# ---------------------------------------------------------------------------------------------

log "done"
