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
# Passes run in the order given. Before the first -Oz: --low-memory-unused lets -Oz fold
# `ptr + k` (k < 1024) into a load's or store's offset, which only differs when the sum wraps
# below address 1024, and no valid pointer is within 1 KiB of 4 GiB (-4.2 KB);
# --duplicate-function-elimination and --merge-similar-functions make one body of functions that
# differ only in constants, the others calling it with those (-2.0 KB). Not
# --ignore-implicit-traps (-0.6 KB): it lets wasm-opt execute a load on a path that never asked
# for it, and one through the pointer of an enum variant that was not the live one (a detector,
# in `Decider::route`) trapped out of bounds on the first request with detectors.
# A second -Oz finds more after the first (-0.6 KB); --reorder-functions between the two numbers
# the most called functions first, so more calls take a one- or two-byte index (-2.3 KB). Nothing
# may come after the last -Oz: any pass there drops its Stack IR optimisation (+1.1 KB).
wasm-opt --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    --low-memory-unused --duplicate-function-elimination --merge-similar-functions \
    -Oz --reorder-functions -Oz "$src" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "optimize-wasm: $out $(stat -c %s "$src") -> $(stat -c %s "$out") bytes"
