#!/usr/bin/env bash
# inference-router benchmark: the entry point of `make bench`.
#
#   bench/run.sh                                  full run: 8 rounds × 3 s per configuration
#   BENCH_ROUNDS=2 BENCH_SECONDS=1 bench/run.sh   quick smoke test
#
# Builds what it measures (the filter, the minimal filter and the body floor, the upstream with its
# gRPC client and the first-byte probe, the no-op ext_proc server, the decision-core
# micro-benchmark), installs wrk and h2load if they are missing (Debian: apt-get), then runs
# bench/bench.py, which starts every process, measures, stops every process it started (also on
# failure or Ctrl-C) and writes bench/results/<date>-<git sha>.md.
# Other knobs: see bench/README.md.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
export BENCH_TARGET_DIR="${BENCH_TARGET_DIR:-$ROOT/target/bench}"

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# Tools. wrk is the load generator of the HTTP/1.1 rows, h2load (Debian's nghttp2-client) that
# of the gRPC rows (h2c; BENCH_GRPC=0 leaves them out and does not need it); taskset
# (util-linux) pins processes to CPUs.
apt_updated=0
need() {  # need <command> <Debian package> <where to get it otherwise>
    command -v "$1" >/dev/null 2>&1 && return
    command -v apt-get >/dev/null 2>&1 ||
        die "$1 is not installed and there is no apt-get: install $1 ($3) and retry"
    [ "$(id -u)" = 0 ] || die "$1 is not installed: run 'sudo apt-get install -y $2' (or run this as root)"
    say "installing $1 (apt-get install $2)"
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null ||
        die "apt-get install $2 failed"
    command -v "$1" >/dev/null 2>&1 || die "$1 is still not on PATH after installing $2"
}
need wrk wrk "https://github.com/wg/wrk"
need wasm-opt binaryen "https://github.com/WebAssembly/binaryen"
[ "${BENCH_GRPC:-1}" = 0 ] || need h2load nghttp2-client "https://nghttp2.org"
for tool in taskset python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (Envoy on CPU 1, load generator on CPU 0); this machine has $(nproc)"

# Builds (cargo is incremental: nothing is rebuilt when nothing changed).
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
say "building the filter"
(cd "$ROOT" && cargo build -q --release --target wasm32-wasip1 -p inference-router --lib && scripts/optimize-wasm.sh >/dev/null)
say "building the minimal filter, body floor, upstream (grpc-call, first-byte), ext_proc server and core micro-benchmark"
(cd "$BENCH/minimal-filter" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release --target wasm32-wasip1)
(cd "$BENCH/minimal-body-filter" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release --target wasm32-wasip1)
(cd "$BENCH/upstream" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)
(cd "$BENCH/ext-proc-noop" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)
(cd "$BENCH" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)

# bench.py stops every process it started, on success, failure, Ctrl-C or SIGTERM, and its
# children are killed by the kernel if it dies itself (PR_SET_PDEATHSIG).
exec python3 "$BENCH/bench.py"
