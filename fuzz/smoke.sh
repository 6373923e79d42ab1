#!/usr/bin/env bash
# Fuzz smoke run: builds every fuzz target and runs each for a while.
# Exits non-zero when a target crashes (panic, abort, sanitizer report,
# timeout of one input, out-of-memory) or does not build; the crashing input
# is left in fuzz/artifacts/<target>/.
#
#   fuzz/smoke.sh                      # 60 s per target
#   FUZZ_SECONDS=600 fuzz/smoke.sh     # longer
#   FUZZ_TARGETS="zone verify" fuzz/smoke.sh
#   FUZZ_SANITIZER=none fuzz/smoke.sh  # no AddressSanitizer (faster)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets rustc take the sanitizer and coverage flags
# cargo-fuzz passes, and fuzz/bin/cargo adds --ignore-rust-version to the
# builds cargo-fuzz starts (see docs/fuzzing.md). New corpus entries go to
# fuzz/corpus/<target>/ (not committed); fuzz/seeds/<target>/ is read too.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$fuzz_dir")
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"author_domains from_differential dmarc_record auth_results zone spf verify milter_session arc"}
sanitizer=${FUZZ_SANITIZER:-address}

export RUSTC_BOOTSTRAP=1
export PATH="$fuzz_dir/bin:$PATH"
build_flags=(--fuzz-dir "$fuzz_dir" -O --codegen-units 16 -s "$sanitizer")

cd "$repo"
start=$(date +%s)
echo "fuzz smoke: building (sanitizer $sanitizer)"
cargo fuzz build "${build_flags[@]}"
built=$(date +%s)
echo "fuzz smoke: built in $((built - start)) s; $seconds s per target"

failed=()
for target in $targets; do
    mkdir -p "$fuzz_dir/corpus/$target" "$fuzz_dir/artifacts"
    log="$fuzz_dir/artifacts/smoke-$target.log"
    seeds=()
    [ -d "$fuzz_dir/seeds/$target" ] && seeds=("$fuzz_dir/seeds/$target")
    echo "fuzz smoke: $target"
    if ! cargo fuzz run "${build_flags[@]}" "$target" \
        "$fuzz_dir/corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 2>"$log"; then
        failed+=("$target")
        tail -40 "$log" >&2
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' \
        "$log" | sed "s/^/  $target: /" || true
done

echo "fuzz smoke: $(( $(date +%s) - start )) s in all ($((built - start)) s build)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz smoke: CRASHED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: no crash"
