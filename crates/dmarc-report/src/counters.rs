//! Counters of the reporting path in a running milter: every bound that
//! can be hit is counted here, so that it can be read (tests, logs) and
//! exported (metrics) without a lock.
//!
//! One [`ReportCounters`] is shared (in an `Arc`) by the recorder, the
//! failure-report outbox and the milter code that feeds them. Every field
//! only grows. Read a field with `load(Ordering::Relaxed)`, or take a
//! [`ReportCounters::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters; see each field for what it counts and which bound it
/// belongs to (SECURITY.md lists the bounds).
#[derive(Debug, Default)]
pub struct ReportCounters {
    /// Evaluation records accepted into the recorder's queue.
    pub records_queued: AtomicU64,
    /// Evaluation records committed to the store.
    pub records_committed: AtomicU64,
    /// Evaluation records refused because the recorder's queue was full,
    /// in entries or in bytes (`report_queue_size`, `report_queue_memory`),
    /// or the recorder had stopped; never stored.
    pub records_dropped: AtomicU64,
    /// Evaluation records given up at the shutdown deadline.
    pub records_abandoned: AtomicU64,
    /// Failed insert transactions (each retried).
    pub store_write_failures: AtomicU64,
    /// Failed attempts to open the store (at start, or after it went away);
    /// while it cannot be opened reporting is degraded (records wait in the
    /// bounded queue) and mail is verified as usual.
    pub store_open_failures: AtomicU64,
    /// Bytes of evaluation records waiting in the recorder's queue now
    /// (goes down too: a gauge, not a counter).
    pub queue_bytes: AtomicU64,
    /// `rua`/`ruf` destinations left out of a record: over the per-record
    /// cap (`report_max_rua`, `report_max_ruf`), repeated, or unusable
    /// (not `mailto:`, a relay hack such as `%` or `!`, too long).
    pub destinations_dropped: AtomicU64,
    /// Failure reports not even prepared: the policy domain is in
    /// `report_exclude_domains`.
    pub failure_reports_excluded: AtomicU64,
    /// Failure reports refused by the per-recipient hourly limit
    /// (`failure_reports_per_hour`).
    pub failure_reports_limited_recipient: AtomicU64,
    /// Failure reports refused by the per-policy-domain hourly limit
    /// (`failure_reports_per_domain_per_hour`).
    pub failure_reports_limited_domain: AtomicU64,
    /// Failure reports refused by the overall hourly limit
    /// (`failure_reports_max_per_hour`).
    pub failure_reports_limited_total: AtomicU64,
    /// Messages whose failure reports were handed to the outbox (the facts
    /// only: nothing is built at the end of the message).
    pub failure_jobs_queued: AtomicU64,
    /// Messages whose failure reports were dropped because the outbox was
    /// full (in jobs or bytes).
    pub failure_jobs_dropped: AtomicU64,
    /// Failure reports built (redacted, written as AFRF) by the outbox's
    /// thread.
    pub failure_reports_built: AtomicU64,
    /// Failure reports whose sample was cut to fit the report size cap.
    pub failure_reports_truncated: AtomicU64,
    /// Failure reports not sent to a destination whose `!size` limit is
    /// smaller than the report.
    pub failure_reports_too_large: AtomicU64,
    /// Failure reports stored for delivery.
    pub failure_reports_stored: AtomicU64,
    /// Failure reports given up because the store kept failing.
    pub failure_reports_store_failed: AtomicU64,
}

/// The value of every counter at one moment (each read on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportCountersSnapshot {
    /// [`ReportCounters::records_queued`].
    pub records_queued: u64,
    /// [`ReportCounters::records_committed`].
    pub records_committed: u64,
    /// [`ReportCounters::records_dropped`].
    pub records_dropped: u64,
    /// [`ReportCounters::records_abandoned`].
    pub records_abandoned: u64,
    /// [`ReportCounters::store_write_failures`].
    pub store_write_failures: u64,
    /// [`ReportCounters::store_open_failures`].
    pub store_open_failures: u64,
    /// [`ReportCounters::queue_bytes`].
    pub queue_bytes: u64,
    /// [`ReportCounters::destinations_dropped`].
    pub destinations_dropped: u64,
    /// [`ReportCounters::failure_reports_excluded`].
    pub failure_reports_excluded: u64,
    /// [`ReportCounters::failure_reports_limited_recipient`].
    pub failure_reports_limited_recipient: u64,
    /// [`ReportCounters::failure_reports_limited_domain`].
    pub failure_reports_limited_domain: u64,
    /// [`ReportCounters::failure_reports_limited_total`].
    pub failure_reports_limited_total: u64,
    /// [`ReportCounters::failure_jobs_queued`].
    pub failure_jobs_queued: u64,
    /// [`ReportCounters::failure_jobs_dropped`].
    pub failure_jobs_dropped: u64,
    /// [`ReportCounters::failure_reports_built`].
    pub failure_reports_built: u64,
    /// [`ReportCounters::failure_reports_truncated`].
    pub failure_reports_truncated: u64,
    /// [`ReportCounters::failure_reports_too_large`].
    pub failure_reports_too_large: u64,
    /// [`ReportCounters::failure_reports_stored`].
    pub failure_reports_stored: u64,
    /// [`ReportCounters::failure_reports_store_failed`].
    pub failure_reports_store_failed: u64,
}

impl ReportCounters {
    /// Every counter now.
    pub fn snapshot(&self) -> ReportCountersSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReportCountersSnapshot {
            records_queued: read(&self.records_queued),
            records_committed: read(&self.records_committed),
            records_dropped: read(&self.records_dropped),
            records_abandoned: read(&self.records_abandoned),
            store_write_failures: read(&self.store_write_failures),
            store_open_failures: read(&self.store_open_failures),
            queue_bytes: read(&self.queue_bytes),
            destinations_dropped: read(&self.destinations_dropped),
            failure_reports_excluded: read(&self.failure_reports_excluded),
            failure_reports_limited_recipient: read(&self.failure_reports_limited_recipient),
            failure_reports_limited_domain: read(&self.failure_reports_limited_domain),
            failure_reports_limited_total: read(&self.failure_reports_limited_total),
            failure_jobs_queued: read(&self.failure_jobs_queued),
            failure_jobs_dropped: read(&self.failure_jobs_dropped),
            failure_reports_built: read(&self.failure_reports_built),
            failure_reports_truncated: read(&self.failure_reports_truncated),
            failure_reports_too_large: read(&self.failure_reports_too_large),
            failure_reports_stored: read(&self.failure_reports_stored),
            failure_reports_store_failed: read(&self.failure_reports_store_failed),
        }
    }
}

/// Adds `n` to `counter`.
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}
