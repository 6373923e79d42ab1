#!/usr/bin/env bash
# Instructions per message of dmarc-milter, counted by callgrind (the same
# count for the same binary and input, whatever else the machine does).
#
#   bench/callgrind-milter.sh            # 200 and 1,200 messages
#   N1=500 N2=3000 bench/callgrind-milter.sh
#   EXTRA='metrics_listen = "127.0.0.1:19899"' bench/callgrind-milter.sh
#                                        # with metrics (or other settings)
#
# Builds the milter (release, line tables for callgrind_annotate), serves
# crates/dmarc-verifier/benches/data/bench.zone with examples/zone-dns, runs
# the milter under callgrind twice, sends N1 then N2 copies of the 4 KiB
# RSA message with examples/milter-load, and prints
# (Ir(N2) - Ir(N1)) / (N2 - N1): start-up cancels out. The callgrind files
# stay in $OUT (default /tmp/dmarc-callgrind) for callgrind_annotate.
# Needs valgrind (Debian package valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-200}
N2=${N2:-1200}
OUT=${OUT:-/tmp/dmarc-callgrind}
mkdir -p "$OUT"
BIN=${CARGO_TARGET_DIR:-target}/release

CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --ignore-rust-version \
    -p dmarc-milter -p dmarc-milter-workspace \
    --bin dmarc-milter --example milter-load --example zone-dns >&2

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

rm -f "$OUT/zone.port"
"$BIN/examples/zone-dns" crates/dmarc-verifier/benches/data/bench.zone --port-file "$OUT/zone.port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$OUT/zone.port" ] && break; sleep 0.1; done
zone_port=$(cat "$OUT/zone.port")

# Runs the milter under callgrind for $1 messages on port $2; prints Ir.
run() {
    local n=$1 port=$2
    cat >"$OUT/milter.toml" <<EOF
socket = "inet:127.0.0.1:$port"
nameservers = ["127.0.0.1:$zone_port"]
log_level = "warn"
public_suffix_list = "$PWD/crates/dmarc-verifier/data/public_suffix_list.dat"
authserv_id = "mx.bench.example"
ignore_hosts = []
${EXTRA:-}
EOF
    valgrind --tool=callgrind --callgrind-out-file="$OUT/milter.$n.out" \
        "$BIN/dmarc-milter" -c "$OUT/milter.toml" >"$OUT/milter.$n.log" 2>&1 &
    local milter=$!
    pids+=("$milter")
    # Wait until it listens (valgrind start-up takes seconds).
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$BIN/examples/milter-load" --milter "inet:127.0.0.1:$port" \
        --eml crates/dmarc-verifier/benches/data/rsa-4k.eml \
        --connections 4 --messages $((n / 4)) --client-ip 192.0.2.10 \
        --helo mail.example.com --mail-from news@example.com >"$OUT/load.$n.txt" 2>&1
    kill -TERM "$milter"
    wait "$milter" || true
    grep -h '^totals:' "$OUT/milter.$n.out" | awk '{print $2}'
}

a=$(run "$N1" 18991)
b=$(run "$N2" 18992)
echo "instructions: $a ($N1 messages), $b ($N2 messages)"
echo "per message: $(((b - a) / (N2 - N1)))"
