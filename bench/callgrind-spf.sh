#!/usr/bin/env bash
# Instructions per SPF check of our engine and of mail-auth's, warm cache,
# counted by callgrind (the same count for the same binary and input,
# whatever else the machine does).
#
#   bench/callgrind-spf.sh            # 100 and 1,100 checks
#   N1=200 N2=2200 bench/callgrind-spf.sh
#
# Builds crates/dmarc-verifier/examples/spf-callgrind (release, line tables
# for callgrind_annotate), runs it under callgrind for each engine and each
# scenario of the SPF benchmark (benches/data/spf.zone) twice, N1 then N2
# checks, and prints (Ir(N2) - Ir(N1)) / (N2 - N1): set-up cancels out. The
# callgrind files stay in $OUT (default /tmp/dmarc-callgrind-spf).
# Needs valgrind (Debian package valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-100}
N2=${N2:-1100}
OUT=${OUT:-/tmp/dmarc-callgrind-spf}
mkdir -p "$OUT"
BIN=${CARGO_TARGET_DIR:-target}/release/examples/spf-callgrind

CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --ignore-rust-version \
    -p dmarc-verifier --example spf-callgrind >&2

# Instructions of $1 checks by engine $2 on scenario $3.
count() {
    local n=$1 engine=$2 scenario=$3
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$engine-$scenario-$n.out" \
        "$BIN" "$engine" "$scenario" "$n" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-8s %14s %14s %8s\n' scenario ours mail-auth ratio
for scenario in layered esp; do
    declare -A per
    for engine in ours mail-auth; do
        a=$(count "$N1" "$engine" "$scenario")
        b=$(count "$N2" "$engine" "$scenario")
        per[$engine]=$(( (b - a) / (N2 - N1) ))
    done
    printf '%-8s %14s %14s %8s\n' "$scenario" "${per[ours]}" "${per[mail-auth]}" \
        "$(awk -v o="${per[ours]}" -v m="${per[mail-auth]}" 'BEGIN { printf "%.2f", o / m }')"
done
