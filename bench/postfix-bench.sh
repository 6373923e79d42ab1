#!/usr/bin/env bash
# bench/postfix-bench.sh: end-to-end messages/s through a real Postfix
# (issue 5): smtp-source → Postfix (a private instance on 127.0.0.1:2525)
# → smtp-sink (127.0.0.1:2526, the relayhost), 64 SMTP sessions at once,
# one message per session, with:
#   - no milter (first and last: the drift of the machine meanwhile);
#   - the indymilter empty milter over TCP, when built (see milter-bench.sh);
#   - dmarc-milter over TCP with the client skipped (ignore_hosts: the
#     protocol, buffering and our header, no verification);
#   - dmarc-milter over TCP, and over a UNIX socket;
#   - OpenDKIM → OpenDMARC over TCP, and over UNIX sockets.
#
#   bench/postfix-bench.sh [--quick] [--no-build]
#
# The message is the 4 KiB RSA-2048 one (crates/dmarc-verifier/benches/
# data/rsa-4k.eml), MAIL FROM news@example.com, HELO mail.example.com. The
# client is 127.0.0.1, so the zone served is bench.zone with 127.0.0.0/8
# added to example.com's SPF record (every check passes, as with
# milter-bench.sh's 192.0.2.10) and the milters are told not to skip
# loopback clients. Each variant runs BENCH_POSTFIX_REPS times (default 3;
# --quick: 1) with BENCH_POSTFIX_MESSAGES messages (default 3000; --quick:
# 500); "delivered" is the time until the queue is empty again (every
# message handed to smtp-sink, as the maillog confirms).
# Results: JSON lines appended to $BENCH_RESULTS, and the tables.
#
# Needs root, unshare, python3, and the Debian packages postfix, opendkim,
# opendmarc, unbound, bind9-dnsutils. Bounded by BENCH_TIMEOUT seconds
# (default 3600); every process it starts is stopped at exit.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK= NO_BUILD=
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
N=${BENCH_POSTFIX_MESSAGES:-$([ -n "$QUICK" ] && echo 500 || echo 3000)}
REPS=${BENCH_POSTFIX_REPS:-$([ -n "$QUICK" ] && echo 1 || echo 3)}
SESSIONS=${BENCH_POSTFIX_SESSIONS:-64}

if [ -z "${BENCH_IN_NAMESPACE:-}" ]; then
    [ -n "$NO_BUILD" ] || build
    OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-results}
    mkdir -p "$OUT"
    export BENCH_RESULTS=${BENCH_RESULTS:-$OUT/postfix-$(date +%Y%m%dT%H%M%S).jsonl}
    touch "$BENCH_RESULTS"
    grep -q '"bench":"meta"' "$BENCH_RESULTS" || meta_line >>"$BENCH_RESULTS"
    log "results: $BENCH_RESULTS"
    in_namespace "$0" "$@"
    exit
fi
setup_namespace

for tool in postfix postconf smtp-source smtp-sink; do
    command -v "$tool" >/dev/null || die "$tool not installed (apt-get install postfix)"
done

# The zone: bench.zone, with the loopback client authorized by SPF.
sed 's|"v=spf1 ip4:192.0.2.0/24 -all"|"v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.0/8 -all"|' \
    "$DATA/bench.zone" >"$WORK/bench-loopback.zone"
grep -q 'ip4:127.0.0.0/8' "$WORK/bench-loopback.zone" || die "bench.zone's SPF record changed: update $0"
# smtp-source -F appends CRLF to each line: give it LF lines.
tr -d '\r' <"$DATA/rsa-4k.eml" >"$WORK/message.eml"

start_zone_dns "$WORK/bench-loopback.zone"
start_unbound

# Sockets Postfix's smtpd (user postfix) can open.
chmod 0755 "$WORK"
PEER_UMASK=000
start_dmarc_milter dmarc-milter inet:127.0.0.1:8895 'ignore_hosts = []'
start_dmarc_milter dmarc-milter-unix "unix:$WORK/dmarc-milter.sock" 'ignore_hosts = []
socket_mode = "0666"'

# --- the Postfix instance (like crates/dmarc-milter/tests/postfix.rs) -------
PF=$WORK/postfix
mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
chown postfix:postfix "$PF/data"
cat >"$PF/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $AUTHSERV_ID
mydomain = bench
myorigin = bench
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains = example.org
relayhost = [127.0.0.1]:2526
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
milter_protocol = 6
milter_default_action = tempfail
smtpd_milters =
EOF
cat >"$PF/conf/master.cf" <<EOF
127.0.0.1:2525 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
postfix -c "$PF/conf" check
CLEANUPS+=("postfix -c '$PF/conf' stop >/dev/null 2>&1")

postfix_start() {
    postfix -c "$PF/conf" start >/dev/null 2>&1 || die "postfix start failed: $(tail -5 "$PF/maillog" 2>/dev/null)"
    wait_for "Postfix smtpd" 30 listening 2525
}
postfix_stop() {
    postfix -c "$PF/conf" stop >/dev/null 2>&1 || true
    wait_for "Postfix to stop" 30 bash -c "! postfix -c '$PF/conf' status"
}
queue_files() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/hold" -type f 2>/dev/null | wc -l; }

# One run: N messages in $SESSIONS sessions; appends a JSON line.
# "delivered" is when the queue is empty again after smtp-source is done
# (then the maillog must show N deliveries to smtp-sink).
#   run_postfix LABEL "PID PID…" REP
run_postfix() {
    local label=$1 pids=$2 rep=$3
    local source_status=0 t0 t1 t2 cpu0=0 cpu1=0 pid notes=""
    : >"$PF/maillog"
    quiet_gate
    for pid in $pids; do cpu0=$((cpu0 + $(cpu_ticks "$pid"))); done
    local machine0 machine1
    machine0=$(machine_jiffies)
    t0=$EPOCHREALTIME
    timeout 600 smtp-source -s "$SESSIONS" -m "$N" -f news@example.com -t reader@example.org \
        -M mail.example.com -F "$WORK/message.eml" 127.0.0.1:2525 >"$WORK/smtp-source.log" 2>&1 ||
        source_status=$?
    t1=$EPOCHREALTIME
    local deadline=$((SECONDS + 300))
    while [ "$(queue_files)" != 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.01
    done
    t2=$EPOCHREALTIME
    machine1=$(machine_jiffies)
    for pid in $pids; do cpu1=$((cpu1 + $(cpu_ticks "$pid"))); done
    [ "$(queue_files)" = 0 ] || notes="the queue did not drain within 300 s;"
    [ "$source_status" = 0 ] || notes="$notes smtp-source exit $source_status: $(tail -2 "$WORK/smtp-source.log" | tr '\n"' ' _');"
    # postlogd writes asynchronously: wait (briefly) for the last lines.
    local delivered milter_warnings
    deadline=$((SECONDS + 10))
    while delivered=$(grep -c 'status=sent' "$PF/maillog" || true) &&
        [ "$delivered" -lt "$N" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.05
    done
    milter_warnings=$(grep -ci 'warning.*milter\|milter-reject\|milter-discard\|milter-hold' "$PF/maillog" || true)
    [ "$milter_warnings" = 0 ] || notes="$notes $milter_warnings milter warnings or actions: $(grep -i 'milter' "$PF/maillog" | head -1 | cut -c1-160 | tr '"' _)"
    local line
    line=$(printf '{"bench":"postfix","label":"%s","rep":%d,"messages":%d,"sessions":%d,"source_seconds":%s,"delivered_seconds":%s,"delivered":%d,"milter_cpu_s":%s,"machine_busy_percent":%s,"background_busy_percent":%s,"notes":"%s"}' \
        "$label" "$rep" "$N" "$SESSIONS" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" \
        "$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", b-a}')" \
        "$delivered" "$(awk -v t=$((cpu1 - cpu0)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", t/h}')" \
        "$(busy_percent "$machine0" "$machine1")" "$BACKGROUND_BUSY" "$(echo "$notes" | sed 's/^ *//')")
    echo "$line" >>"$BENCH_RESULTS"
    python3 "$REPO/bench/report.py" row <<<"$line"
}

# A variant: configure the milters, restart Postfix, one warm-up run of 64
# messages (not recorded), then $REPS runs.
variant() {
    local label=$1 milters=$2 pids=$3 rep
    log "== Postfix with: $label"
    postconf -c "$PF/conf" -e "smtpd_milters = $milters"
    postfix_stop 2>/dev/null || true
    postfix_start
    local saved=$N
    N=$SESSIONS
    run_postfix "warm-up: $label" "$pids" 0 2>/dev/null
    sed -i '$d' "$BENCH_RESULTS"
    N=$saved
    for rep in $(seq "$REPS"); do
        run_postfix "$label" "$pids" "$rep"
    done
}

start smtp-sink smtp-sink -u postfix 127.0.0.1:2526 1024
wait_for smtp-sink 20 listening 2526

variant "no milter" "" ""
# What any milter costs Postfix: the empty one (when built), then ours
# with the client skipped (ignore_hosts: protocol, buffering, our header).
EMPTY=$(empty_milter_bin)
if [ -n "$EMPTY" ]; then
    start empty-milter "$EMPTY" inet:127.0.0.1:8899
    wait_for empty-milter 20 listening 8899
    variant "empty milter (TCP)" "inet:127.0.0.1:8899" "$PID_empty_milter"
    stop_pid "$PID_empty_milter"
fi
start_dmarc_milter dmarc-milter-ignored inet:127.0.0.1:8896
variant "dmarc-milter, client ignored (TCP)" "inet:127.0.0.1:8896" "$PID_dmarc_milter_ignored"
stop_pid "$PID_dmarc_milter_ignored"
variant "dmarc-milter (TCP)" "inet:127.0.0.1:8895" "$PID_dmarc_milter"
variant "dmarc-milter (UNIX socket)" "unix:$WORK/dmarc-milter.sock" "$PID_dmarc_milter_unix"
stop_pid "$PID_dmarc_milter"
stop_pid "$PID_dmarc_milter_unix"

start_opendkim inet
start_opendmarc inet
variant "OpenDKIM → OpenDMARC (TCP)" "inet:127.0.0.1:8891, inet:127.0.0.1:8893" "$PID_opendkim $PID_opendmarc"
stop_pid "$PID_opendkim"
stop_pid "$PID_opendmarc"
start_opendkim unix
start_opendmarc unix
variant "OpenDKIM → OpenDMARC (UNIX sockets)" "unix:$WORK/opendkim.sock, unix:$WORK/opendmarc.sock" "$PID_opendkim $PID_opendmarc"
stop_pid "$PID_opendkim"
stop_pid "$PID_opendmarc"
# Again at the end: how much the machine drifted meanwhile.
variant "no milter" "" ""
postfix_stop

# What the milters did to the last delivered message is in the maillog;
# the verdicts, in the milters' own logs.
log "dmarc-milter verdicts: $(grep -c 'dmarc=pass' "$WORK/dmarc-milter.log" || true) pass (TCP), $(grep -c 'dmarc=pass' "$WORK/dmarc-milter-unix.log" || true) pass (UNIX)"
python3 "$REPO/bench/report.py" tables "$BENCH_RESULTS"
