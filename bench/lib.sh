# bench/lib.sh: what milter-bench.sh and postfix-bench.sh share. Sourced,
# not run. Every process started here is recorded and stopped by `cleanup`
# (by its own pid); everything listens on 127.0.0.1 inside a private
# network namespace (only `lo`), with a private mount namespace in which
# /etc/resolv.conf says `nameserver 127.0.0.1` (the machine's file is never
# written: the bind mount disappears with the namespace).
#
# Inside the namespace the ports are fixed (nothing else lives there):
#   53    unbound (stub for example.com → zone-dns), for OpenDKIM/OpenDMARC
#   8891  OpenDKIM          8893  OpenDMARC
#   8895  dmarc-milter      8896  dmarc-milter, client ignored (ignore_hosts)
#   8899  empty milter (indymilter, when built)
#   2525  Postfix smtpd     2526  smtp-sink

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=$CARGO_TARGET_DIR/release
DATA=$REPO/crates/dmarc-verifier/benches/data
AUTHSERV_ID=mx.bench
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes ------------------------------------------------------------

PIDS=()
# Runs a command in the background, output to $WORK/NAME.log; records its
# pid under NAME (variable PID_NAME).
start() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    printf -v "PID_${name//-/_}" '%s' "$pid"
    log "started $name (pid $pid): $*"
}

# Stops one recorded process: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

CLEANUPS=()
cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[i]}" || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    if [ -n "${WORK:-}" ] && [ -z "${BENCH_KEEP:-}" ]; then
        rm -rf "$WORK"
    fi
    exit "$status"
}

# Waits (at most $2 seconds, default 20) until the command "$3..." succeeds.
wait_for() {
    local what=$1 limit=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for $what"
        sleep 0.05
    done
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the namespace -------------------------------------------------------

# Runs the calling script again inside a private network and mount
# namespace, bounded by BENCH_TIMEOUT seconds (SIGTERM, then its trap
# cleans up), and returns its exit status. Everything it starts runs at
# nice BENCH_NICE (default -10), so that other work on the machine
# disturbs the figures less (the busy share before each run is recorded). Call as
# `in_namespace "$0" "$@"` from outside, before anything starts.
in_namespace() {
    [ "$(id -u)" = 0 ] || die "needs root (a private network namespace, Postfix, OpenDKIM)"
    command -v unshare >/dev/null || die "needs unshare (util-linux)"
    local script=$1; shift
    timeout --signal=TERM --kill-after=30 "${BENCH_TIMEOUT:-3600}" \
        nice -n "${BENCH_NICE:--10}" unshare --mount --net --propagation private \
        env BENCH_IN_NAMESPACE=1 bash "$script" "$@"
}

# Inside the namespace: lo up, a work directory, the trap, and
# /etc/resolv.conf → 127.0.0.1 (seen by this namespace only).
setup_namespace() {
    [ -n "${BENCH_IN_NAMESPACE:-}" ] || die "setup_namespace outside the namespace"
    ip link set lo up
    WORK=$(mktemp -d /tmp/dmarc-bench.XXXXXX)
    chmod 0755 "$WORK"
    trap cleanup EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    printf 'nameserver 127.0.0.1\noptions attempts:2 timeout:2\n' >"$WORK/resolv.conf"
    mount --bind "$WORK/resolv.conf" /etc/resolv.conf
    log "work directory $WORK (network namespace: $(ip -o link | awk -F': ' '{print $2}' | tr '\n' ' '))"
}

# --- build ---------------------------------------------------------------

# Release binaries: dmarc-milter, and the examples zone-dns, milter-load,
# dns-cold. The indymilter empty milter when crates/dmarc-milter has it.
build() {
    log "building release binaries in $CARGO_TARGET_DIR"
    (cd "$REPO" &&
        cargo build --release --ignore-rust-version -p dmarc-milter &&
        cargo build --release --ignore-rust-version -p dmarc-milter-workspace \
            --example zone-dns --example milter-load --example dns-cold)
    if [ -f "$REPO/crates/dmarc-milter/examples/empty-milter.rs" ]; then
        (cd "$REPO" && cargo build --release --ignore-rust-version -p dmarc-milter --example empty-milter)
    fi
}

# The empty milter: EMPTY_MILTER if set, else the example if built.
empty_milter_bin() {
    if [ -n "${EMPTY_MILTER:-}" ]; then
        echo "$EMPTY_MILTER"
    elif [ -x "$BIN/examples/empty-milter" ] &&
        [ -f "$REPO/crates/dmarc-milter/examples/empty-milter.rs" ]; then
        echo "$BIN/examples/empty-milter"
    fi
}

# --- DNS -----------------------------------------------------------------

# zone-dns serving $1; sets ZONE_PORT.
start_zone_dns() {
    local zone=$1
    rm -f "$WORK/zone-dns.port"
    start zone-dns "$BIN/examples/zone-dns" "$zone" --port-file "$WORK/zone-dns.port"
    wait_for "zone-dns" 20 test -s "$WORK/zone-dns.port"
    ZONE_PORT=$(cat "$WORK/zone-dns.port")
    log "zone-dns on 127.0.0.1:$ZONE_PORT serving $zone"
}

# unbound on 127.0.0.1:53: example.com from zone-dns (stub), every other
# name refused; nothing can leave the namespace anyway.
start_unbound() {
    command -v unbound >/dev/null || die "unbound not installed (apt-get install unbound)"
    cat >"$WORK/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: 53
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$WORK"
    pidfile: "$WORK/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    module-config: "iterator"
    qname-minimisation: no
    local-zone: "." refuse
    local-zone: "example.com." transparent
stub-zone:
    name: "example.com."
    stub-addr: 127.0.0.1@$ZONE_PORT
EOF
    unbound-checkconf "$WORK/unbound.conf" >/dev/null
    start unbound unbound -d -c "$WORK/unbound.conf"
    wait_for "unbound" 20 dig +time=1 +tries=1 +short @127.0.0.1 _dmarc.example.com TXT
    log "unbound on 127.0.0.1:53: $(dig +short @127.0.0.1 _dmarc.example.com TXT)"
}

# --- milters -------------------------------------------------------------

# dmarc-milter on socket $2 (inet:… or unix:…), config written to
# $WORK/$1.toml; extra TOML lines in $3. Sets PID_<name>.
start_dmarc_milter() {
    local name=$1 socket=$2 extra=${3:-}
    cat >"$WORK/$name.toml" <<EOF
socket = "$socket"
authserv_id = "$AUTHSERV_ID"
nameservers = ["127.0.0.1:$ZONE_PORT"]
log_level = "info"
$extra
EOF
    "$BIN/dmarc-milter" --config "$WORK/$name.toml" --check-config >/dev/null
    start "$name" "$BIN/dmarc-milter" --config "$WORK/$name.toml"
    wait_socket "$name" "$socket"
}

wait_socket() {
    local name=$1 socket=$2
    case $socket in
        inet:*) wait_for "$name" 20 listening "${socket##*:}" ;;
        unix:*) wait_for "$name" 20 test -S "${socket#unix:}" ;;
    esac
}

# OpenDKIM, verifying only, on 127.0.0.1:8891, or on the UNIX socket
# $WORK/opendkim.sock with `start_opendkim unix`.
start_opendkim() {
    local socket=inet:8891@127.0.0.1
    [ "${1:-inet}" = unix ] && socket=local:$WORK/opendkim.sock
    command -v opendkim >/dev/null || die "opendkim not installed (apt-get install opendkim)"
    echo 192.0.2.255 >"$WORK/opendkim-internal-hosts"
    cat >"$WORK/opendkim.conf" <<EOF
Mode                v
Socket              $socket
PidFile             $WORK/opendkim.pid
AuthservID          $AUTHSERV_ID
Nameservers         127.0.0.1
QueryCache          yes
MinimumKeyBits      1024
InternalHosts       refile:$WORK/opendkim-internal-hosts
Syslog              yes
UMask               ${PEER_UMASK:-007}
EOF
    start opendkim opendkim -f -x "$WORK/opendkim.conf"
    case $socket in
        inet:*) wait_for opendkim 20 listening 8891 ;;
        *) wait_for opendkim 20 test -S "$WORK/opendkim.sock" ;;
    esac
}

# OpenDMARC on 127.0.0.1:8893 (or $WORK/opendmarc.sock with
# `start_opendmarc unix`): SPF checked itself, trusts A-R of our
# authserv-id (what OpenDKIM adds before it in the chain).
start_opendmarc() {
    local socket=inet:8893@127.0.0.1
    [ "${1:-inet}" = unix ] && socket=local:$WORK/opendmarc.sock
    command -v opendmarc >/dev/null || die "opendmarc not installed (apt-get install opendmarc)"
    echo 192.0.2.255 >"$WORK/opendmarc-ignore-hosts"
    cat >"$WORK/opendmarc.conf" <<EOF
Socket                      $socket
PidFile                     $WORK/opendmarc.pid
AuthservID                  $AUTHSERV_ID
TrustedAuthservIDs          $AUTHSERV_ID
IgnoreAuthenticatedClients  true
IgnoreHosts                 $WORK/opendmarc-ignore-hosts
SPFSelfValidate             true
SPFIgnoreResults            true
RejectFailures              true
FailureReports              false
RequiredHeaders             false
PublicSuffixList            /usr/share/publicsuffix/public_suffix_list.dat
Syslog                      true
UMask                       ${PEER_UMASK:-007}
EOF
    start opendmarc opendmarc -f -c "$WORK/opendmarc.conf"
    case $socket in
        inet:*) wait_for opendmarc 20 listening 8893 ;;
        *) wait_for opendmarc 20 test -S "$WORK/opendmarc.sock" ;;
    esac
}

# --- /proc ---------------------------------------------------------------

# CPU time of a process (all threads), in ticks.
cpu_ticks() {
    local stat
    read -r stat <"/proc/$1/stat" || { echo 0; return; }
    stat=${stat##*) }
    # Fields after ")": state is 1st, utime 12th, stime 13th.
    set -- $stat
    echo $((${12} + ${13}))
}

# The machine's CPU jiffies since boot: "BUSY TOTAL" (all cores; idle and
# iowait are not busy).
machine_jiffies() {
    local cpu user nice system idle iowait irq softirq steal rest
    read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# Busy share of the whole machine between two machine_jiffies readings, %.
busy_percent() {
    local b0 t0 b1 t1
    read -r b0 t0 <<<"$1"
    read -r b1 t1 <<<"$2"
    awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }'
}

# The machine's busy share over half a second, %: what else is running
# (nothing of ours is, between runs).
background_busy() {
    local a
    a=$(machine_jiffies)
    sleep 0.5
    busy_percent "$a" "$(machine_jiffies)"
}

# Waits (at most BENCH_QUIET_WAIT seconds, default 10) until the machine
# is idle but for BENCH_QUIET_PERCENT % (default 10); sets BACKGROUND_BUSY
# to the last reading, recorded with each run.
quiet_gate() {
    local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-10}))
    while BACKGROUND_BUSY=$(background_busy) &&
        [ "$BACKGROUND_BUSY" -gt "${BENCH_QUIET_PERCENT:-10}" ] && [ "$SECONDS" -lt "$deadline" ]; do
        :
    done
}

# One JSON line describing the machine and what was measured.
meta_line() {
    local commit dirty
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$REPO" status --short 2>/dev/null | { grep -v '^??' || true; } | awk '{print $2}' | tr '\n' ' ')
    printf '{"bench":"meta","commit":"%s","modified":"%s","nproc":%d,"cpu":"%s","mem_gib":%s,"kernel":"%s","rustc":"%s","postfix":"%s","opendkim":"%s","opendmarc":"%s","unbound":"%s","loadavg":"%s","date":"%s"}\n' \
        "$commit" "$dirty" "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
        "$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)" \
        "$(rustc --version 2>/dev/null | cut -d' ' -f2)" \
        "$(postconf -d -h mail_version 2>/dev/null || echo none)" \
        "$(opendkim -V 2>/dev/null | head -1 | awk '{print $NF}' || echo none)" \
        "$(opendmarc -V 2>/dev/null | head -1 | awk '{print $NF}' || echo none)" \
        "$(unbound -V 2>/dev/null | awk '/^Version/ {print $2}' || echo none)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(date -u +%Y-%m-%dT%H:%MZ)"
}

# A field of /proc/PID/status in KiB (VmRSS, VmHWM).
status_kib() {
    local key value rest
    while read -r key value rest; do
        if [ "$key" = "$2:" ]; then
            echo "$value"
            return
        fi
    done <"/proc/$1/status"
    echo 0
}
