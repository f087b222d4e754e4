#!/usr/bin/env bash
# Packages the filter as a Wasm OCI artifact in an OCI image layout directory, the format Istio's
# WasmPlugin pulls (`url: oci://...`): no Docker engine, no base image, no timestamps, so the same
# module, version and commit always give the same digest.
#
#   scripts/oci-image.sh --wasm FILE --out DIR --version V --commit C
#
# The layout (DIR/oci-layout, DIR/index.json, DIR/blobs/sha256/*) holds one image manifest,
# tagged V, in the two-layer "oci" variant of the Wasm image specification that Istio's image
# fetcher reads (istio/istio pkg/wasm/imagefetcher.go, extractOCIArtifactImage):
#   config and layer 1  application/vnd.module.wasm.config.v1+json         runtime-config.json
#   layer 2             application/vnd.module.wasm.content.layer.v1+wasm  plugin.wasm, the module
#                       byte for byte (not compressed, not tarred)
# Istio requires exactly these two layers and takes the one with the wasm media type. The
# manifest digest is what a WasmPlugin pins (`sha256:` and `url: oci://...@sha256:`).
#
# Push it with skopeo (Debian package, installed by `make setup`):
#   skopeo copy oci:DIR:V docker://REGISTRY/inference-router:V
# Prints the digest and each layer's media type and size; writes the digest to DIR.digest.
set -euo pipefail

usage() { echo "usage: $0 --wasm FILE --out DIR --version V --commit C" >&2; exit 2; }
wasm= out= version= commit=
while [ $# -gt 0 ]; do
  case "$1" in
    --wasm) wasm=${2-}; shift 2 ;;
    --out) out=${2-}; shift 2 ;;
    --version) version=${2-}; shift 2 ;;
    --commit) commit=${2-}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$wasm" ] && [ -n "$out" ] && [ -n "$version" ] && [ -n "$commit" ] || usage
[ -f "$wasm" ] || { echo "$0: no module at $wasm (make build)" >&2; exit 1; }
# Istio checks the wasm magic number after pulling; refuse to package anything else.
[ "$(head -c 4 "$wasm" | od -An -tx1 | tr -d ' \n')" = 0061736d ] \
  || { echo "$0: $wasm is not a WebAssembly module" >&2; exit 1; }
# A tag is [A-Za-z0-9_][A-Za-z0-9._-]{0,127} (OCI distribution spec).
[[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || { echo "$0: bad tag $version" >&2; exit 1; }
[[ "$commit" =~ ^[0-9a-f]{7,40}$|^unknown$ ]] || { echo "$0: bad commit $commit" >&2; exit 1; }

# The proxy-wasm ABI the module exports (proxy_abi_version_0_2_1 for proxy-wasm-rust-sdk 0.2).
abi=$(grep -aoE 'proxy_abi_version_[0-9_]+' "$wasm" | sort -u | head -1)
[ -n "$abi" ] || { echo "$0: $wasm exports no proxy_abi_version_* function" >&2; exit 1; }

blobs="$out/blobs/sha256"
rm -rf "$out"
mkdir -p "$blobs"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Stores a file as a blob; prints its hex digest.
put_blob() {
  local d; d=$(sha "$1")
  cp "$1" "$blobs/$d"
  chmod 0644 "$blobs/$d"
  echo "$d"
}

# The runtime configuration of the Wasm image specification: the root id the Envoy and Istio
# configurations use (`root_id: inference-router`) and the ABI.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '{"type":"envoy_proxy","abiVersions":["%s"],"config":{"rootIds":["inference-router"]}}' \
  "$abi" > "$tmp/runtime-config.json"

config_digest=$(put_blob "$tmp/runtime-config.json")
config_size=$(size "$tmp/runtime-config.json")
wasm_digest=$(put_blob "$wasm")
wasm_size=$(size "$wasm")

config_mt=application/vnd.module.wasm.config.v1+json
wasm_mt=application/vnd.module.wasm.content.layer.v1+wasm
manifest_mt=application/vnd.oci.image.manifest.v1+json

descriptor() { # media type, hex digest, size, title
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"%s"}}' \
    "$1" "$2" "$3" "$4"
}
{
  printf '{"schemaVersion":2,"mediaType":"%s",' "$manifest_mt"
  printf '"config":{"mediaType":"%s","digest":"sha256:%s","size":%s},' \
    "$config_mt" "$config_digest" "$config_size"
  printf '"layers":[%s,%s],' \
    "$(descriptor "$config_mt" "$config_digest" "$config_size" runtime-config.json)" \
    "$(descriptor "$wasm_mt" "$wasm_digest" "$wasm_size" plugin.wasm)"
  printf '"annotations":{"module.wasm.runtime/type":"envoy_proxy","module.wasm.runtime/abi_version":"%s",' "$abi"
  printf '"org.opencontainers.image.title":"inference-router","org.opencontainers.image.version":"%s",' "$version"
  printf '"org.opencontainers.image.revision":"%s"}}' "$commit"
} > "$tmp/manifest.json"
manifest_digest=$(put_blob "$tmp/manifest.json")
manifest_size=$(size "$tmp/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_mt" "$manifest_digest" "$manifest_size" "$version" > "$out/index.json"
echo "sha256:$manifest_digest" > "$out.digest"

echo "image    oci:$out:$version (inference-router $version, commit $commit)"
echo "digest   sha256:$manifest_digest  (manifest, $manifest_size bytes)"
echo "layer 1  $config_mt  $config_size bytes  runtime-config.json"
echo "layer 2  $wasm_mt  $wasm_size bytes  plugin.wasm"
