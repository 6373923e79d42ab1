//! Prometheus metrics: what the milter did with each message, how DNS
//! behaves, and how the report pipeline keeps up, served at `/metrics`
//! on `metrics_listen` in the Prometheus text format (version 0.0.4).
//!
//! Built on the official `prometheus-client` crate: a [`Registry`] per
//! running milter (no global state, so tests run several), label sets
//! filled only from the closed sets of the types that take them (a result
//! word, a disposition, a record type: never a domain name or an address),
//! and the exposition written by the crate's encoder. The mail path only
//! increments counters; what is already counted elsewhere (the report
//! pipeline's [`dmarc_report::counters::ReportCounters`], the
//! [`Counters`](crate::Counters), the messages in flight, the DNS cache
//! sizes) is read at scrape time by a collector, at no cost to mail.
//!
//! Metrics are recorded only when `metrics_listen` is set. Every metric,
//! its labels and what it counts are listed in the crate's README
//! ("Monitoring"), with the dashboard and alerts of `contrib/`.

mod server;

pub(crate) use server::serve;
pub use server::MetricsListener;

use crate::{decision::Skip, state::Shared};
use dmarc_report::store::{message_counts, MessageCounts, StoreLocation};
use dmarc_verifier::{
    dns::{zone::RecordType, CacheName, DnsOutcome},
    Disposition, DkimResult, DmarcResult, OverrideReason, SpfResult,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
        MetricType,
    },
    registry::{Registry, Unit},
};
use std::{
    sync::{atomic::Ordering, Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};

/// A label set: label names and values, both from closed sets.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// A family of histograms built with the same buckets.
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Bucket bounds of DNS question durations, in seconds: from a cached
/// resolver's answer (under a millisecond) to `dns_timeout` × attempts.
const DNS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of verification durations, in seconds: a warm cache
/// answers in tens of microseconds, a cold one waits for DNS.
const VERIFICATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn dns_histogram() -> Histogram {
    Histogram::new(DNS_BUCKETS)
}

/// The override reasons a message can be labelled with (RFC 9990
/// `PolicyOverrideType` words, and `none`).
pub const OVERRIDE_REASONS: [&str; 7] = [
    "none",
    "sampled_out",
    "policy_test_mode",
    "local_policy",
    "trusted_forwarder",
    "mailing_list",
    "other",
];

/// The label value of an override reason: its RFC 9990 word when it is
/// one of [`OVERRIDE_REASONS`], else `other`.
fn override_label(reason: Option<OverrideReason>) -> &'static str {
    let Some(reason) = reason else {
        return "none";
    };
    let word = reason.as_str();
    OVERRIDE_REASONS
        .iter()
        .find(|known| **known == word)
        .copied()
        .unwrap_or("other")
}

fn bool_label(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// What one message came to, for [`Metrics::message`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageOutcome {
    /// The DMARC result.
    pub(crate) dmarc: DmarcResult,
    /// The disposition the policy asked for (before `dry_run`).
    pub(crate) disposition: Disposition,
    /// Why the disposition differs from the published policy.
    pub(crate) override_reason: Option<OverrideReason>,
    /// Whether `dry_run` was on.
    pub(crate) dry_run: bool,
}

/// The metrics recorded on the mail path (see the module documentation).
#[derive(Debug)]
pub struct Metrics {
    messages: Family<Labels<4>, Counter>,
    spf: Family<Labels<1>, Counter>,
    dkim: Family<Labels<1>, Counter>,
    skipped: Family<Labels<1>, Counter>,
    forged_removed: Counter,
    dns_questions: Family<Labels<2>, Counter>,
    dns_duration: Histograms<2>,
    cache_lookups: Family<Labels<2>, Counter>,
    cache_evictions: Family<Labels<1>, Counter>,
    verification: Histogram,
    connections: Counter,
    connections_open: Gauge,
    errors: Family<Labels<1>, Counter>,
    reloads: Family<Labels<1>, Counter>,
    last_reload: Gauge,
    shadow_differences: Counter,
    /// The series of the most frequent events, resolved once (a family
    /// hashes its label set at every increment): each handle is the
    /// family's own counter.
    spf_by_result: Vec<(SpfResult, Counter)>,
    dkim_by_result: Vec<(Option<DkimResult>, Counter)>,
    lookups_by_cache: Vec<((CacheName, bool), Counter)>,
}

impl Default for Metrics {
    /// The metrics, with the series of the small closed sets (SPF and DKIM
    /// results, skip reasons, errors, reloads) created at 0, so that a
    /// dashboard shows them before the first event.
    fn default() -> Self {
        let metrics = Metrics::empty();
        let mut metrics = metrics;
        for result in [
            SpfResult::Pass,
            SpfResult::Fail,
            SpfResult::SoftFail,
            SpfResult::Neutral,
            SpfResult::None,
            SpfResult::TempError,
            SpfResult::PermError,
        ] {
            let counter = metrics
                .spf
                .get_or_create_owned(&[("result", result.as_str())]);
            metrics.spf_by_result.push((result, counter));
        }
        let dkim = [
            DkimResult::Pass,
            DkimResult::Fail,
            DkimResult::Neutral,
            DkimResult::Policy,
            DkimResult::TempError,
            DkimResult::PermError,
        ];
        for result in dkim.map(Some).into_iter().chain([None]) {
            let word = result.map_or("none", DkimResult::as_str);
            let counter = metrics.dkim.get_or_create_owned(&[("result", word)]);
            metrics.dkim_by_result.push((result, counter));
        }
        for cache in CacheName::ALL {
            for hit in [true, false] {
                let result = if hit { "hit" } else { "miss" };
                let counter = metrics
                    .cache_lookups
                    .get_or_create_owned(&[("cache", cache.as_str()), ("result", result)]);
                metrics.lookups_by_cache.push(((cache, hit), counter));
            }
        }
        for skip in [Skip::Authenticated, Skip::IgnoredHost, Skip::IgnoredFrom] {
            let _ = metrics.skipped.get_or_create(&[("reason", skip.label())]);
        }
        for kind in [ErrorKind::Protocol, ErrorKind::Internal] {
            let _ = metrics.errors.get_or_create(&[("kind", kind.as_str())]);
        }
        for cache in CacheName::ALL {
            let _ = metrics
                .cache_evictions
                .get_or_create(&[("cache", cache.as_str())]);
        }
        for result in ["ok", "failed"] {
            let _ = metrics.reloads.get_or_create(&[("result", result)]);
        }
        metrics
    }
}

impl Metrics {
    fn empty() -> Metrics {
        Metrics {
            messages: Family::default(),
            spf: Family::default(),
            dkim: Family::default(),
            skipped: Family::default(),
            forged_removed: Counter::default(),
            dns_questions: Family::default(),
            dns_duration: Family::new_with_constructor(dns_histogram),
            cache_lookups: Family::default(),
            cache_evictions: Family::default(),
            verification: Histogram::new(VERIFICATION_BUCKETS),
            connections: Counter::default(),
            connections_open: Gauge::default(),
            errors: Family::default(),
            reloads: Family::default(),
            last_reload: Gauge::default(),
            shadow_differences: Counter::default(),
            spf_by_result: Vec::new(),
            dkim_by_result: Vec::new(),
            lookups_by_cache: Vec::new(),
        }
    }
}

impl Metrics {
    /// One message decided (verified, too large to verify, or refused for
    /// too many forged Authentication-Results).
    pub(crate) fn message(&self, outcome: &MessageOutcome) {
        self.messages
            .get_or_create(&[
                ("dmarc", outcome.dmarc.as_str()),
                ("disposition", outcome.disposition.as_str()),
                ("override", override_label(outcome.override_reason)),
                ("dry_run", bool_label(outcome.dry_run)),
            ])
            .inc();
    }

    /// The SPF result of a verified message.
    pub(crate) fn spf(&self, result: SpfResult) {
        match self.spf_by_result.iter().find(|(r, _)| *r == result) {
            Some((_, counter)) => counter.inc(),
            None => self.spf.get_or_create(&[("result", result.as_str())]).inc(),
        };
    }

    /// The result of one DKIM signature, or `None` for a message without
    /// any (counted as `none`).
    pub(crate) fn dkim(&self, result: Option<DkimResult>) {
        match self.dkim_by_result.iter().find(|(r, _)| *r == result) {
            Some((_, counter)) => counter.inc(),
            None => {
                let word = result.map_or("none", DkimResult::as_str);
                self.dkim.get_or_create(&[("result", word)]).inc()
            }
        };
    }

    /// A message not checked.
    pub(crate) fn skipped(&self, skip: Skip) {
        self.skipped
            .get_or_create(&[("reason", skip.label())])
            .inc();
    }

    /// Forged Authentication-Results fields deleted from a delivered
    /// message.
    pub(crate) fn forged_removed(&self, fields: usize) {
        self.forged_removed
            .inc_by(u64::try_from(fields).unwrap_or(u64::MAX));
    }

    /// The time from the end of the message to the verdict.
    pub(crate) fn verification(&self, elapsed: Duration) {
        self.verification.observe(elapsed.as_secs_f64());
    }

    /// Shadow discovery disagreed for `count` Author Domains of a message.
    pub(crate) fn shadow_differences(&self, count: usize) {
        if count > 0 {
            self.shadow_differences
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    /// An MTA connection opened; [`Metrics::connection_closed`] when it
    /// ends.
    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
        self.connections_open.inc();
    }

    /// An MTA connection ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A command answered with tempfail: `protocol` when the MTA broke the
    /// protocol, `internal` when we could not provide service.
    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&[("kind", kind.as_str())]).inc();
    }

    /// A reload of the configuration, applied or refused.
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&[("result", result)]).inc();
        if ok {
            self.config_loaded();
        }
    }

    /// Marks the configuration as loaded now.
    pub(crate) fn config_loaded(&self) {
        let now = crate::reporting::unix_now();
        self.last_reload.set(now);
    }

    /// One DNS question and how it ended.
    pub(crate) fn dns_question(&self, rtype: RecordType, outcome: DnsOutcome, elapsed: Duration) {
        let labels = [("type", rtype.as_str()), ("outcome", outcome.as_str())];
        self.dns_questions.get_or_create(&labels).inc();
        self.dns_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// One lookup in a shared DNS cache.
    pub(crate) fn cache_lookup(&self, cache: CacheName, hit: bool) {
        match self
            .lookups_by_cache
            .iter()
            .find(|(k, _)| *k == (cache, hit))
        {
            Some((_, counter)) => counter.inc(),
            None => {
                let result = if hit { "hit" } else { "miss" };
                self.cache_lookups
                    .get_or_create(&[("cache", cache.as_str()), ("result", result)])
                    .inc()
            }
        };
    }

    /// An entry evicted from a full DNS cache.
    pub(crate) fn cache_eviction(&self, cache: CacheName) {
        self.cache_evictions
            .get_or_create(&[("cache", cache.as_str())])
            .inc();
    }

    /// The registry to scrape: these metrics, what `shared` counts
    /// elsewhere and the report mails of `outbox`, read at scrape time. The
    /// collector holds `shared` weakly: a scrape after the milter stopped
    /// shows only these.
    pub(crate) fn registry(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        outbox: Option<&Arc<Outbox>>,
    ) -> Registry {
        let mut registry = Registry::with_prefix("dmarc_milter");
        let m = self;
        registry.register(
            "messages",
            "Messages decided, by DMARC result, the disposition the policy asked for (before dry_run), the override reason and whether dry_run was on",
            m.messages.clone(),
        );
        registry.register(
            "spf_results",
            "SPF results of verified messages",
            m.spf.clone(),
        );
        registry.register(
            "dkim_results",
            "DKIM results, one per signature checked (none: a message without signatures)",
            m.dkim.clone(),
        );
        registry.register(
            "messages_skipped",
            "Messages not checked, by reason (authenticated, ignored_client, ignored_from)",
            m.skipped.clone(),
        );
        registry.register(
            "forged_auth_results_removed",
            "Incoming Authentication-Results fields claiming our authserv-id (or an alias) deleted",
            m.forged_removed.clone(),
        );
        registry.register(
            "dns_questions",
            "DNS questions sent to the resolver (not answered from our cache), by record type and outcome",
            m.dns_questions.clone(),
        );
        registry.register_with_unit(
            "dns_question_duration",
            "Time to the answer of each DNS question (all of the resolver's tries), by record type and outcome",
            Unit::Seconds,
            m.dns_duration.clone(),
        );
        registry.register(
            "dns_cache_lookups",
            "Lookups in the shared DNS caches, by cache and result (hit, miss)",
            m.cache_lookups.clone(),
        );
        registry.register(
            "dns_cache_evictions",
            "Entries evicted from a full DNS cache (not expiries)",
            m.cache_evictions.clone(),
        );
        registry.register_with_unit(
            "verification_duration",
            "Time from the end of a message to its verdict (verified messages)",
            Unit::Seconds,
            m.verification.clone(),
        );
        registry.register(
            "connections",
            "MTA connections accepted",
            m.connections.clone(),
        );
        registry.register(
            "connections_open",
            "MTA connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "errors",
            "Commands answered with tempfail: protocol (the MTA broke the milter protocol) or internal (we could not provide service)",
            m.errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Reloads of the configuration file (SIGHUP), by result (ok, failed)",
            m.reloads.clone(),
        );
        registry.register(
            "config_last_load_timestamp_seconds",
            "When the configuration in force was loaded (Unix time)",
            m.last_reload.clone(),
        );
        registry.register(
            "shadow_discovery_differences",
            "Author Domains for which shadow discovery (the other policy discovery method) reached another result",
            m.shadow_differences.clone(),
        );
        registry.register_collector(Box::new(StateCollector {
            shared: Arc::downgrade(shared),
        }));
        if let Some(outbox) = outbox {
            registry.register_collector(Box::new(OutboxCollector(Arc::clone(outbox))));
        }
        registry
    }
}

/// The kinds of errors counted by [`Metrics::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The MTA broke the milter protocol.
    Protocol,
    /// We could not provide service (an action that could not be sent).
    Internal,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The version of mail-auth this build links (from Cargo.lock, by
/// build.rs).
const MAIL_AUTH_VERSION: &str = env!("DMARC_MILTER_MAIL_AUTH_VERSION");

/// Reads, at scrape time, what the milter counts without metrics: the
/// messages in flight, the DNS cache sizes of the verifier in force, the
/// [`Counters`](crate::Counters) and the report pipeline's counters; and
/// the build information.
#[derive(Debug)]
struct StateCollector {
    shared: Weak<Shared>,
}

/// Writes one metric without labels.
fn plain(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let help = sentence(help);
    let metric_encoder = encoder.encode_descriptor(name, &help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// `help` ending with a full stop, as the registry writes the help of the
/// metrics registered with it.
fn sentence(help: &str) -> std::borrow::Cow<'_, str> {
    if help.ends_with('.') {
        std::borrow::Cow::Borrowed(help)
    } else {
        std::borrow::Cow::Owned(format!("{help}."))
    }
}

/// Writes one metric with a label set per value.
fn labelled<M: EncodeMetric, const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: &[(Labels<N>, M)],
) -> Result<(), std::fmt::Error> {
    let help = sentence(help);
    let mut metric_encoder = encoder.encode_descriptor(name, &help, None, metric_type)?;
    for (labels, metric) in values {
        metric.encode(metric_encoder.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        labelled(
            &mut encoder,
            "build_info",
            "The version of dmarc-milter and of the mail-auth library it links; always 1",
            MetricType::Gauge,
            &[(
                [
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("mail_auth_version", MAIL_AUTH_VERSION),
                ],
                ConstGauge::new(1i64),
            )],
        )?;
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        plain(
            &mut encoder,
            "messages_in_flight",
            "Messages between MAIL and their end now",
            &ConstGauge::new(i64::try_from(shared.inflight()).unwrap_or(i64::MAX)),
        )?;
        let entries: Vec<(Labels<1>, ConstGauge<i64>)> = shared
            .active()
            .verifier()
            .dns_cache_entries()
            .into_iter()
            .map(|(cache, n)| {
                (
                    [("cache", cache.as_str())],
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        labelled(
            &mut encoder,
            "dns_cache_entries",
            "Entries in each shared DNS cache now (an answer over 1 KiB counts once per KiB started)",
            MetricType::Gauge,
            &entries,
        )?;
        let started = &shared.started;
        plain(
            &mut encoder,
            "connections_limit",
            "MTA connections served at once, at most (max_connections).",
            &ConstGauge::new(i64::try_from(started.max_connections).unwrap_or(i64::MAX)),
        )?;
        if let Some(reporting) = &started.reporting {
            plain(
                &mut encoder,
                "report_queue_limit_records",
                "Verdicts the report queue holds, at most (report_queue_size).",
                &ConstGauge::new(i64::try_from(reporting.queue_size).unwrap_or(i64::MAX)),
            )?;
            plain(
                &mut encoder,
                "report_queue_limit_bytes",
                "Memory the report queue holds, at most (report_queue_memory).",
                &ConstGauge::new(i64::try_from(reporting.limits.queue_memory).unwrap_or(i64::MAX)),
            )?;
        }
        let counters = &shared.counters;
        plain(
            &mut encoder,
            "forged_auth_results_refused",
            "Messages refused (550) for holding more forged Authentication-Results than max_forged_authentication_results",
            &counter(counters.forged_auth_results_refused.load(Ordering::Relaxed)),
        )?;
        report_metrics(&mut encoder, &counters.report.snapshot())
    }
}

/// The report pipeline's counters (see
/// [`dmarc_report::counters::ReportCounters`] for each).
fn report_metrics(
    encoder: &mut DescriptorEncoder,
    r: &dmarc_report::counters::ReportCountersSnapshot,
) -> Result<(), std::fmt::Error> {
    let waiting = r
        .records_queued
        .saturating_sub(r.records_committed)
        .saturating_sub(r.records_abandoned);
    plain(
        encoder,
        "report_queue_records",
        "Verdicts queued for the report store and not yet written",
        &ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX)),
    )?;
    plain(
        encoder,
        "report_queue_bytes",
        "Memory of the verdicts waiting in the report queue (report_queue_memory bounds it)",
        &ConstGauge::new(i64::try_from(r.queue_bytes).unwrap_or(i64::MAX)),
    )?;
    let counters: [(&str, &str, u64); 5] = [
        (
            "report_records_queued",
            "Verdict records accepted into the report queue",
            r.records_queued,
        ),
        (
            "report_records_written",
            "Verdict records committed to the report store",
            r.records_committed,
        ),
        (
            "report_records_dropped",
            "Verdict records dropped: the report queue was full (report_queue_size, report_queue_memory)",
            r.records_dropped,
        ),
        (
            "report_records_abandoned",
            "Verdict records given up at the shutdown deadline",
            r.records_abandoned,
        ),
        (
            "report_destinations_dropped",
            "rua/ruf destinations left out of a record (over report_max_rua/report_max_ruf, repeated or unusable)",
            r.destinations_dropped,
        ),
    ];
    for (name, help, value) in counters {
        plain(encoder, name, help, &counter(value))?;
    }
    labelled(
        encoder,
        "report_store_errors",
        "Report store failures, by operation: open (reporting degraded until it opens) or write (retried)",
        MetricType::Counter,
        &[
            ([("operation", "open")], counter(r.store_open_failures)),
            ([("operation", "write")], counter(r.store_write_failures)),
        ],
    )?;
    labelled(
        encoder,
        "failure_reports",
        "Failure reports (RFC 9991) by stage: queued (a message handed to the report thread), built, stored (queued for delivery by `dmarc-milter report --deliver-only`), store_failed",
        MetricType::Counter,
        &[
            ([("stage", "queued")], counter(r.failure_jobs_queued)),
            ([("stage", "built")], counter(r.failure_reports_built)),
            ([("stage", "stored")], counter(r.failure_reports_stored)),
            (
                [("stage", "store_failed")],
                counter(r.failure_reports_store_failed),
            ),
        ],
    )?;
    labelled(
        encoder,
        "failure_reports_suppressed",
        "Failure reports not sent, by reason: excluded (report_exclude_domains), limit_recipient, limit_domain, limit_total (the hourly limits), queue_full, too_large (over a destination's !size)",
        MetricType::Counter,
        &[
            ([("reason", "excluded")], counter(r.failure_reports_excluded)),
            (
                [("reason", "limit_recipient")],
                counter(r.failure_reports_limited_recipient),
            ),
            (
                [("reason", "limit_domain")],
                counter(r.failure_reports_limited_domain),
            ),
            (
                [("reason", "limit_total")],
                counter(r.failure_reports_limited_total),
            ),
            ([("reason", "queue_full")], counter(r.failure_jobs_dropped)),
            ([("reason", "too_large")], counter(r.failure_reports_too_large)),
        ],
    )?;
    plain(
        encoder,
        "failure_reports_truncated",
        "Failure reports whose sample was cut to fit failure_report_max_size",
        &counter(r.failure_reports_truncated),
    )
}

/// At most one count of the report mails per this interval, whatever the
/// scrape rate.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(10);

/// How long a scrape waits for a fresh count (else it shows the last one).
const OUTBOX_WAIT: Duration = Duration::from_secs(2);

/// The report mails in the store by kind and state, counted at scrape
/// time: their delivery is done by `dmarc-milter report` in another
/// process (or on another host sharing a PostgreSQL store), so the store
/// is what knows what was sent. The count reads the store without
/// changing it ([`message_counts`]), on a thread of its own, one at a
/// time and at most every [`OUTBOX_INTERVAL`].
#[derive(Debug)]
pub(crate) struct Outbox {
    location: StoreLocation,
    state: Mutex<OutboxState>,
}

#[derive(Debug, Default)]
struct OutboxState {
    /// When the last count started.
    started: Option<Instant>,
    /// A count is running.
    running: bool,
    /// The last count; `None` before the first or after a failure.
    counts: Option<MessageCounts>,
}

impl Outbox {
    pub(crate) fn new(location: StoreLocation) -> Outbox {
        Outbox {
            location,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts again unless a count is running or the last one is recent;
    /// waits for it at most [`OUTBOX_WAIT`].
    pub(crate) async fn refresh(self: &Arc<Self>) {
        {
            let mut state = self.lock();
            if state.running
                || state
                    .started
                    .is_some_and(|started| started.elapsed() < OUTBOX_INTERVAL)
            {
                return;
            }
            state.running = true;
            state.started = Some(Instant::now());
        }
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let outbox = Arc::clone(self);
        // The PostgreSQL client must not run on the async runtime.
        let spawned = std::thread::Builder::new()
            .name("dmarc-metrics-store".to_string())
            .spawn(move || {
                let counts = match message_counts(&outbox.location) {
                    Ok(counts) => Some(counts),
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics: cannot count the report mails");
                        None
                    }
                };
                let mut state = outbox.lock();
                state.counts = counts;
                state.running = false;
                drop(state);
                let _ = done.send(());
            });
        if spawned.is_err() {
            self.lock().running = false;
            return;
        }
        let _ = tokio::time::timeout(OUTBOX_WAIT, finished).await;
    }
}

/// Writes the last count of [`Outbox`].
#[derive(Debug)]
struct OutboxCollector(Arc<Outbox>);

impl Collector for OutboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(counts) = self.0.lock().counts else {
            return Ok(());
        };
        let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        let mut values = Vec::new();
        for (kind, of_kind) in [("aggregate", counts.aggregate), ("failure", counts.failure)] {
            for (state, n) in [
                ("pending", of_kind.pending),
                ("sent", of_kind.sent),
                ("abandoned", of_kind.abandoned),
            ] {
                values.push(([("kind", kind), ("state", state)], gauge(n)));
            }
        }
        labelled(
            &mut encoder,
            "report_messages",
            "Report mails in the store by kind (aggregate, failure) and state: pending (waiting for `dmarc-milter report`), sent (kept for report_retention_days), abandoned; counted at most every 10 s",
            MetricType::Gauge,
            &values,
        )
    }
}
