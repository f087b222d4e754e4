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
# The SDK's hostcalls panic on unexpected host statuses: all host calls go through src/host/abi.rs.
hits=$(grep -rnE 'hostcalls::|\.(get_http_request_header|set_http_request_header|send_http_response|get_shared_data|set_shared_data|dispatch_http_call|get_property|get_plugin_configuration)\(' src --include='*.rs' | grep -vE '^[^:]+:[0-9]+:\s*//' | grep -v '// sdk-call:' || true)
if [ -n "$hits" ]; then
  echo "SDK host calls that panic on unexpected statuses (use src/host/abi.rs):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "host boundary: proxy_wasm only in src/host/, host calls only through src/host/abi.rs"
