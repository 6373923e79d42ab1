//! Counters of a running milter: every bound that can be hit is counted
//! here, readable without a lock (tests, logs, and later the metrics
//! endpoint).
//!
//! The caller of [`crate::run_with`] owns the `Arc<Counters>`; the milter
//! only adds to it. Every field only grows, except
//! [`dmarc_report::counters::ReportCounters::queue_bytes`], a gauge.

use dmarc_report::counters::ReportCounters;
use std::sync::{atomic::AtomicU64, Arc};

/// The counters of one milter.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages refused (550) because they held more Authentication-Results
    /// fields to delete than `max_forged_authentication_results`.
    pub forged_auth_results_refused: AtomicU64,
    /// The reporting path: the recorder, the failure-report outbox and the
    /// limits checked at the end of each message (see
    /// [`ReportCounters`] for each field).
    pub report: Arc<ReportCounters>,
}
