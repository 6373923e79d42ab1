//! Where evaluation records, generated reports and outgoing report mail are
//! kept: SQLite by default (one file, WAL, nothing to run), PostgreSQL for
//! several MX hosts sharing one report set.
//!
//! Every method is one transaction: it happens completely or not at all.
//!
//! The milter writes through a [`recorder::Recorder`], which never blocks
//! mail; the report generator and the sender use a [`Store`] directly.
//!
//! # Schema (version 2)
//!
//! The same in both databases (PostgreSQL type, then SQLite's after a slash,
//! where they differ):
//!
//! - `dmarc_policies`: one row per distinct published policy, in normal
//!   form ([`PublishedPolicy::normalized`](crate::model::PublishedPolicy::normalized)):
//!   `id`, `hash` (SHA-256 of its canonical text, unique), `last_seen`,
//!   `domain`, `discovery`, `p`, `sp`, `np`, `adkim`, `aspf`, `pct`, `fo`,
//!   `testing`, `psd`, `rua` and `ruf` (compact JSON lists of at most
//!   100 usable `mailto:` destinations). A policy seen by a million
//!   messages is stored once.
//! - `dmarc_records`: one row per [`EvaluationRecord`], in normal form
//!   ([`EvaluationRecord::normalized`]: bounded field lengths): `id`,
//!   `time`, `source_ip`, `header_from`, `envelope_from`, `envelope_to`,
//!   `policy_domain` and `policy_id` (NULL for a record without a
//!   policy), `dmarc`, `disposition`, `dkim_aligned`, `spf_aligned`,
//!   `reasons` (compact JSON), `spf_domain`, `spf_scope`, `spf_result`,
//!   `spf_human_result` and `dkim` (compact JSON). Results are stored as
//!   their report words (`pass`, `reject`...). Indexed on
//!   `(policy_domain, time)`.
//! - `dmarc_reports`: `id`, `policy_domain`, `period_begin`, `period_end`,
//!   `report_id`, `message_count`, `created`; unique on `(policy_domain,
//!   period_begin, period_end)`, which is what makes
//!   [`Store::add_report`] atomic between hosts.
//! - `dmarc_messages`: `id` (never reused), `kind` (`aggregate` or
//!   `failure`), `policy_domain`, `sender`, `recipient` (lower case),
//!   `payload` (BYTEA / BLOB), `created`, `state` (`pending`, `sent` or
//!   `abandoned`), `attempts`, `last_error`, `sent_at`, `claimed_until`;
//!   indexed on `(state, created)`, `(state, id)` and `(kind, sent_at)`.
//!
//! Times are seconds since the epoch (BIGINT / INTEGER); booleans are
//! BOOLEAN / INTEGER. The version is `PRAGMA user_version` in SQLite and
//! the table `dmarc_schema` in PostgreSQL. Opening a store reads the
//! version without taking a write lock; only a new store (schema created)
//! or one of version 1 (migrated, see `migrate.rs`) is written to, in one
//! transaction; a store of another version is refused with a
//! non-transient error. [`check`] reads the version without writing
//! anything, not even creating a missing file.
//!
//! Both stores also purge, in [`Store::purge`], the reports whose period
//! ended by the cut-off (their records are gone, so they cannot be made
//! again) and the policies no record refers to; [`Store::mark_sent`] and
//! [`Store::mark_failed`] of an unknown id are non-transient errors;
//! [`Store::sent_since`] compares the recipient exactly as given (queue
//! recipients in lower case, as [`crate::destination::usable_address`]
//! writes them, and count them so).

mod migrate;
pub mod outbox;
mod postgres;
pub mod recorder;
mod sql;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use self::sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::aggregate::Row;
use crate::model::{EvaluationRecord, PublishedPolicy};
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

/// What [`check`] found, without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStatus {
    /// The SQLite file does not exist: it will be created (with its
    /// schema) when the milter starts, in a directory that exists.
    Missing,
    /// The database is empty: the schema will be created at start.
    Empty,
    /// The schema is the current one.
    Current,
    /// The schema is of an older version this program migrates at start.
    Migrate {
        /// The version found.
        from: i64,
    },
}

impl fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreStatus::Missing => f.write_str("does not exist yet; it will be created at start"),
            StoreStatus::Empty => f.write_str("is empty; its schema will be created at start"),
            StoreStatus::Current => f.write_str("is ready"),
            StoreStatus::Migrate { from } => write!(
                f,
                "has schema version {from}; it will be migrated to version {} at start",
                sql::SCHEMA_VERSION
            ),
        }
    }
}

/// Reads the state of the store at `location` without changing anything:
/// an SQLite file is opened read-only (and never created, nor its `-wal`
/// and `-shm` files), a PostgreSQL database read in a read-only
/// transaction. For `--check-config`, run by an operator who may not be
/// the service's user.
///
/// # Errors
///
/// As [`open`]: the directory of an SQLite file missing, a file that is not
/// a database of ours, a schema of an unknown version, a PostgreSQL
/// database that cannot be reached (transient) or refuses us, or whose
/// encoding is not UTF-8.
///
/// Call it from a plain thread, not from an async task (see [`open`]).
pub fn check(location: &StoreLocation) -> Result<StoreStatus, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => SqliteStore::check(path),
        StoreLocation::Postgres(url) => PostgresStore::check(url),
    }
}

/// Report mails of one kind in the store, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateCounts {
    /// Waiting for delivery (`dmarc-milter report`).
    pub pending: u64,
    /// Delivered (kept for `report_retention_days`).
    pub sent: u64,
    /// Given up on (refused destination, too many attempts).
    pub abandoned: u64,
}

/// The report mails in the store, by kind and state ([`message_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCounts {
    /// Aggregate reports (RFC 9990).
    pub aggregate: StateCounts,
    /// Failure reports (RFC 9991).
    pub failure: StateCounts,
}

impl MessageCounts {
    /// Adds `n` messages of the stored `kind` and `state` words; other
    /// words are not ours and are left out.
    fn add(&mut self, kind: &str, state: &str, n: i64) {
        let of_kind = match kind {
            "aggregate" => &mut self.aggregate,
            "failure" => &mut self.failure,
            _ => return,
        };
        let slot = match state {
            "pending" => &mut of_kind.pending,
            "sent" => &mut of_kind.sent,
            "abandoned" => &mut of_kind.abandoned,
            _ => return,
        };
        *slot = slot.saturating_add(u64::try_from(n).unwrap_or(0));
    }
}

/// Counts the report mails in the store at `location` by kind and state,
/// without changing anything (opened as [`check`] opens it): what a
/// monitoring scrape shows of the delivery that `dmarc-milter report`
/// does in another process (or on another host sharing a PostgreSQL
/// store). A store not created yet holds none.
///
/// # Errors
///
/// As [`check`].
///
/// Call it from a plain thread, not from an async task (see [`open`]).
pub fn message_counts(location: &StoreLocation) -> Result<MessageCounts, StoreError> {
    let mut counts = MessageCounts::default();
    let rows = match location {
        StoreLocation::Sqlite(path) => SqliteStore::message_counts(path)?,
        StoreLocation::Postgres(url) => PostgresStore::message_counts(url)?,
    };
    for (kind, state, n) in rows {
        counts.add(&kind, &state, n);
    }
    Ok(counts)
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

/// A pending message as listed by [`Store::pending_messages`]: everything
/// but its payload ([`Store::payload`]), so that listing many costs
/// little memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The store's identifier for it (ids only grow).
    pub id: i64,
    /// Aggregate or failure report.
    pub kind: MessageKind,
    /// The policy domain it reports on.
    pub policy_domain: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// When it was queued.
    pub created: i64,
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
    /// oldest first, as stored (normalised), with their policies. Reads
    /// them all into memory: for inspection and tests; the report job
    /// uses [`Store::report_rows`].
    fn records(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Vec<EvaluationRecord>, StoreError>;

    /// The report rows of one policy domain for `[begin, end)`: its records
    /// grouped by every fact a row reports, with their counts, given to
    /// `visit` one at a time in a fixed order (the database groups and
    /// sorts; memory does not grow with the number of records).
    fn report_rows(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(Row, u64),
    ) -> Result<(), StoreError>;

    /// The policy of the latest record of one policy domain in
    /// `[begin, end)` (RFC 9990 §3.1: the final configuration observed),
    /// or `None` without records.
    fn latest_policy(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Option<PublishedPolicy>, StoreError>;

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
    ) -> Result<bool, StoreError> {
        self.add_report_with(report, &mut messages.iter().cloned())
    }

    /// [`Store::add_report`] with the messages made one at a time, while
    /// they are stored: a large report's mails are never all in memory at
    /// once.
    fn add_report_with(
        &mut self,
        report: &ReportEntry,
        messages: &mut dyn Iterator<Item = OutgoingMessage>,
    ) -> Result<bool, StoreError>;

    /// Queues one message (a failure report).
    fn queue_message(&mut self, message: &OutgoingMessage) -> Result<(), StoreError>;

    /// Messages not yet sent and not given up on, with an id above `after`,
    /// by id, at most `limit`, without their payloads: a cursor (pass the
    /// last id seen to get the next batch).
    fn pending_messages(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError>;

    /// The payload of message `id`.
    ///
    /// # Errors
    ///
    /// A non-transient error when there is no such message.
    fn payload(&mut self, id: i64) -> Result<Vec<u8>, StoreError>;

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

    /// How many messages of `kind` about `policy_domain` were sent at or
    /// after `since` (rate limits).
    fn sent_since_domain(
        &mut self,
        kind: MessageKind,
        policy_domain: &str,
        since: i64,
    ) -> Result<u64, StoreError>;

    /// Deletes records older than `before`, the policies no longer used,
    /// and sent or abandoned messages created before it; returns how many
    /// records went.
    fn purge(&mut self, before: i64) -> Result<u64, StoreError>;
}
