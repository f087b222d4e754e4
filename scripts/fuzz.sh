#!/usr/bin/env bash
# Fuzzes the code that reads untrusted bytes (configuration, request bodies, metadata,
# feedback, decision tokens, shared-data state, response usage) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target in fuzz/Cargo.toml. Targets
# run one after another, each bounded by libFuzzer's -max_total_time and by `timeout`. Prints
# executions per target and any crash files, and exits non-zero if a target crashed, hung,
# ran out of memory, or could not run.
#
# Environment:
#   FUZZ_SANITIZER   none (default) or address. The filter is safe Rust: panics, overflow checks
#                    (on in fuzz builds), hangs and OOMs are caught without ASan, which costs ~5x
#                    in executions. Use address for a periodic deeper run.
#   FUZZ_LOGS        directory for per-target logs (default fuzz/work/logs).
#
# cargo-fuzz needs nightly-only flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1
# lets stable rustc accept them. New inputs go to fuzz/work/corpus/<target> (ignored by git);
# the checked-in seeds in fuzz/corpus/<target> and fuzz/regressions/<target> are only read.
# Crash files land in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${1:-60}"
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ "$SECS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2
    exit 2
fi
SANITIZER="${FUZZ_SANITIZER:-none}"
LOGS="${FUZZ_LOGS:-fuzz/work/logs}"
CARGO_FUZZ_VERSION=0.13.2
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

FLAGS=(--fuzz-dir fuzz --sanitizer "$SANITIZER" --release --debug-assertions)

if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir fuzz)
fi

dict_of() {
    case "$1" in
        config_parse) echo fuzz/dict/config.dict ;;
        decide | lifecycle) echo fuzz/dict/request.dict ;;
        extract_msgpack | bandit_state | spent | health) echo fuzz/dict/msgpack.dict ;;
        extract_json | json_read | json_write | feedback | usage | inspect | callout | fleet | scan | load) echo fuzz/dict/json.dict ;;
        regex) echo fuzz/dict/regex.dict ;;
        *) echo "" ;;
    esac
}

start=$(date +%s)
echo "== building the fuzz targets (sanitizer: $SANITIZER)"
if ! cargo fuzz build "${FLAGS[@]}"; then
    echo "== FAILED: the fuzz targets do not build (see above)" >&2
    exit 2
fi
built=$(date +%s)
# Run the binaries just built rather than `cargo fuzz run`, which would rebuild before each
# target: every target then fuzzes the same build, and no time goes to cargo.
host=$(rustc -vV | sed -n 's/^host: //p')
bindir="fuzz/target/$host/release"
echo "== built in $((built - start)) s; fuzzing each target for $SECS s"

mkdir -p "$LOGS"
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT

failed=0
summary=()
for t in "${TARGETS[@]}"; do
    work="fuzz/work/corpus/$t"
    mkdir -p "$work" "fuzz/artifacts/$t" "fuzz/corpus/$t"
    log="$LOGS/$t.log"
    args=(-max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    dict="$(dict_of "$t")"
    if [[ -n "$dict" ]]; then args+=(-dict="$dict"); fi
    touch "$marker"
    echo "-- $t"
    rc=0
    corpora=("$work" "fuzz/corpus/$t")
    if [[ -d "fuzz/regressions/$t" ]]; then corpora+=("fuzz/regressions/$t"); fi
    # libFuzzer stops itself after -max_total_time; `timeout` only catches a run that does not.
    # New inputs go to the first corpus directory only.
    timeout --kill-after=30 $((SECS + 120)) \
        "$bindir/$t" -artifact_prefix="fuzz/artifacts/$t/" "${args[@]}" "${corpora[@]}" \
        >"$log" 2>&1 || rc=$?
    execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    if [[ -z "$execs" ]]; then
        # A crash ends the run before the final stats: take the last progress line.
        execs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | tail -1 || true)
    fi
    rate=$(grep -o 'average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    mapfile -t found < <(find "fuzz/artifacts/$t" -type f -newer "$marker" | sort)
    if [[ $rc -eq 0 && ${#found[@]} -eq 0 ]]; then
        status=ok
    else
        failed=1
        case $rc in
            124 | 137) status="did not stop (timeout $rc)" ;;
            0) status="artifacts written" ;;
            *) status="FAILED (exit $rc)" ;;
        esac
        echo "   log: $log"
        grep -E -A2 "panicked at" "$log" | head -8 | sed 's/^/   /' || true
        grep -E "SUMMARY|ERROR: libFuzzer|==ERROR" "$log" | head -6 | sed 's/^/   /' || true
    fi
    for f in "${found[@]}"; do echo "   crash file: $f"; done
    line=$(printf '%-16s %12s execs %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" "$status")
    echo "   $line"
    summary+=("$line")
done

end=$(date +%s)
echo
echo "== fuzz summary ($SECS s per target, build $((built - start)) s, total $((end - start)) s)"
printf '   %s\n' "${summary[@]}"
if [[ $failed -ne 0 ]]; then
    echo "== FAILED: see the crash files above; reproduce with"
    echo "   RUSTC_BOOTSTRAP=1 cargo fuzz run -s $SANITIZER <target> <crash file>"
    exit 1
fi
echo "== no crashes"
