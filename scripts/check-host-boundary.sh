#!/usr/bin/env bash
# The host boundary. The compiler keeps proxy-wasm out of the core (inference-router-core has no
# such dependency); this checks that it stays that way, and that the shell (src/) makes every
# host call through src/host/abi.rs, which returns every host status as a value (the proxy-wasm
# SDK's hostcalls panic on unexpected statuses; the shell has its own exports, no SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo tree -q -p inference-router-core -e normal --prefix none | grep -q '^proxy-wasm '; then
  echo "inference-router-core depends on proxy-wasm: the core must stay host-free" >&2
  exit 1
fi
hits=$(grep -rnE '\bproxy_wasm\b' src --include='*.rs' | grep -v '^src/host/' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ -n "$hits" ]; then
  echo "proxy_wasm used outside src/host/:" >&2
  echo "$hits" >&2
  exit 1
fi
hits=$(grep -rnE 'hostcalls::|\.(get_http_request_header|set_http_request_header|send_http_response|get_shared_data|set_shared_data|dispatch_http_call|get_property|get_plugin_configuration)\(' src --include='*.rs' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ -n "$hits" ]; then
  echo "SDK host calls that panic on unexpected statuses (use src/host/abi.rs):" >&2
  echo "$hits" >&2
  exit 1
fi
hits=$(grep -rln 'wasm_import_module' src --include='*.rs' | grep -vx 'src/host/abi.rs' || true)
if [ -n "$hits" ]; then
  echo "host imports declared outside src/host/abi.rs:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "host boundary: no proxy-wasm in the core; host calls only through src/host/abi.rs"
