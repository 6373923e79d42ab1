#!/usr/bin/env bash
# bench/library-bench.sh: the library figures of issue 5.
#
#   bench/library-bench.sh [--quick]
#
# 1. `cargo bench -p dmarc-verifier --bench verify` (criterion): whole
#    verification of the 4 KiB and 100 KiB RSA-2048 and the 4 KiB Ed25519
#    messages with a warm DNS cache, the parsers, the header formatter, and
#    the crypto floor measured in the same run; its last lines are the
#    ratios to the floor.
# 2. examples/dns-cold: 1,000 messages at once against an empty cache while
#    every answer of the zone takes 50 ms, compared with one message alone
#    (3 runs).
#
# Output: on stdout, and saved in $BENCH_OUT (default
# $CARGO_TARGET_DIR/bench-results). Runs at nice BENCH_NICE (default -10)
# when root. Everything stays on 127.0.0.1 (test-dns in-process).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done

OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results}
mkdir -p "$OUT"
STAMP=$(date +%Y%m%dT%H%M%S)
NICE=()
[ "$(id -u)" != 0 ] || NICE=(nice -n "${BENCH_NICE:--10}")

cd "$REPO"
log "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); load average $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --ignore-rust-version -p dmarc-milter-workspace --example dns-cold
cargo bench --ignore-rust-version -p dmarc-verifier --bench verify --no-run

log "criterion: cargo bench --ignore-rust-version -p dmarc-verifier --bench verify"
CRITERION_ARGS=()
[ -z "$QUICK" ] || CRITERION_ARGS=(-- --warm-up-time 0.5 --measurement-time 1)
timeout 1200 "${NICE[@]}" cargo bench --ignore-rust-version -p dmarc-verifier --bench verify \
    "${CRITERION_ARGS[@]}" 2>&1 | tee "$OUT/library-$STAMP.txt"

log "dns-cold: 1,000 messages at once, 50 ms per DNS answer"
for run in 1 2 3; do
    timeout 120 "${NICE[@]}" "$BIN/examples/dns-cold" --zone "$DATA/bench.zone" --eml "$DATA/rsa-4k.eml" \
        --messages 1000 --delay-ms 50
    [ -z "$QUICK" ] || break
done 2>&1 | tee "$OUT/dns-cold-$STAMP.txt"
log "saved $OUT/library-$STAMP.txt and $OUT/dns-cold-$STAMP.txt"
