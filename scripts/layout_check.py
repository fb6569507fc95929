#!/usr/bin/env python3
"""Keeps the workspace's shape (in `make lint`):

- `unsafe` only in the two shells' ABI files (`abi.rs`; the module's `exports.rs`) among
  the product's sources (the test harness may call libc);
- dependencies point down the layers: wire <- core <- {testkit, native
  crypto} <- {wasm shell, module shell, sidecar} <- integration harness; no
  crate depends on a shell;
- no crate is both a `cdylib` and a library, and no crate has features (no
  flag selects a shell);
- no product source file (src/ of crates/, shells/, redis-sidecar/) over
  MAX_LINES lines.

Prints every breach and exits 1 when there is one.
"""
import os
import re
import sys
import tomllib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MAX_LINES = 700
# A crate may depend only on crates of a lower layer.
LAYERS = {
    "portero-wire": 0,
    "portero-core": 1,
    "portero-testkit": 2,
    "portero-native-crypto": 2,
    "portero-wasm": 3,
    "portero-module": 3,
    "redis-sidecar": 3,
    "portero-integration": 4,
    # make bench's floors (bench/anchors/): no dependencies of their own.
    "portero-empty-module": 0,
    "portero-empty-wasm": 0,
}
SHELLS = {"portero-wasm", "portero-module"}
# The ABI files: the bindings, and the symbols Envoy calls.
UNSAFE_ALLOWED = {
    "shells/portero-wasm/src/abi.rs",
    "shells/portero-module/src/abi.rs",
    "shells/portero-module/src/exports.rs",
}
PRODUCT_SOURCES = ["crates", "shells", "redis-sidecar"]
UNSAFE = re.compile(r"\bunsafe\b")


def members():
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["members"]


def code_lines(text):
    """The lines of `text` without comments and string literals (roughly:
    enough that a comment or a message saying "unsafe" does not count)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.split("\n"):
        line = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        out.append(line.split("//", 1)[0])
    return out


def product_sources():
    """Every .rs file under a src/ of crates/, shells/ and redis-sidecar/
    (the test harness, the suites and the benches are not the product)."""
    for top in PRODUCT_SOURCES:
        for root, _, files in os.walk(os.path.join(ROOT, top)):
            rel_root = os.path.relpath(root, ROOT).split(os.sep)
            if "src" not in rel_root or "node_modules" in rel_root or "target" in rel_root:
                continue
            for name in sorted(files):
                if name.endswith(".rs"):
                    path = os.path.join(root, name)
                    yield path, os.path.relpath(path, ROOT)


def check_unsafe(breaches):
    for path, rel in product_sources():
        if rel in UNSAFE_ALLOWED:
            continue
        text = open(path, encoding="utf-8").read()
        for n, line in enumerate(code_lines(text), 1):
            if UNSAFE.search(line) and "unsafe_code" not in line:
                breaches.append(f"{rel}:{n}: `unsafe` outside the shells' ABI files")


def check_manifests(breaches):
    for member in members():
        with open(os.path.join(ROOT, member, "Cargo.toml"), "rb") as f:
            manifest = tomllib.load(f)
        name = manifest["package"]["name"]
        if name not in LAYERS:
            breaches.append(f"{member}: crate {name} has no layer in scripts/layout_check.py")
            continue
        if manifest.get("features"):
            breaches.append(f"{member}: features {sorted(manifest['features'])} (no flag selects a shell)")
        kinds = manifest.get("lib", {}).get("crate-type", ["lib"])
        if "cdylib" in kinds and len(kinds) > 1:
            breaches.append(f"{member}: both a cdylib and a library ({kinds})")
        for dep in manifest.get("dependencies", {}):
            if dep not in LAYERS:
                continue
            if dep in SHELLS:
                breaches.append(f"{member}: depends on the shell {dep}")
            elif LAYERS[dep] >= LAYERS[name]:
                breaches.append(f"{member}: depends upward or sideways on {dep}")


def check_lengths(breaches):
    for path, rel in product_sources():
        lines = sum(1 for _ in open(path, encoding="utf-8"))
        if lines > MAX_LINES:
            breaches.append(f"{rel}: {lines} lines (at most {MAX_LINES}; split it by job)")


def main():
    breaches = []
    check_unsafe(breaches)
    check_manifests(breaches)
    check_lengths(breaches)
    for b in breaches:
        print(b, file=sys.stderr)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
