//! DMARC reporting in the daemon: every verdict is recorded in the report
//! store (through a bounded queue and one writer thread, so mail never
//! waits for the database), and `dmarc-milter report` turns the store into
//! RFC 9990 aggregate reports and delivers what is pending.

use crate::config::{Config, FailureReportContent, ReportingConfig};
use dmarc_report::{
    deliver::{deliver_pending, DeliverySettings, DeliverySummary, DnsDestinationCheck},
    failure::{requested_failure_reports, FailureConfig, FailureInput, FailureReport},
    model::EvaluationRecord,
    run::{queue_aggregate_reports, AggregateSettings, GenerateSummary},
    store::{
        self, outbox::Outbox, recorder::Recorder, MessageKind, OutgoingMessage, Store, StoreError,
    },
};
use dmarc_verifier::{dns::Dns, Envelope, PublicSuffixList, Verdict};
use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Seconds since the epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Opens the store on a thread of its own: the PostgreSQL client runs its
/// own async runtime and must not be called from inside ours.
fn open_store(config: &ReportingConfig) -> Result<Box<dyn Store>, StoreError> {
    let location = config.store.clone();
    std::thread::spawn(move || store::open(&location))
        .join()
        .unwrap_or_else(|_| {
            Err(StoreError {
                message: "the thread opening the report store stopped".to_string(),
                transient: false,
            })
        })
}

/// The recording side, one per running milter.
pub(crate) struct Reporting {
    config: ReportingConfig,
    recorder: Recorder,
    /// Failure reports waiting to be stored (`failure_reports = true`).
    outbox: Option<Outbox>,
    /// Failure reports queued this hour, per recipient: over
    /// `failure_reports_per_hour` they are not even built, so a flood of
    /// forgeries cannot fill the store (delivery checks the limit again,
    /// across hosts).
    failure_counts: Mutex<FailureCounts>,
}

/// Per-recipient counts of one clock hour.
#[derive(Debug, Default)]
struct FailureCounts {
    hour: i64,
    per_recipient: HashMap<String, u64>,
}

impl FailureCounts {
    /// Counts one more report to `recipient` at `now`; false when the
    /// hour's limit is reached.
    fn admit(&mut self, recipient: &str, now: i64, limit: u64) -> bool {
        let hour = now.div_euclid(3_600);
        if hour != self.hour {
            self.hour = hour;
            self.per_recipient.clear();
        }
        let count = self
            .per_recipient
            .entry(recipient.to_ascii_lowercase())
            .or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
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
            .field("store", &self.config.store)
            .field("stats", &self.recorder.stats())
            .finish()
    }
}

impl Reporting {
    /// Opens the store and starts the writer thread.
    pub(crate) fn start(config: &ReportingConfig) -> Result<Reporting, StoreError> {
        let store = open_store(config)?;
        let recorder = Recorder::start(store, config.queue_size).map_err(|e| StoreError {
            message: format!("cannot start the report writer thread: {e}"),
            transient: false,
        })?;
        let outbox = if config.failure_reports {
            let store = open_store(config)?;
            Some(Outbox::start(store, 1_000).map_err(|e| StoreError {
                message: format!("cannot start the failure report thread: {e}"),
                transient: false,
            })?)
        } else {
            None
        };
        Ok(Reporting {
            config: config.clone(),
            recorder,
            outbox,
            failure_counts: Mutex::default(),
        })
    }

    /// Records the verdict of one message and queues the failure reports
    /// its domain asks for; never waits.
    pub(crate) fn record(
        &self,
        verdict: &Verdict,
        envelope: &Envelope,
        message: &MessageFacts<'_>,
    ) {
        let now = unix_now();
        let records =
            EvaluationRecord::from_verdict(verdict, envelope, now, self.config.record_no_policy);
        if let Some(outbox) = &self.outbox {
            for record in &records {
                self.queue_failure_reports(outbox, record, verdict, envelope, message, now);
            }
        }
        if !records.is_empty() {
            // A full queue drops and counts (the recorder logs it).
            let _ = self.recorder.record(records);
        }
    }

    /// RFC 9991: one report per requested failure kind and `ruf` address
    /// (`mailto:` only, never ours); the per-recipient rate limit is applied
    /// when they are delivered.
    fn queue_failure_reports(
        &self,
        outbox: &Outbox,
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
        let header_end =
            memchr::memmem::find(message.raw, b"\r\n\r\n").map_or(message.raw.len(), |i| i + 4);
        let (headers, body) = message.raw.split_at(header_end);
        let mut config = FailureConfig::new(self.config.reporter.domain.clone());
        config.include_body = self.config.failure_report_content == FailureReportContent::Full;
        let sender = &self.config.reporter.email;
        for kind in kinds {
            let input = FailureInput {
                body: Some(body),
                mail_from: Some(envelope.mail_from.as_str()),
                envelope_id: (!message.queue_id.is_empty()).then_some(message.queue_id),
                authentication_results: Some(verdict.authentication_results.as_str()),
                ..FailureInput::new(record, kind, headers)
            };
            let report = FailureReport::build(&input, &config);
            for destination in &policy.ruf {
                let Some(address) = destination.mailto_address() else {
                    continue;
                };
                if address.eq_ignore_ascii_case(sender)
                    || address.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    continue;
                }
                let admitted = self
                    .failure_counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(address, now, self.config.failure_reports_per_hour);
                if !admitted {
                    continue;
                }
                let payload =
                    report.report_mail(sender, address, now, &self.config.reporter.domain);
                // RFC 7489 §6.2: a report larger than the limit is not sent.
                if destination
                    .max_size
                    .is_some_and(|max| u64::try_from(payload.len()).unwrap_or(u64::MAX) > max)
                {
                    continue;
                }
                let _ = outbox.queue(OutgoingMessage {
                    kind: MessageKind::Failure,
                    policy_domain: policy.domain.clone(),
                    sender: sender.clone(),
                    recipient: address.to_string(),
                    payload,
                    created: now,
                });
            }
        }
    }

    /// Waits (at most `timeout`) until everything recorded so far is in the
    /// store; logs what could not be written.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Some(outbox) = &self.outbox {
            if !outbox.flush(timeout) {
                tracing::error!("failure reports not stored within {timeout:?}");
            }
        }
        let flushed = self.recorder.flush(timeout);
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
                "report store not flushed within {timeout:?}: evaluations not yet written are lost"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureCounts;

    #[test]
    fn failure_reports_are_counted_per_recipient_and_hour() {
        let mut counts = FailureCounts::default();
        let hour = 1_795_305_600;
        assert!(counts.admit("ruf@a.example", hour, 2));
        assert!(counts.admit("RUF@a.example", hour + 10, 2));
        assert!(!counts.admit("ruf@a.example", hour + 20, 2));
        assert!(counts.admit("ruf@b.example", hour + 20, 2));
        assert!(counts.admit("ruf@a.example", hour + 3_600, 2));
        assert!(!counts.admit("x@a.example", hour, 0));
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
            "{} policy domains: {} reports made ({} already made, {} excluded, {} without destination), {} messages queued, {} destinations over their size limit; delivery: {} sent, {} deferred, {} given up, {} refused by destination, {} rate-limited, {} held by another run; {} old evaluations purged",
            g.domains,
            g.reports,
            g.already_done,
            g.excluded,
            g.no_destination,
            g.queued,
            g.too_large,
            d.sent,
            d.deferred,
            d.given_up,
            d.unauthorized,
            d.rate_limited,
            d.claimed_elsewhere,
            self.purged
        )
    }
}

/// Runs `dmarc-milter report`: makes the aggregate reports of the period,
/// delivers what is pending, purges old evaluations. Call it outside any
/// async runtime (it starts a small one for its DNS questions).
///
/// # Errors
///
/// A message for the operator: no reporting configured, the store or the
/// resolver failing.
pub fn run_reports(config: &Config, run: &ReportRun) -> Result<ReportOutcome, String> {
    let Some(reporting) = &config.reporting else {
        return Err("reporting is not configured: set report_store".to_string());
    };
    let mut store = store::open(&reporting.store).map_err(|e| e.to_string())?;
    let mut outcome = ReportOutcome::default();
    if let Some((begin, end)) = run.period {
        let own = vec![reporting.reporter.email.clone()];
        let excluded = |domain: &str| reporting.exclude_domains.iter().any(|p| p.matches(domain));
        let settings = AggregateSettings {
            reporter: &reporting.reporter,
            format: reporting.format,
            sender: &reporting.reporter.email,
            excluded: &excluded,
            own_addresses: &own,
        };
        outcome.generated = queue_aggregate_reports(store.as_mut(), &settings, begin, end, run.now)
            .map_err(|e| e.to_string())?;
    }
    if run.deliver {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the DNS runtime: {e}"))?;
        // The resolver spawns its tasks on the runtime it is built in.
        let dns = runtime
            .block_on(async { Dns::new(&config.verifier.dns) })
            .map_err(|e| e.to_string())?;
        let psl = PublicSuffixList::load(config.verifier.psl_path.as_deref())
            .map_err(|e| e.to_string())?;
        let mut check = DnsDestinationCheck::new(&dns, &psl, &runtime);
        let settings = DeliverySettings {
            max_attempts: reporting.max_attempts,
            failure_reports_per_hour: reporting.failure_reports_per_hour,
            ..DeliverySettings::default()
        };
        outcome.delivered = deliver_pending(
            store.as_mut(),
            &reporting.transport,
            &mut check,
            &settings,
            run.now,
        )
        .map_err(|e| e.to_string())?;
    }
    let retention = i64::from(reporting.retention_days) * 86_400;
    outcome.purged = store
        .purge(run.now.saturating_sub(retention))
        .map_err(|e| e.to_string())?;
    Ok(outcome)
}
