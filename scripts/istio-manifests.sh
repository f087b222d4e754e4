#!/usr/bin/env bash
# Writes copies of istio/*.yaml into DIR with every WasmPlugin pinned to one image digest:
#   url: oci://IMAGE@sha256:HEX     (the registry serves exactly that manifest, or nothing)
#   sha256: HEX                     (Istio's agent checks the pulled manifest against it)
# Everything else is copied as it is. `make istio-manifests` runs it for the image `make image`
# built; `make validate` checks the copies (istio/validate.mjs --expect-sha256 HEX).
#
#   scripts/istio-manifests.sh --image REGISTRY/REPOSITORY --digest sha256:HEX --out DIR
#
# In each WasmPlugin file it replaces the `url: oci://...` line and the `sha256:` line (or the
# `# sha256: <64 hex digits>` placeholder) of every WasmPlugin document, and fails unless it
# found exactly one of each per WasmPlugin.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 --image REGISTRY/REPOSITORY --digest sha256:HEX --out DIR" >&2; exit 2; }
image= digest= out=
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=${2-}; shift 2 ;;
    --digest) digest=${2-}; shift 2 ;;
    --out) out=${2-}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$image" ] && [ -n "$digest" ] && [ -n "$out" ] || usage
hex=${digest#sha256:}
[[ "$digest" == sha256:* && "$hex" =~ ^[0-9a-f]{64}$ ]] || { echo "$0: bad digest $digest" >&2; exit 1; }
[[ "$image" =~ ^[A-Za-z0-9.:_/-]+$ && "$image" != *@* && "$image" != oci://* ]] \
  || { echo "$0: bad image $image (REGISTRY/REPOSITORY, no scheme, tag or digest)" >&2; exit 1; }
# A tag after the repository would be dropped by the digest anyway; refuse it to avoid doubt.
[[ "${image##*/}" != *:* ]] || { echo "$0: $image has a tag; give the repository only" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
for src in istio/*.yaml; do
  dst="$out/$(basename "$src")"
  plugins=$(grep -c '^kind: WasmPlugin$' "$src" || true)
  if [ "$plugins" = 0 ]; then
    cp "$src" "$dst"
    continue
  fi
  awk -v url="oci://$image@sha256:$hex" -v hex="$hex" -v file="$src" -v plugins="$plugins" '
    BEGIN { print "# Pinned by scripts/istio-manifests.sh to " url " (make istio-manifests)." }
    /^  url: oci:\/\// { print "  url: " url; urls++; next }
    /^  # sha256: <64 hex digits>/ || /^  sha256: / { print "  sha256: " hex; shas++; next }
    { print }
    END {
      if (urls != plugins || shas != plugins) {
        printf "%s: %d WasmPlugin(s) but %d `url: oci://` and %d `sha256:` line(s) replaced\n",
          file, plugins, urls, shas > "/dev/stderr"
        exit 1
      }
    }' "$src" > "$dst"
  echo "pinned   $dst"
done
echo "WasmPlugins in $out pinned to oci://$image@sha256:$hex"
