#!/usr/bin/env bash
# Shrinks the release module with binaryen's wasm-opt -Oz (Makefile: why -Oz and opt-level z).
#
#   scripts/optimize-wasm.sh [TARGET_DIR]
#
# Reads cargo's own output (TARGET_DIR/wasm32-wasip1/release/deps/inference_router.wasm, which
# cargo leaves alone) and writes the optimised module where everything looks for it
# (TARGET_DIR/wasm32-wasip1/release/inference_router.wasm), so running it twice gives the same
# bytes. TARGET_DIR defaults to target.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-target}/wasm32-wasip1/release"
src="$dir/deps/inference_router.wasm"
out="$dir/inference_router.wasm"
if ! command -v wasm-opt >/dev/null; then
    echo "optimize-wasm: wasm-opt is missing (Debian package binaryen; make setup installs it)" >&2
    exit 1
fi
# The features rustc's wasm32-wasip1 output uses; wasm-opt refuses the module without them.
wasm-opt --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    -Oz "$src" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "optimize-wasm: $out $(stat -c %s "$src") -> $(stat -c %s "$out") bytes"
