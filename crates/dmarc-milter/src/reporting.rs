//! DMARC reporting in the daemon: every verdict is recorded in the report
//! store (through a bounded queue and one writer thread, so mail never
//! waits for the database), failure reports are handed to a thread of
//! their own, and `dmarc-milter report` turns the store into RFC 9990
//! aggregate reports and delivers what is pending.
//!
//! # At the end of a message
//!
//! `Reporting::record` is all the end of a message does for reporting,
//! and it is bounded whatever the message and its domain's DNS: it makes
//! the records (fields capped, destinations deduplicated and capped), then,
//! for a failure report, checks every limit **before** any work (failure
//! reports on, the policy domain not excluded, the overall, per-domain and
//! per-recipient hourly limits), and only then copies at most
//! `failure_report_max_size` octets of the message into a job for the
//! outbox's thread, which redacts and builds the report. Nothing is built,
//! redacted or written to the store while the MTA waits.
//!
//! # Settings
//!
//! The `report_*` and `failure_*` settings are read from the
//! configuration in force for each message, so a reload applies them (an
//! operator who reloads with `failure_reports = false` stops failure
//! reports for the next message). Only `report_store`, `report_queue_size`,
//! `report_queue_memory` and `report_store_required` shape what is opened
//! at start: changing them needs a restart, and a reload names exactly
//! those that changed.

use crate::{
    actions::Action,
    config::{Config, FailureReportContent, QuarantineAction, ReportingConfig},
};
use dmarc_report::{
    counters::ReportCounters,
    deliver::{deliver_pending, DeliverySettings, DeliverySummary, DnsDestinationCheck},
    destination::usable_address,
    failure::{capped_sample, requested_failure_reports, FailureConfig, FailureJob},
    logging::RateLimit,
    model::{Applied, EvaluationRecord, OverrideWord, PolicyOverride, RecordOptions},
    run::{ended, queue_aggregate_reports, AggregateSettings, GenerateSummary},
    store::{
        self,
        outbox::{Outbox, OutboxOptions},
        recorder::{Recorder, RecorderOptions},
        Store, StoreError, StoreLocation,
    },
};
use dmarc_verifier::{
    dns::Dns, Disposition, DkimResult, DmarcResult, Enforcement, Envelope, PublicSuffixList,
    Verdict,
};
use std::{
    collections::HashMap,
    fmt,
    sync::{atomic::Ordering, Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Seconds since the epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Opens the store on a thread of its own: the PostgreSQL client runs its
/// own async runtime and must not be called from inside ours.
fn open_store(location: &StoreLocation) -> Result<Box<dyn Store>, StoreError> {
    let location = location.clone();
    std::thread::spawn(move || store::open(&location))
        .join()
        .unwrap_or_else(|_| {
            Err(StoreError {
                message: "the thread opening the report store stopped".to_string(),
                transient: false,
            })
        })
}

/// At most one log line per this interval for each repeated event.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The recording side, one per running milter.
pub(crate) struct Reporting {
    /// The settings it was started with (those a reload cannot change).
    started: ReportingConfig,
    recorder: Recorder,
    /// Failure reports: built and stored on a thread of its own.
    outbox: Outbox,
    /// Failure reports admitted this hour.
    limits: Mutex<FailureLimits>,
    counters: Arc<ReportCounters>,
    destinations_warning: RateLimit,
    limited_warning: RateLimit,
}

/// Which hourly limit refused a failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    Total,
    Domain,
    Recipient,
}

/// The failure reports admitted in one clock hour: in all, per policy
/// domain, per recipient. An entry is made only when a report is admitted,
/// so the maps hold at most `failure_reports_max_per_hour` keys.
#[derive(Debug, Default)]
struct FailureLimits {
    hour: i64,
    total: u64,
    per_domain: HashMap<String, u64>,
    per_recipient: HashMap<String, u64>,
}

impl FailureLimits {
    /// Admits `reports` more reports about `domain` to `recipient` (both
    /// lower case) at `now`, or says which limit refuses them.
    fn admit(
        &mut self,
        now: i64,
        domain: &str,
        recipient: &str,
        reports: u64,
        settings: &ReportingConfig,
    ) -> Result<(), Limited> {
        let hour = now.div_euclid(3_600);
        if hour != self.hour {
            *self = FailureLimits {
                hour,
                ..FailureLimits::default()
            };
        }
        let over = |count: u64, limit: u64| count.saturating_add(reports) > limit;
        let limits = &settings.limits;
        if over(self.total, limits.failure_reports_max_per_hour) {
            return Err(Limited::Total);
        }
        let to_domain = self.per_domain.get(domain).copied().unwrap_or(0);
        if over(to_domain, limits.failure_reports_per_domain_per_hour) {
            return Err(Limited::Domain);
        }
        let to_recipient = self.per_recipient.get(recipient).copied().unwrap_or(0);
        if over(to_recipient, settings.failure_reports_per_hour) {
            return Err(Limited::Recipient);
        }
        self.total += reports;
        *self.per_domain.entry(domain.to_string()).or_insert(0) += reports;
        *self.per_recipient.entry(recipient.to_string()).or_insert(0) += reports;
        Ok(())
    }
}

/// What a failure report needs of the message besides its verdict.
pub(crate) struct MessageFacts<'a> {
    /// The message as the verifier read it (header, empty line, body).
    pub(crate) raw: &'a [u8],
    /// The MTA's queue id.
    pub(crate) queue_id: &'a str,
}

impl fmt::Debug for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporting")
            .field("store", &self.started.store)
            .field("stats", &self.recorder.stats())
            .finish()
    }
}

impl Reporting {
    /// Starts the writer threads. The store is opened once now: with
    /// `report_store_required` a failure is returned (the milter does not
    /// start); without, it is logged as an error and the threads go on
    /// trying (reporting degraded, counted), while mail is verified.
    pub(crate) fn start(
        config: &ReportingConfig,
        counters: Arc<ReportCounters>,
    ) -> Result<Reporting, StoreError> {
        let location = config.store.clone();
        let mut first = match open_store(&location) {
            Ok(store) => Some(store),
            Err(error) if config.limits.store_required => return Err(error),
            Err(error) => {
                counters.store_open_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    %error,
                    "report store unavailable at start: reporting degraded (verdicts wait in a bounded queue, the store is retried); mail is verified as usual; set report_store_required = true to refuse to start instead"
                );
                None
            }
        };
        let recorder_location = location.clone();
        let recorder = Recorder::start_with(
            Box::new(move || match first.take() {
                Some(store) => Ok(store),
                None => store::open(&recorder_location),
            }),
            RecorderOptions {
                capacity: config.queue_size,
                max_bytes: config.limits.queue_memory,
            },
            Arc::clone(&counters),
        )
        .map_err(|e| StoreError {
            message: format!("cannot start the report writer thread: {e}"),
            transient: false,
        })?;
        let outbox = Outbox::start(
            Box::new(move || store::open(&location)),
            OutboxOptions::default(),
            Arc::clone(&counters),
        )
        .map_err(|e| StoreError {
            message: format!("cannot start the failure report thread: {e}"),
            transient: false,
        })?;
        Ok(Reporting {
            started: config.clone(),
            recorder,
            outbox,
            limits: Mutex::default(),
            counters,
            destinations_warning: RateLimit::new(WARNING_INTERVAL),
            limited_warning: RateLimit::new(WARNING_INTERVAL),
        })
    }

    /// The restart-only keys whose value in `new` differs from what this
    /// reporting was started with (all of them named, nothing else).
    pub(crate) fn restart_only_changes(&self, new: Option<&ReportingConfig>) -> Vec<&'static str> {
        let Some(new) = new else {
            return vec!["report_store"];
        };
        let old = &self.started;
        [
            ("report_store", old.store != new.store),
            ("report_queue_size", old.queue_size != new.queue_size),
            (
                "report_queue_memory",
                old.limits.queue_memory != new.limits.queue_memory,
            ),
            (
                "report_store_required",
                old.limits.store_required != new.limits.store_required,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// Records the verdict of one message and hands the failure reports
    /// its domain asks for to the outbox; never waits, builds nothing (see
    /// the module documentation). `settings` are those in force for this
    /// message; `applied` is what was done with it.
    pub(crate) fn record(
        &self,
        settings: &ReportingConfig,
        verdict: &Verdict,
        envelope: &Envelope,
        message: &MessageFacts<'_>,
        applied: &Applied,
    ) {
        let now = unix_now();
        let options = RecordOptions {
            include_no_policy: settings.record_no_policy,
            max_rua: settings.limits.max_rua,
            max_ruf: settings.limits.max_ruf,
        };
        let made = EvaluationRecord::from_verdict(verdict, envelope, now, &options, Some(applied));
        if made.destinations_dropped > 0 {
            self.counters.destinations_dropped.fetch_add(
                u64::try_from(made.destinations_dropped).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if let Some(suppressed) = self.destinations_warning.check() {
                let domain = made
                    .records
                    .iter()
                    .find_map(|record| record.policy.as_ref())
                    .map_or("", |policy| policy.domain.as_str());
                tracing::info!(
                    policy_domain = %domain,
                    left_out = made.destinations_dropped,
                    similar_not_logged = suppressed,
                    "rua/ruf destinations left out: repeated, unusable or over report_max_rua/report_max_ruf"
                );
            }
        }
        if settings.failure_reports {
            for record in &made.records {
                self.queue_failure_reports(settings, record, verdict, envelope, message, now);
            }
        }
        // A full queue drops and counts (the recorder logs it).
        let _ = self.recorder.record(made.records);
    }

    /// RFC 9991: the reports `fo` asks for, to each `ruf` address the
    /// limits admit; every check first, then one bounded copy.
    fn queue_failure_reports(
        &self,
        settings: &ReportingConfig,
        record: &EvaluationRecord,
        verdict: &Verdict,
        envelope: &Envelope,
        message: &MessageFacts<'_>,
        now: i64,
    ) {
        let Some(policy) = &record.policy else {
            return;
        };
        let kinds = requested_failure_reports(record);
        if kinds.is_empty() {
            return;
        }
        let reports = u64::try_from(kinds.len()).unwrap_or(u64::MAX);
        // The README: excluded domains never get reports.
        if settings
            .exclude_domains
            .iter()
            .any(|pattern| pattern.matches(&policy.domain))
        {
            self.counters
                .failure_reports_excluded
                .fetch_add(reports, Ordering::Relaxed);
            return;
        }
        let sender = &settings.reporter.email;
        let mut admitted = Vec::new();
        {
            let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
            for destination in policy.ruf.iter().take(settings.limits.max_ruf) {
                let Some(address) = usable_address(&destination.uri) else {
                    continue;
                };
                if address.eq_ignore_ascii_case(sender) {
                    continue;
                }
                match limits.admit(now, &policy.domain, &address, reports, settings) {
                    Ok(()) => admitted.push(destination.clone()),
                    Err(limited) => {
                        let counter = match limited {
                            Limited::Total => &self.counters.failure_reports_limited_total,
                            Limited::Domain => &self.counters.failure_reports_limited_domain,
                            Limited::Recipient => &self.counters.failure_reports_limited_recipient,
                        };
                        counter.fetch_add(reports, Ordering::Relaxed);
                        if let Some(suppressed) = self.limited_warning.check() {
                            tracing::info!(
                                policy_domain = %policy.domain,
                                limit = ?limited,
                                similar_not_logged = suppressed,
                                "failure reports over an hourly limit: not made"
                            );
                        }
                    }
                }
            }
        }
        if admitted.is_empty() {
            return;
        }
        let include_body = settings.failure_report_content == FailureReportContent::Full;
        let max_size = settings.limits.failure_report_max_size;
        let (headers, body) = capped_sample(message.raw, include_body, max_size);
        let mut config = FailureConfig::new(settings.reporter.domain.clone());
        config.include_body = include_body;
        config.max_size = max_size;
        let cap = |text: &str, max: usize| text.chars().take(max).collect::<String>();
        let _ = self.outbox.queue(FailureJob {
            record: record.clone(),
            kinds,
            destinations: admitted,
            headers,
            body,
            mail_from: Some(cap(&envelope.mail_from, 512)),
            envelope_id: (!message.queue_id.is_empty()).then(|| cap(message.queue_id, 64)),
            authentication_results: Some(cap(&verdict.authentication_results, 8192)),
            // RFC 9991 §4, RFC 6591 §3: the SPF record the verifier read.
            spf_dns: verdict
                .spf
                .record
                .as_ref()
                .map(|record| cap(&format!("txt : {} : {record}", verdict.spf.domain), 2048)),
            config,
            sender: sender.clone(),
            message_id_domain: settings.reporter.domain.clone(),
            time: now,
        });
    }

    /// Waits until everything recorded so far is in the store, at most
    /// until `deadline` (the one deadline of the whole shutdown); logs what
    /// could not be written, and how much time was left.
    pub(crate) fn flush_until(&self, deadline: Instant) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !self.outbox.flush_until(deadline) {
            tracing::error!(
                remaining_ms = remaining.as_millis(),
                "failure reports not stored by the shutdown deadline"
            );
        }
        let flushed = self.recorder.flush_until(deadline);
        let stats = self.recorder.stats();
        if flushed {
            tracing::info!(
                committed = stats.committed,
                dropped = stats.dropped,
                "report store flushed"
            );
        } else {
            tracing::error!(
                queued = stats.queued,
                committed = stats.committed,
                remaining_ms = remaining.as_millis(),
                "report store not flushed by the shutdown deadline: evaluations not yet written are lost"
            );
        }
    }
}

/// The words a record uses for why it differs from the verdict.
fn local_policy(comment: &str) -> PolicyOverride {
    PolicyOverride {
        kind: OverrideWord::LocalPolicy,
        comment: Some(comment.to_string()),
    }
}

/// What was done with a message, for its records (issue 16 item 9: what is
/// stored is what the milter did): the action taken, and why it differs
/// from an evaluation's disposition.
pub(crate) fn applied(verdict: &Verdict, action: &Action, config: &Config) -> Applied {
    let wanted_quarantine = verdict.disposition == Disposition::Quarantine;
    let (disposition, reason) = match action {
        // Header only is this server's way to quarantine.
        Action::Accept
            if wanted_quarantine && config.quarantine_action == QuarantineAction::HeaderOnly =>
        {
            (Disposition::Quarantine, None)
        }
        Action::Accept if wanted_quarantine => (
            Disposition::Accept,
            Some(local_policy("the MTA offers no quarantine")),
        ),
        Action::Accept => (Disposition::Accept, None),
        Action::Hold(_) => (Disposition::Quarantine, None),
        Action::Reject(_) => (Disposition::Reject, None),
        Action::Tempfail(_) => (Disposition::Tempfail, None),
    };
    let reason = reason.or_else(|| {
        Some(if config.verifier.enforcement == Enforcement::Monitor {
            local_policy("dry run")
        } else {
            PolicyOverride {
                kind: OverrideWord::Other,
                comment: Some("disposition applied for another author domain".to_string()),
            }
        })
    });
    Applied {
        disposition,
        reason,
    }
}

/// The verdict as applied to a message over `max_message_size` whose
/// signatures could not be verified: every DKIM result `permerror`
/// ("message too large"), no aligned DKIM, and unless aligned SPF passed
/// (`spf_pass`) a DMARC result of `none`; the message accepted. This is
/// what its records say, and no failure report is made for it (its DMARC
/// evaluation did not conclude).
pub(crate) fn too_large(verdict: &Verdict, spf_pass: bool, reason: &str) -> (Verdict, Applied) {
    let mut applied_verdict = verdict.clone();
    for check in &mut applied_verdict.dkim {
        check.result = DkimResult::PermError;
        check.reason = Some(reason.to_string());
    }
    for evaluation in &mut applied_verdict.evaluations {
        evaluation.dkim_aligned = false;
        if !spf_pass {
            evaluation.result = DmarcResult::None;
            evaluation.reason = Some(reason.to_string());
        }
    }
    if !spf_pass {
        applied_verdict.dmarc = DmarcResult::None;
    }
    applied_verdict.disposition = Disposition::Accept;
    (
        applied_verdict,
        Applied {
            disposition: Disposition::Accept,
            reason: Some(local_policy(reason)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{FailureLimits, Limited};
    use crate::config::Config;

    fn settings(per_recipient: u64, per_domain: u64, total: u64) -> crate::config::ReportingConfig {
        let mut config = Config::parse(
            "report_store = \"/r.db\"\nreport_org_name = \"x\"\nreport_email = \"a@b.example\"\n",
            "test",
        )
        .unwrap()
        .reporting
        .unwrap();
        config.failure_reports_per_hour = per_recipient;
        config.limits.failure_reports_per_domain_per_hour = per_domain;
        config.limits.failure_reports_max_per_hour = total;
        config
    }

    #[test]
    fn failure_reports_are_limited_per_recipient_domain_and_hour() {
        let mut limits = FailureLimits::default();
        let hour = 1_795_305_600;
        let s = settings(2, 3, 5);
        assert_eq!(
            limits.admit(hour, "a.example", "ruf@a.example", 1, &s),
            Ok(())
        );
        assert_eq!(
            limits.admit(hour + 10, "a.example", "ruf@a.example", 1, &s),
            Ok(())
        );
        assert_eq!(
            limits.admit(hour + 20, "a.example", "ruf@a.example", 1, &s),
            Err(Limited::Recipient)
        );
        assert_eq!(
            limits.admit(hour + 20, "a.example", "x@a.example", 1, &s),
            Ok(())
        );
        assert_eq!(
            limits.admit(hour + 20, "a.example", "y@a.example", 1, &s),
            Err(Limited::Domain)
        );
        assert_eq!(
            limits.admit(hour + 30, "b.example", "ruf@b.example", 2, &s),
            Ok(())
        );
        assert_eq!(
            limits.admit(hour + 30, "c.example", "ruf@c.example", 1, &s),
            Err(Limited::Total)
        );
        // Refusals make no entry: the maps hold admitted keys only.
        assert_eq!(limits.per_recipient.len(), 3);
        assert_eq!(
            limits.admit(hour + 3_600, "c.example", "ruf@c.example", 1, &s),
            Ok(())
        );
        assert_eq!(limits.per_recipient.len(), 1);
        let zero = settings(0, 10, 10);
        assert_eq!(
            FailureLimits::default().admit(hour, "a.example", "x@a.example", 1, &zero),
            Err(Limited::Recipient)
        );
    }
}

/// What `dmarc-milter report` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRun {
    /// The period `[begin, end)` to report; `None` skips generation.
    pub period: Option<(i64, i64)>,
    /// Deliver pending report mail.
    pub deliver: bool,
    /// Seconds since the epoch (the run's clock).
    pub now: i64,
}

/// What a report run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    /// Generation.
    pub generated: GenerateSummary,
    /// Delivery.
    pub delivered: DeliverySummary,
    /// Evaluations deleted by `report_retention_days`.
    pub purged: u64,
}

impl fmt::Display for ReportOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.generated;
        let d = &self.delivered;
        write!(
            f,
            "{} policy domains: {} reports made ({} already made, {} excluded, {} without destination), {} messages queued, {} destinations over their size limit, {} destinations left out, {} over the per-destination-domain cap; delivery: {} sent, {} redirected, {} deferred, {} given up, {} refused by destination, {} rate-limited, {} held by another run, {} left for the next run (consent budget), {} excluded; {} old evaluations purged",
            g.domains,
            g.reports,
            g.already_done,
            g.excluded,
            g.no_destination,
            g.queued,
            g.too_large,
            g.destinations_dropped,
            g.over_destination_cap,
            d.sent,
            d.redirected,
            d.deferred,
            d.given_up,
            d.unauthorized,
            d.rate_limited,
            d.claimed_elsewhere,
            d.skipped,
            d.excluded,
            self.purged
        )
    }
}

/// Why a report run did not happen or did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportError {
    /// No `report_store` in the configuration: a configuration error.
    NotConfigured,
    /// The period asked for has not ended (UTC): making its report now
    /// would mark it done and lose the mail still to come in it.
    PeriodNotEnded(String),
    /// The store, the resolver or the Public Suffix List failed.
    Failed(String),
}

impl ReportError {
    /// The exit status: 2 for what the operator must change (like every
    /// configuration error), 1 for a failure that a later run may not
    /// meet.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReportError::NotConfigured | ReportError::PeriodNotEnded(_) => 2,
            ReportError::Failed(_) => 1,
        }
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::NotConfigured => {
                f.write_str("reporting is not configured: set report_store")
            }
            ReportError::PeriodNotEnded(why) | ReportError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReportError {}

/// Runs `dmarc-milter report`: makes the aggregate reports of the period,
/// delivers what is pending, purges old evaluations. Call it outside any
/// async runtime (it starts a small one for its DNS questions).
///
/// # Errors
///
/// [`ReportError`]: no reporting configured, a period that has not ended,
/// the store or the resolver failing.
pub fn run_reports(config: &Config, run: &ReportRun) -> Result<ReportOutcome, ReportError> {
    let Some(reporting) = &config.reporting else {
        return Err(ReportError::NotConfigured);
    };
    if let Some(period) = run.period {
        ended(period, run.now).map_err(ReportError::PeriodNotEnded)?;
    }
    let failed = |e: &dyn fmt::Display| ReportError::Failed(e.to_string());
    let psl =
        PublicSuffixList::load(config.verifier.psl_path.as_deref()).map_err(|e| failed(&e))?;
    let mut store = store::open(&reporting.store).map_err(|e| failed(&e))?;
    let excluded = |domain: &str| reporting.exclude_domains.iter().any(|p| p.matches(domain));
    let mut outcome = ReportOutcome::default();
    if let Some((begin, end)) = run.period {
        let own = vec![reporting.reporter.email.clone()];
        let group = |domain: &str| psl.org_domain(domain);
        let settings = AggregateSettings {
            reporter: &reporting.reporter,
            format: reporting.format,
            sender: &reporting.reporter.email,
            excluded: &excluded,
            own_addresses: &own,
            max_rua: reporting.limits.max_rua,
            max_per_destination_domain: reporting.limits.max_per_destination_domain,
            destination_group: &group,
        };
        outcome.generated = queue_aggregate_reports(store.as_mut(), &settings, begin, end, run.now)
            .map_err(|e| failed(&e))?;
    }
    if run.deliver {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ReportError::Failed(format!("cannot start the DNS runtime: {e}")))?;
        // The resolver spawns its tasks on the runtime it is built in.
        let dns = runtime
            .block_on(async { Dns::new(&config.verifier.dns) })
            .map_err(|e| failed(&e))?;
        let mut check = DnsDestinationCheck::new(&dns, &psl, &runtime).with_budget(
            reporting.limits.consent_budget,
            dmarc_report::deliver::DEFAULT_CHECK_CONCURRENCY,
        );
        let settings = DeliverySettings {
            max_attempts: reporting.max_attempts,
            failure_reports_per_hour: reporting.failure_reports_per_hour,
            failure_reports_per_domain_per_hour: reporting
                .limits
                .failure_reports_per_domain_per_hour,
            ..DeliverySettings::default()
        };
        // The run's own clock for claims and sending times: the start time
        // given, moved forward by the time the run has taken.
        let started = Instant::now();
        let clock = || {
            run.now
                .saturating_add(i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX))
        };
        outcome.delivered = deliver_pending(
            store.as_mut(),
            &reporting.transport,
            &mut check,
            &settings,
            &clock,
            &excluded,
        )
        .map_err(|e| failed(&e))?;
    }
    let retention = i64::from(reporting.retention_days) * 86_400;
    outcome.purged = store
        .purge(run.now.saturating_sub(retention))
        .map_err(|e| failed(&e))?;
    Ok(outcome)
}
