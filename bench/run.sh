#!/usr/bin/env bash
# inference-router benchmark: the entry point of `make bench`.
#
#   bench/run.sh                                  full run: 8 rounds × 3 s per configuration
#   BENCH_ROUNDS=2 BENCH_SECONDS=1 bench/run.sh   quick smoke test
#
# Builds what it measures (the filter, the minimal filter, the upstream, the no-op ext_proc
# server, the decision-core micro-benchmark), installs wrk if it is missing (Debian: apt-get),
# then runs bench/bench.py, which starts every process, measures, stops every process it
# started (also on failure or Ctrl-C) and writes bench/results/<date>-<git sha>.md.
# Other knobs: see bench/README.md.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
export BENCH_TARGET_DIR="${BENCH_TARGET_DIR:-$ROOT/target/bench}"

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# Tools. wrk is the load generator (h2load is not needed: every configuration is HTTP/1.1 from
# the client); taskset (util-linux) pins processes to CPUs.
if ! command -v wrk >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "wrk is not installed and there is no apt-get: install wrk (https://github.com/wg/wrk) and retry"
    [ "$(id -u)" = 0 ] || die "wrk is not installed: run 'sudo apt-get install -y wrk' (or run this as root)"
    say "installing wrk (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
        die "apt-get install wrk failed"
    command -v wrk >/dev/null 2>&1 || die "wrk is still not on PATH after installing it"
fi
for tool in taskset python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (Envoy on CPU 1, load generator on CPU 0); this machine has $(nproc)"

# Builds (cargo is incremental: nothing is rebuilt when nothing changed).
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
say "building the filter"
(cd "$ROOT" && cargo build -q --release --target wasm32-wasip1 -p inference-router --lib)
say "building the minimal filter, upstream, ext_proc server and core micro-benchmark"
(cd "$BENCH/minimal-filter" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release --target wasm32-wasip1)
(cd "$BENCH/upstream" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)
(cd "$BENCH/ext-proc-noop" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)
(cd "$BENCH" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" cargo build -q --release)

# bench.py stops every process it started, on success, failure, Ctrl-C or SIGTERM, and its
# children are killed by the kernel if it dies itself (PR_SET_PDEATHSIG).
exec python3 "$BENCH/bench.py"
