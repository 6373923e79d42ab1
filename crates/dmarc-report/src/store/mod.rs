//! Where evaluation records, generated reports and outgoing report mail are
//! kept: SQLite by default (one file, WAL, nothing to run), PostgreSQL for
//! several MX hosts sharing one report set.
//!
//! Every method is one transaction: it happens completely or not at all.
//!
//! The milter writes through a [`recorder::Recorder`], which never blocks
//! mail; the report generator and the sender use a [`Store`] directly.
//!
//! # Schema (version 1)
//!
//! The same in both databases (PostgreSQL type, then SQLite's after a slash,
//! where they differ):
//!
//! - `dmarc_records`: one row per [`EvaluationRecord`]: `id`, `time`,
//!   `source_ip`, `header_from`, `envelope_from`, `envelope_to`, the
//!   published policy (`policy_domain`, `policy_discovery`, `policy_p`,
//!   `policy_sp`, `policy_np`, `policy_adkim`, `policy_aspf`, `policy_pct`,
//!   `policy_fo`, `policy_testing`, `policy_psd`, and `policy_rua`,
//!   `policy_ruf` as JSON text; all NULL for a record without a policy),
//!   `dmarc`, `disposition`, `dkim_aligned`, `spf_aligned`, `reasons` (JSON),
//!   `spf_domain`, `spf_scope`, `spf_result`, `spf_human_result` and `dkim`
//!   (JSON). Results are stored as their report words (`pass`, `reject`...).
//!   Indexed on `(policy_domain, time)` and `time`.
//! - `dmarc_reports`: `id`, `policy_domain`, `period_begin`, `period_end`,
//!   `report_id`, `message_count`, `created`; unique on `(policy_domain,
//!   period_begin, period_end)`, which is what makes
//!   [`Store::add_report`] atomic between hosts.
//! - `dmarc_messages`: `id` (never reused), `kind` (`aggregate` or
//!   `failure`), `policy_domain`, `sender`, `recipient`, `payload` (BYTEA /
//!   BLOB), `created`, `state` (`pending`, `sent` or `abandoned`),
//!   `attempts`, `last_error`, `sent_at`; indexed on `(state, created)` and
//!   `(kind, sent_at)`.
//!
//! Times are seconds since the epoch (BIGINT / INTEGER); booleans are
//! BOOLEAN / INTEGER. The version is
//! `PRAGMA user_version` in SQLite and the table `dmarc_schema` in
//! PostgreSQL; a store of another version is refused with a non-transient
//! error.
//!
//! Both stores also purge, in [`Store::purge`], the reports whose period
//! ended by the cut-off (their records are gone, so they cannot be made
//! again); [`Store::mark_sent`] and [`Store::mark_failed`] of an unknown id
//! are non-transient errors; [`Store::sent_since`] compares the recipient
//! exactly as given (normalise it the same way when queueing and counting).

pub mod outbox;
mod postgres;
pub mod recorder;
mod sql;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use self::sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::model::EvaluationRecord;
use std::{fmt, path::PathBuf};

/// Opens the store at `location`: an SQLite file with the default
/// [`SqliteOptions`], or a PostgreSQL database, connected at once.
///
/// # Errors
///
/// The error of [`SqliteStore::open`] or [`PostgresStore::connect`]. A
/// transient error means the database could not be reached now; a caller
/// that wants to start anyway can use [`PostgresStore::new`], which
/// connects at its first call.
///
/// Call it from a plain thread (or `tokio::task::spawn_blocking`), not
/// from an async task: the PostgreSQL client panics inside a tokio runtime
/// (see [`PostgresStore`]).
pub fn open(location: &StoreLocation) -> Result<Box<dyn Store>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(url) => Box::new(PostgresStore::connect(url)?),
    })
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite database file (created with its schema when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgresql://user@host:port/db`);
    /// the schema is created when missing.
    Postgres(String),
}

/// A store operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// What was being done and why it failed, for a log line.
    pub message: String,
    /// True when retrying later may succeed (connection lost, database
    /// busy); false for a problem that needs an operator (bad path, schema
    /// of another version, permissions).
    pub transient: bool,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// What kind of report an outgoing message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An RFC 9990 aggregate report.
    Aggregate,
    /// An RFC 9991 failure report.
    Failure,
}

/// A generated aggregate report: one per policy domain and period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    /// The policy domain.
    pub policy_domain: String,
    /// Start of the period, seconds since the epoch (inclusive).
    pub begin: i64,
    /// End of the period, seconds since the epoch (exclusive).
    pub end: i64,
    /// The report's `report_id`.
    pub report_id: String,
    /// How many records it covers.
    pub message_count: u64,
    /// When it was generated.
    pub created: i64,
}

/// A report message waiting to be delivered to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Aggregate or failure report.
    pub kind: MessageKind,
    /// The policy domain it reports on.
    pub policy_domain: String,
    /// The envelope sender (our report address).
    pub sender: String,
    /// The envelope recipient (from `rua`/`ruf`).
    pub recipient: String,
    /// The complete RFC 5322 message, CRLF line endings.
    pub payload: Vec<u8>,
    /// When it was queued.
    pub created: i64,
}

/// A queued message as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The store's identifier for it.
    pub id: i64,
    /// The message.
    pub message: OutgoingMessage,
    /// How many delivery attempts have failed so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// The persistent state of reporting.
pub trait Store: Send {
    /// Appends records, all or none.
    fn insert(&mut self, records: &[EvaluationRecord]) -> Result<(), StoreError>;

    /// The policy domains with records whose time is in `[begin, end)`,
    /// sorted.
    fn policy_domains(&mut self, begin: i64, end: i64) -> Result<Vec<String>, StoreError>;

    /// The records of one policy domain whose time is in `[begin, end)`,
    /// oldest first.
    fn records(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Vec<EvaluationRecord>, StoreError>;

    /// Whether a report for this policy domain and period was generated.
    fn report_exists(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<bool, StoreError>;

    /// Records a generated report and queues its messages, atomically.
    /// Returns false, storing nothing, when a report for the same policy
    /// domain and period exists (another host or an earlier run made it).
    fn add_report(
        &mut self,
        report: &ReportEntry,
        messages: &[OutgoingMessage],
    ) -> Result<bool, StoreError>;

    /// Queues one message (a failure report).
    fn queue_message(&mut self, message: &OutgoingMessage) -> Result<(), StoreError>;

    /// Messages not yet sent and not given up on, oldest first, at most
    /// `limit`.
    fn pending_messages(&mut self, limit: usize) -> Result<Vec<QueuedMessage>, StoreError>;

    /// Takes pending message `id` for delivery until `until`, unless another
    /// run holds it at `now`; true when this caller got it. Two hosts
    /// delivering from one shared store never send the same message
    /// twice while a claim holds (a crashed holder's claim expires).
    fn claim(&mut self, id: i64, now: i64, until: i64) -> Result<bool, StoreError>;

    /// Marks a message delivered at `time`.
    fn mark_sent(&mut self, id: i64, time: i64) -> Result<(), StoreError>;

    /// Records a failed attempt; with `give_up` the message leaves the
    /// pending set for good (kept for inspection).
    fn mark_failed(&mut self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError>;

    /// How many messages of `kind` to `recipient` were sent at or after
    /// `since` (rate limits).
    fn sent_since(
        &mut self,
        kind: MessageKind,
        recipient: &str,
        since: i64,
    ) -> Result<u64, StoreError>;

    /// Deletes records older than `before`, and sent or abandoned messages
    /// created before it; returns how many records went.
    fn purge(&mut self, before: i64) -> Result<u64, StoreError>;
}
