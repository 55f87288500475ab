#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, one after the other, and prints a table.
#
#   fuzz/run.sh [seconds_per_target] [target...]      (default: 300 s, every target)
#
# Environment:
#   SANITIZER=address|none   (default address; `none` builds faster and runs ~2x faster)
#   FUZZ_TIMEOUT=10          libFuzzer -timeout per input, seconds
#   RSS_LIMIT_MB=2048
# Each target starts from a fresh corpus (fuzz/corpus/<target>, wiped) seeded from
# fuzz/seeds/<target> and fuzz/regressions/<target>; logs go to fuzz/logs/<target>.log and
# crashing inputs to fuzz/artifacts/<target>/. Exits non-zero if any target crashed (or
# failed to build or run).
#
# libFuzzer needs nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov-module, ...):
# on a stable toolchain this script sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept
# them. Nothing else is needed; the ASan runtime ships with the stable std component.
set -u -o pipefail

SECONDS_PER_TARGET="${1:-300}"
shift $(( $# > 0 ? 1 : 0 ))
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
ALL_TARGETS=(token authorize jwks config rules headers path)
TARGETS=("${@:-${ALL_TARGETS[@]}}")
SANITIZER="${SANITIZER:-address}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_LIMIT_MB="${RSS_LIMIT_MB:-2048}"

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || (( SECONDS_PER_TARGET < 1 )); then
    echo "usage: fuzz/run.sh [seconds_per_target] [target...]" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

max_len() {
    case "$1" in
        token | authorize) echo 16384 ;;
        config) echo 65536 ;;
        jwks) echo 65536 ;;
        *) echo 4096 ;;
    esac
}

cd "$ROOT" || exit 2
echo "building ${TARGETS[*]} (sanitizer: $SANITIZER)" >&2
if ! cargo fuzz build --sanitizer "$SANITIZER" >"$FUZZ_DIR/build.log" 2>&1; then
    tail -40 "$FUZZ_DIR/build.log" >&2
    echo "build failed (full log: fuzz/build.log)" >&2
    exit 2
fi

mkdir -p "$FUZZ_DIR/logs"
failed=0
rows=()
for target in "${TARGETS[@]}"; do
    corpus="$FUZZ_DIR/corpus/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    log="$FUZZ_DIR/logs/$target.log"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    for seeds in "$FUZZ_DIR/seeds/$target" "$FUZZ_DIR/regressions/$target"; do
        [ -d "$seeds" ] && cp -p "$seeds"/* "$corpus"/ 2>/dev/null
    done
    before=$(find "$artifacts" -type f | wc -l)
    echo "fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
    # The outer timeout is a backstop: libFuzzer stops itself at -max_total_time.
    timeout --kill-after=30 $(( SECONDS_PER_TARGET + 120 )) \
        cargo fuzz run --sanitizer "$SANITIZER" "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_LIMIT_MB" \
        -timeout="$FUZZ_TIMEOUT" \
        -max_len="$(max_len "$target")" \
        -artifact_prefix="$artifacts/" \
        -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$(( after - before ))
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    last_line=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1)
    line="${done_line:-$last_line}"
    runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$line")
    execs=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$line")
    if (( status != 0 )) || [ -z "$done_line" ] || (( crashes > 0 )); then
        failed=1
        result="FAIL(exit $status)"
        grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" >&2
    else
        result="ok"
    fi
    rows+=("$(printf '%-10s %6s %10s %8s %6s %7s %12s %7s  %s' \
        "$target" "$SECONDS_PER_TARGET" "${runs:--}" "${execs:--}" "${cov:--}" "${ft:--}" \
        "${corp:--}" "$crashes" "$result")")
done

printf '\n%-10s %6s %10s %8s %6s %7s %12s %7s  %s\n' \
    target seconds runs exec/s cov ft corpus crashes result
for row in "${rows[@]}"; do
    echo "$row"
done
echo "(sanitizer: $SANITIZER; logs in fuzz/logs/, crashing inputs in fuzz/artifacts/)"
exit "$failed"
