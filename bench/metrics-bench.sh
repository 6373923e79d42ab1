#!/usr/bin/env bash
# bench/metrics-bench.sh: what recording Prometheus metrics costs the
# milter (issue 15: at most 2 % of its throughput).
#
#   bench/metrics-bench.sh [--no-build]
#
# In a private network namespace (only `lo`), zone-dns serves
# crates/dmarc-verifier/benches/data/bench.zone and two dmarc-milter
# processes run side by side with the same configuration, one without
# metrics (127.0.0.1:8895) and one with `metrics_listen =
# "127.0.0.1:9899"` (127.0.0.1:8897), scraped once a second during its
# runs (Prometheus scrapes every 15-60 s: this overstates the cost).
# examples/milter-load sends the 4 KiB RSA-2048 message at concurrency
# BENCH_CONCURRENCY (default 32, the best point of BENCHMARKS.md) for
# about BENCH_SECONDS (default 4) per run; BENCH_ROUNDS rounds (default
# 7) alternate which milter goes first, so that drift of the machine hits
# both alike. Each run records messages/s and the milter's CPU time per
# message (its own /proc/PID/stat). Results: one JSON line per run in
# $BENCH_OUT (default $CARGO_TARGET_DIR/bench-results), the medians on
# stdout.
#
# Needs root and unshare (util-linux); nothing else from Debian.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NO_BUILD=
for arg in "$@"; do
    case $arg in
        --no-build) NO_BUILD=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
SECS=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-7}
C=${BENCH_CONCURRENCY:-32}

if [ -z "${BENCH_IN_NAMESPACE:-}" ]; then
    if [ -z "$NO_BUILD" ]; then
        log "building release binaries in $CARGO_TARGET_DIR"
        (cd "$REPO" &&
            cargo build --release --ignore-rust-version -p dmarc-milter &&
            cargo build --release --ignore-rust-version -p dmarc-milter-workspace \
                --example zone-dns --example milter-load)
    fi
    OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results}
    mkdir -p "$OUT"
    export BENCH_RESULTS=${BENCH_RESULTS:-$OUT/metrics-$(date +%Y%m%dT%H%M%S).jsonl}
    : >"$BENCH_RESULTS"
    meta_line >>"$BENCH_RESULTS"
    log "results: $BENCH_RESULTS"
    in_namespace "$0" "$@"
    exit
fi
setup_namespace

LOAD=$BIN/examples/milter-load
EML=$DATA/rsa-4k.eml
start_zone_dns "$DATA/bench.zone"
start_dmarc_milter plain inet:127.0.0.1:8895
start_dmarc_milter metrics inet:127.0.0.1:8897 'metrics_listen = "127.0.0.1:9899"'
wait_for "metrics endpoint" 20 listening 9899

# One GET /metrics; prints the body's size.
scrape_once() {
    local size=0 line
    exec 3<>/dev/tcp/127.0.0.1/9899 || return 1
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    while IFS= read -r line <&3; do
        size=$((size + ${#line} + 1))
    done
    exec 3<&-
    echo "$size"
}

# Runs milter-load once against PORT with M messages per connection;
# prints its JSON summary line.
load() {
    local port=$1 m=$2
    timeout 300 "$LOAD" --milter "inet:127.0.0.1:$port" --eml "$EML" --connections "$C" \
        --messages "$m" --client-ip 192.0.2.10 --helo mail.example.com \
        --mail-from news@example.com --json
}

# Messages per connection for a run of about SECS seconds (the probe also
# warms both milters' caches).
probe_rate=$(load 8895 50 | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages_per_second"])')
load 8897 50 >/dev/null
M=$(python3 -c "print(max(50, int($probe_rate * $SECS / $C)))")
log "probe: $probe_rate msg/s at concurrency $C; $M messages per connection"

# One measured run; appends a JSON line.
run() {
    local label=$1 port=$2 pid=$3 cpu0 cpu1 json scraper= scrapes=0
    quiet_gate
    if [ "$label" = metrics ]; then
        (
            n=0
            while [ ! -e "$WORK/scraper.stop" ]; do
                scrape_once >/dev/null && n=$((n + 1))
                sleep 1
            done
            echo "$n" >"$WORK/scrapes"
        ) &
        scraper=$!
    fi
    cpu0=$(cpu_ticks "$pid")
    json=$(load "$port" "$M")
    cpu1=$(cpu_ticks "$pid")
    if [ -n "$scraper" ]; then
        touch "$WORK/scraper.stop"
        wait "$scraper" || true
        rm -f "$WORK/scraper.stop"
        scrapes=$(cat "$WORK/scrapes")
    fi
    printf '{"bench":"metrics","label":"%s","concurrency":%d,"server_cpu_s":%s,"background_busy_percent":%s,"scrapes":%d,"load":%s}\n' \
        "$label" "$C" "$(awk -v t=$((cpu1 - cpu0)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", t/h}')" \
        "${BACKGROUND_BUSY:-0}" "$scrapes" "$json" | tee -a "$BENCH_RESULTS"
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    if [ $((round % 2)) = 1 ]; then
        run plain 8895 "$PID_plain"
        run metrics 8897 "$PID_metrics"
    else
        run metrics 8897 "$PID_metrics"
        run plain 8895 "$PID_plain"
    fi
done
log "a scrape of the milter with metrics: $(scrape_once) bytes"

# Each round's two runs are a pair; the medians of the pairs' ratios are
# what drift of a busy machine moves least.
python3 - "$BENCH_RESULTS" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if '"bench":"metrics"' in l]
def cpu_us(r):
    return r["server_cpu_s"] / r["load"]["messages"] * 1e6
rounds = []
for i in range(0, len(runs) - 1, 2):
    pair = {r["label"]: r for r in runs[i:i + 2]}
    plain, metrics = pair["plain"], pair["metrics"]
    rp, rm = plain["load"]["messages_per_second"], metrics["load"]["messages_per_second"]
    rounds.append((rm / rp, cpu_us(metrics) / cpu_us(plain)))
    print(f"round {len(rounds)}: without {rp:6.0f} msg/s {cpu_us(plain):6.1f} µs/msg (busy {plain['background_busy_percent']} %)"
          f" | with {rm:6.0f} msg/s {cpu_us(metrics):6.1f} µs/msg (busy {metrics['background_busy_percent']} %, {metrics['scrapes']} scrapes)")
for label in ("plain", "metrics"):
    rs = [r for r in runs if r["label"] == label]
    rates = [r["load"]["messages_per_second"] for r in rs]
    errors = sum(len(r["load"]["errors"]) for r in rs)
    print(f"{'without' if label == 'plain' else 'with':7} metrics: median {statistics.median(rates):6.0f} msg/s (min {min(rates):.0f}, max {max(rates):.0f}),"
          f" median {statistics.median(cpu_us(r) for r in rs):6.1f} µs/msg, {errors} errors")
print(f"median of the rounds' ratios, with / without: throughput {statistics.median(t for t, _ in rounds) * 100:.1f} %,"
      f" CPU per message {statistics.median(c for _, c in rounds) * 100:.1f} %")
EOF
