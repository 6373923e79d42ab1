#!/usr/bin/env bash
# bench/milter-bench.sh: milter throughput, latency and memory (issue 5).
#
#   bench/milter-bench.sh [--quick] [--no-build] [--no-postfix] [--no-peers]
#
# Builds the release binaries, then in a private network namespace (only
# `lo`; nothing leaves the machine) starts zone-dns with
# crates/dmarc-verifier/benches/data/bench.zone, unbound in front of it for
# the peers, and runs examples/milter-load with the 4 KiB RSA-2048 message
# (client 192.0.2.10, HELO mail.example.com, MAIL FROM news@example.com) at
# concurrency 1 2 4 8 16 32 64 against:
#   - dmarc-milter over TCP and over a UNIX socket (full verification);
#   - dmarc-milter with the client in ignore_hosts (all the protocol work
#     and buffering, no verification);
#   - the indymilter empty milter, when crates/dmarc-milter/examples/
#     empty-milter.rs exists or EMPTY_MILTER names a binary;
#   - OpenDKIM (verify only), OpenDMARC (SPF self-check), and OpenDMARC
#     given OpenDKIM's Authentication-Results (the chain's second stage),
#     each over TCP and over a UNIX socket;
# plus new-session-per-message points, and the 100 KiB message for memory.
# Then bench/postfix-bench.sh (unless --no-postfix).
#
# Each point runs about BENCH_SECONDS (default 4; --quick: 1) after a short
# probe at the same concurrency that also warms it. Results: one JSON line
# per run in $BENCH_OUT (default $CARGO_TARGET_DIR/bench-results), and the
# tables on stdout (bench/report.py). The whole run is bounded by
# BENCH_TIMEOUT seconds (default 3600).
#
# Needs root, unshare, python3, and the Debian packages opendkim, opendmarc,
# unbound, bind9-dnsutils (dig), postfix (for the Postfix part).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK= NO_BUILD= NO_POSTFIX= NO_PEERS=
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        --no-build) NO_BUILD=1 ;;
        --no-postfix) NO_POSTFIX=1 ;;
        --no-peers) NO_PEERS=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
SECS=${BENCH_SECONDS:-$([ -n "$QUICK" ] && echo 1 || echo 4)}
LEVELS=${BENCH_LEVELS:-1 2 4 8 16 32 64}
SPM_LEVELS=${BENCH_SPM_LEVELS:-1 8 64}

if [ -z "${BENCH_IN_NAMESPACE:-}" ]; then
    [ -n "$NO_BUILD" ] || build
    OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results}
    mkdir -p "$OUT"
    export BENCH_RESULTS=${BENCH_RESULTS:-$OUT/milter-$(date +%Y%m%dT%H%M%S).jsonl}
    : >"$BENCH_RESULTS"
    meta_line >>"$BENCH_RESULTS"
    log "results: $BENCH_RESULTS"
    status=0
    in_namespace "$0" "$@" || status=$?
    if [ -z "$NO_POSTFIX" ]; then
        bash "$REPO/bench/postfix-bench.sh" --no-build ${QUICK:+--quick} || status=$?
    fi
    exit "$status"
fi
setup_namespace

LOAD=$BIN/examples/milter-load
EML4K=$DATA/rsa-4k.eml
EML100K=$DATA/rsa-100k.eml
# The chain's second stage: the message as OpenDMARC gets it after
# OpenDKIM (its Authentication-Results on top; same authserv-id).
EML4K_AR=$WORK/rsa-4k-with-dkim-ar.eml
{
    printf 'Authentication-Results: %s;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=example.com header.i=@example.com header.a=rsa-sha256 header.s=bench2048 header.b=elzTdb1G;\r\n' "$AUTHSERV_ID"
    cat "$EML4K"
} >"$EML4K_AR"

# Runs milter-load once and appends a JSON line to $BENCH_RESULTS.
#   run_load LABEL PID SOCKET EML CONNECTIONS MESSAGES [--session-per-message]
run_load() {
    local label=$1 pid=$2 socket=$3 eml=$4 c=$5 m=$6; shift 6
    local spm=false
    [ "${1:-}" = --session-per-message ] && spm=true
    local transport=${socket%%:*}
    local cpu0 cpu1 rss0 hwm json status=0 stopfile=$WORK/sampler.stop peakfile=$WORK/sampler.peak
    rm -f "$stopfile" "$peakfile"
    quiet_gate
    # Peak VmRSS, sampled every 20 ms (builtins only: no fork per sample).
    (
        max=0
        # A pipe nobody writes to: `read -t` on it sleeps without a fork.
        exec {nap}<> <(:)
        while [ ! -e "$stopfile" ] && [ -e "/proc/$pid" ]; do
            while read -r key value rest; do
                if [ "$key" = VmRSS: ]; then
                    [ "$value" -gt "$max" ] && max=$value
                    break
                fi
            done <"/proc/$pid/status" 2>/dev/null || true
            read -r -t 0.02 -u "$nap" || true
        done
        echo "$max" >"$peakfile"
    ) &
    local sampler=$!
    rss0=$(status_kib "$pid" VmRSS)
    cpu0=$(cpu_ticks "$pid")
    local machine0 machine1
    machine0=$(machine_jiffies)
    json=$(timeout 300 "$LOAD" --milter "$socket" --eml "$eml" --connections "$c" --messages "$m" \
        --client-ip 192.0.2.10 --helo mail.example.com --mail-from news@example.com \
        --json "$@") || status=$?
    cpu1=$(cpu_ticks "$pid")
    machine1=$(machine_jiffies)
    touch "$stopfile"
    wait "$sampler" || true
    hwm=$(status_kib "$pid" VmHWM)
    [ -n "$json" ] || json="{\"errors\":[\"milter-load exited with status $status and no output\"]}"
    local line
    line=$(printf '{"bench":"milter","label":"%s","transport":"%s","eml":"%s","concurrency":%d,"session_per_message":%s,"server_cpu_s":%s,"machine_busy_percent":%s,"background_busy_percent":%s,"rss_before_kib":%d,"rss_peak_kib":%d,"hwm_after_kib":%d,"exit":%d,"load":%s}' \
        "$label" "$transport" "$(basename "$eml" .eml)" "$c" "$spm" \
        "$(awk -v t=$((cpu1 - cpu0)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", t/h}')" \
        "$(busy_percent "$machine0" "$machine1")" "$BACKGROUND_BUSY" "$rss0" "$(cat "$peakfile" 2>/dev/null || echo 0)" "$hwm" "$status" "$json")
    echo "$line" >>"$BENCH_RESULTS"
    python3 "$REPO/bench/report.py" row <<<"$line"
}

# Probe at each concurrency (it also warms that level), then a run sized
# to last about $SECS seconds.
#   sweep LABEL PID SOCKET EML [--session-per-message] (levels from $LEVELS
#   or $SPM_LEVELS)
sweep() {
    local label=$1 pid=$2 socket=$3 eml=$4; shift 4
    local levels=$LEVELS c probe seconds m
    [ "${1:-}" = --session-per-message ] && levels=$SPM_LEVELS
    for c in $levels; do
        probe=$(((60 + c - 1) / c))
        [ "$probe" -ge 3 ] || probe=3
        seconds=$(timeout 120 "$LOAD" --milter "$socket" --eml "$eml" --connections "$c" \
            --messages "$probe" --client-ip 192.0.2.10 --helo mail.example.com \
            --mail-from news@example.com --json "$@" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])') ||
            die "$label: the probe at concurrency $c failed"
        # Messages per connection for about $SECS seconds, 20 to 200,000/c.
        m=$(awk -v s="$seconds" -v p="$probe" -v c="$c" -v t="$SECS" 'BEGIN {
            m = int(t / s * p + 0.5); if (m < 20) m = 20;
            if (m > 200000 / c) m = int(200000 / c); print m }')
        run_load "$label" "$pid" "$socket" "$eml" "$c" "$m" "$@"
    done
}

memory_line() {
    printf '{"bench":"memory","label":"%s","rss_kib":%d,"hwm_kib":%d}\n' \
        "$1" "$(status_kib "$2" VmRSS)" "$(status_kib "$2" VmHWM)" | tee -a "$BENCH_RESULTS" >&2
}

start_zone_dns "$DATA/bench.zone"

# --- dmarc-milter ----------------------------------------------------------
log "== dmarc-milter, TCP"
start_dmarc_milter dmarc-milter inet:127.0.0.1:8895
memory_line "dmarc-milter idle after start" "$PID_dmarc_milter"
timeout 60 "$LOAD" --milter inet:127.0.0.1:8895 --eml "$EML4K" --connections 1 --messages 20 >/dev/null
memory_line "dmarc-milter idle after 20 messages (cache warm)" "$PID_dmarc_milter"
sweep dmarc-milter "$PID_dmarc_milter" inet:127.0.0.1:8895 "$EML4K"
memory_line "dmarc-milter idle after the 4 KiB sweep" "$PID_dmarc_milter"
sweep dmarc-milter "$PID_dmarc_milter" inet:127.0.0.1:8895 "$EML4K" --session-per-message
stop_pid "$PID_dmarc_milter"

log "== dmarc-milter, UNIX socket"
start_dmarc_milter dmarc-milter-unix "unix:$WORK/dmarc-milter.sock"
timeout 60 "$LOAD" --milter "unix:$WORK/dmarc-milter.sock" --eml "$EML4K" --connections 1 --messages 20 >/dev/null
sweep dmarc-milter "$PID_dmarc_milter_unix" "unix:$WORK/dmarc-milter.sock" "$EML4K"
sweep dmarc-milter "$PID_dmarc_milter_unix" "unix:$WORK/dmarc-milter.sock" "$EML4K" --session-per-message
stop_pid "$PID_dmarc_milter_unix"

log "== dmarc-milter, 100 KiB message (memory per message in flight)"
start_dmarc_milter dmarc-milter-100k inet:127.0.0.1:8895
memory_line "dmarc-milter (100 KiB run) idle after start" "$PID_dmarc_milter_100k"
LEVELS="1 8 64" sweep dmarc-milter "$PID_dmarc_milter_100k" inet:127.0.0.1:8895 "$EML100K"
stop_pid "$PID_dmarc_milter_100k"

log "== dmarc-milter, client in ignore_hosts (protocol and buffering only)"
start_dmarc_milter dmarc-milter-ignored inet:127.0.0.1:8896 'ignore_hosts = ["192.0.2.0/24"]'
sweep "dmarc-milter, client ignored" "$PID_dmarc_milter_ignored" inet:127.0.0.1:8896 "$EML4K"
sweep "dmarc-milter, client ignored" "$PID_dmarc_milter_ignored" inet:127.0.0.1:8896 "$EML4K" --session-per-message
stop_pid "$PID_dmarc_milter_ignored"

EMPTY=$(empty_milter_bin)
if [ -n "$EMPTY" ]; then
    log "== empty milter (indymilter): $EMPTY"
    start empty-milter "$EMPTY" inet:127.0.0.1:8899
    wait_for empty-milter 20 listening 8899
    sweep "empty milter (indymilter)" "$PID_empty_milter" inet:127.0.0.1:8899 "$EML4K"
    sweep "empty milter (indymilter)" "$PID_empty_milter" inet:127.0.0.1:8899 "$EML4K" --session-per-message
    stop_pid "$PID_empty_milter"
else
    log "== no empty milter: add crates/dmarc-milter/examples/empty-milter.rs or set EMPTY_MILTER"
fi

# --- peers ---------------------------------------------------------------------
if [ -z "$NO_PEERS" ]; then
    start_unbound
    for transport in unix inet; do
        log "== OpenDKIM and OpenDMARC, $transport"
        start_opendkim "$transport"
        start_opendmarc "$transport"
        if [ "$transport" = unix ]; then
            dkim=unix:$WORK/opendkim.sock dmarc=unix:$WORK/opendmarc.sock
        else
            dkim=inet:127.0.0.1:8891 dmarc=inet:127.0.0.1:8893
        fi
        timeout 60 "$LOAD" --milter "$dkim" --eml "$EML4K" --connections 1 --messages 5 >/dev/null
        timeout 60 "$LOAD" --milter "$dmarc" --eml "$EML4K" --connections 1 --messages 5 >/dev/null
        memory_line "OpenDKIM idle ($transport)" "$PID_opendkim"
        memory_line "OpenDMARC idle ($transport)" "$PID_opendmarc"
        sweep OpenDKIM "$PID_opendkim" "$dkim" "$EML4K"
        sweep OpenDMARC "$PID_opendmarc" "$dmarc" "$EML4K"
        sweep "OpenDMARC after OpenDKIM" "$PID_opendmarc" "$dmarc" "$EML4K_AR"
        sweep OpenDKIM "$PID_opendkim" "$dkim" "$EML4K" --session-per-message
        sweep OpenDMARC "$PID_opendmarc" "$dmarc" "$EML4K" --session-per-message
        sweep "OpenDMARC after OpenDKIM" "$PID_opendmarc" "$dmarc" "$EML4K_AR" --session-per-message
        stop_pid "$PID_opendkim"
        stop_pid "$PID_opendmarc"
    done
fi

[ -z "$NO_POSTFIX" ] || python3 "$REPO/bench/report.py" tables "$BENCH_RESULTS"
