#!/usr/bin/env python3
"""Fails when a dependency of the workspace can only be used under a copyleft licence.

Reads `cargo metadata` (the resolved graph for this platform) and checks each package's SPDX
expression: a package passes when at least one alternative of its expression consists only of
permissive licences. Packages with no licence field are reported too. A small stand-in for
`cargo deny check licenses`, which would need compiling cargo-deny on every fresh machine.
"""
import json
import re
import subprocess
import sys

# Packages that declare their licence only as a file, checked by hand: name -> what the file says.
LICENCE_FILES = {"libuv-sys-lite": "MIT"}

PERMISSIVE = {
    "MIT", "MIT-0", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause", "BSD-3-Clause",
    "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0", "0BSD", "BSL-1.0", "Unlicense",
    # MPL is file-level copyleft: using an unmodified MPL crate puts no terms on our code.
    "MPL-2.0", "MPL-2.0+", "CDLA-Permissive-2.0", "OpenSSL", "bzip2-1.0.6", "BSD-1-Clause",
}


def alternatives(expression):
    """The OR-alternatives of an SPDX expression, each a list of AND-ed licences."""
    expression = expression.replace("/", " OR ")
    expression = re.sub(r"[()]", " ", expression)
    return [[term.strip() for term in re.split(r"\s+AND\s+", alt) if term.strip()]
            for alt in re.split(r"\s+OR\s+", expression)]


def acceptable(expression):
    return any(all(term in PERMISSIVE for term in alt) for alt in alternatives(expression))


def main():
    metadata = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1"]))
    used = {node["id"] for node in metadata["resolve"]["nodes"]}
    bad = []
    for package in metadata["packages"]:
        if package["id"] not in used or package["source"] is None:
            continue
        licence = package.get("license") or LICENCE_FILES.get(package["name"])
        if not licence or not acceptable(licence):
            bad.append(f'{package["name"]} {package["version"]}: {licence or "no licence field"}')
    count = len(used)
    if bad:
        print(f"licences: {len(bad)} of {count} packages are not permissively licensed:")
        print("\n".join("  " + line for line in sorted(bad)))
        return 1
    print(f"licences: all {count} packages have a permissive option (no GPL/AGPL-only dependency)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
