#!/usr/bin/env bash
# The decision core must not call the host: only src/host/ may import proxy_wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(grep -rnE '\bproxy_wasm\b' src --include='*.rs' | grep -v '^src/host/' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ -n "$hits" ]; then
  echo "proxy_wasm used outside src/host/ (the core must stay host-free):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "host boundary: proxy_wasm only in src/host/"
