#!/usr/bin/env bash
# Writes a wasm module as a Wasm OCI image, the form Istio's WasmPlugin pulls
# ("compat" format: one layer holding plugin.wasm), as an OCI image layout and
# an oci-archive tarball, with umoci and skopeo (Debian packages), no Docker.
#   scripts/oci.sh <module.wasm> <out-dir> <tag>
set -euo pipefail
wasm=$1 out=$2 tag=$3
rm -rf "$out" && mkdir -p "$out"
umoci init --layout "$out/layout"
umoci new --image "$out/layout:$tag"
umoci unpack --rootless --image "$out/layout:$tag" "$out/bundle"
cp "$wasm" "$out/bundle/rootfs/plugin.wasm"
umoci repack --image "$out/layout:$tag" "$out/bundle"
umoci config --image "$out/layout:$tag" --architecture wasm --os wasip1
umoci gc --layout "$out/layout"
skopeo copy --quiet "oci:$out/layout:$tag" "oci-archive:$out/portero.tar:$tag"
rm -rf "$out/bundle"
echo "wrote $out/layout and $out/portero.tar (tag $tag)"
