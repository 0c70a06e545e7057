#!/usr/bin/env bash
# Regenerates the TEST launch endorsement of this directory (see README.md). Nothing here is
# Google's: the root, the signing key and the endorsement are made up with OpenSSL, in Google's
# format, so the verifier can be tested without Google's root bytes.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The MRTD of the recorded Google C3 quote (testdata/eventlog/gcp_tdx_cos113_quote.bin).
MRTD=dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a

root() { # name subject
  openssl req -x509 -newkey rsa:4096 -nodes -keyout "$tmp/$1.key" -subj "/CN=$2" \
    -sha256 -days 7300 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" -outform DER -out "$1.der" 2>/dev/null
}
root root "TEST GCE-cc-tcb-root (not Google's)"
root other-root "TEST another root"
# Same name as the test root, another key: a name alone must not pass for the root.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/same-name.key" \
  -subj "/CN=TEST GCE-cc-tcb-root (not Google's)" -sha256 -days 7300 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
  -outform DER -out same-name-root.der 2>/dev/null

# The signing key, certified by the test root for one year (RSA-PSS/SHA-256 signature).
openssl req -newkey rsa:4096 -nodes -keyout "$tmp/leaf.key" -subj "/CN=TEST GCE-uefi-signer" \
  -out "$tmp/leaf.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA root.der -CAform DER -CAkey "$tmp/root.key" \
  -set_serial 2 -days 365 -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -extfile "$tmp/ext" -outform DER -out "$tmp/leaf.der" 2>/dev/null
openssl x509 -in root.der -inform DER -out "$tmp/root.pem"

# VMGoldenMeasurement (proto/endorsement.proto of google/gce-tcb-verifier), then its signature.
python3 - "$tmp" "$MRTD" <<'PY'
import sys, hashlib
tmp, mrtd = sys.argv[1], bytes.fromhex(sys.argv[2])
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
def field(num, wt, payload):
    key = varint(num << 3 | wt)
    return key + (varint(len(payload)) + payload if wt == 2 else varint(payload))
leaf = open(f"{tmp}/leaf.der", "rb").read()
bundle = open(f"{tmp}/root.pem", "rb").read()
timestamp = field(1, 0, 1_798_761_600) + field(2, 0, 5)  # 2027-01-01T00:00:00Z
def tdx_m(ram, early, m): return field(1, 0, ram) + (field(2, 0, 1) if early else b"") + field(3, 2, m)
tdx = field(1, 0, 1) + field(2, 2, tdx_m(16, False, mrtd)) + field(2, 2, tdx_m(256, True, bytes([0x11]) * 48))
snp_entry = lambda vcpus, d: field(1, 0, vcpus) + field(2, 2, d)
snp = field(1, 0, 3) + field(2, 2, snp_entry(2, bytes([0x22]) * 48)) + field(2, 2, snp_entry(4, bytes([0x33]) * 48)) \
    + field(5, 0, 0x30000)
golden = (field(1, 2, timestamp) + field(2, 0, 123456) + field(3, 2, bytes.fromhex("0123456789abcdef0123"))
          + field(4, 2, leaf) + field(5, 2, hashlib.sha384(b"TEST UEFI binary").digest())
          + field(6, 2, bundle) + field(7, 2, snp) + field(8, 2, tdx))
open(f"{tmp}/golden.bin", "wb").write(golden)
PY
openssl dgst -sha256 -sign "$tmp/leaf.key" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
  -out "$tmp/sig.bin" "$tmp/golden.bin"
python3 - "$tmp" <<'PY'
import sys
tmp = sys.argv[1]
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
g = open(f"{tmp}/golden.bin", "rb").read(); s = open(f"{tmp}/sig.bin", "rb").read()
open("endorsement.binarypb", "wb").write(b"\x0a" + varint(len(g)) + g + b"\x12" + varint(len(s)) + s)
PY
openssl x509 -in "$tmp/leaf.der" -inform DER -noout -dates
sha256sum root.der other-root.der same-name-root.der endorsement.binarypb
