//! The schema and the statements, written once for both backends so that
//! SQLite and PostgreSQL keep exactly the same data.
//!
//! Statements use PostgreSQL's `$1` placeholders; the SQLite backend turns
//! them into `?1`, SQLite's numbered form (see [`sqlite_placeholders`]).
//! The only differences between the two schemas are the column types of a
//! [`Dialect`].

use super::{MessageKind, StoreError};
use crate::model::{
    ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DmarcWord,
    EvaluationRecord, PolicyOverride, PolicyWord, PublishedPolicy, ReportDestination, SpfAuth,
    SpfScopeWord, SpfWord,
};
use serde::{de::DeserializeOwned, Serialize};
use std::{net::IpAddr, str::FromStr};

/// The version of the schema below; a store of another version is refused.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The type of a record column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Int,
    Text,
    Bool,
}

/// One column of `dmarc_records`.
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: ColumnType,
    pub(crate) nullable: bool,
}

const fn column(name: &'static str, kind: ColumnType, nullable: bool) -> Column {
    Column {
        name,
        kind,
        nullable,
    }
}

use ColumnType::{Bool, Int, Text};

/// The columns of `dmarc_records` after `id`, in the order of
/// [`record_values`] and [`record_from_values`]. The scalar fields of an
/// [`EvaluationRecord`] are real columns; its lists are JSON text. The
/// `policy_*` columns are all NULL for a record without a policy.
pub(crate) const RECORD_COLUMNS: &[Column] = &[
    column("time", Int, false),
    column("source_ip", Text, false),
    column("header_from", Text, false),
    column("envelope_from", Text, true),
    column("envelope_to", Text, true),
    column("policy_domain", Text, true),
    column("policy_discovery", Text, true),
    column("policy_p", Text, true),
    column("policy_sp", Text, true),
    column("policy_np", Text, true),
    column("policy_adkim", Text, true),
    column("policy_aspf", Text, true),
    column("policy_pct", Int, true),
    column("policy_fo", Text, true),
    column("policy_testing", Bool, true),
    column("policy_psd", Bool, true),
    column("policy_rua", Text, true),
    column("policy_ruf", Text, true),
    column("dmarc", Text, false),
    column("disposition", Text, false),
    column("dkim_aligned", Text, false),
    column("spf_aligned", Text, false),
    column("reasons", Text, false),
    column("spf_domain", Text, true),
    column("spf_scope", Text, true),
    column("spf_result", Text, true),
    column("spf_human_result", Text, true),
    column("dkim", Text, false),
];

/// A record column's value, typed like its column (so that PostgreSQL can
/// check a NULL against the column type too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// How a backend spells the column types.
pub(crate) struct Dialect {
    /// A row id that grows and is never reused.
    pub(crate) id: &'static str,
    /// A 64-bit integer.
    pub(crate) int: &'static str,
    /// A boolean.
    pub(crate) bool: &'static str,
    /// Bytes.
    pub(crate) blob: &'static str,
}

/// The statements creating the schema, in order; each is idempotent
/// (`IF NOT EXISTS`).
pub(crate) fn schema(dialect: &Dialect) -> Vec<String> {
    let Dialect {
        id,
        int,
        bool,
        blob,
    } = dialect;
    let columns: Vec<String> = RECORD_COLUMNS
        .iter()
        .map(|column| {
            let kind = match column.kind {
                Int => int,
                Text => "TEXT",
                Bool => bool,
            };
            let null = if column.nullable { "" } else { " NOT NULL" };
            format!("{} {kind}{null}", column.name)
        })
        .collect();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS dmarc_records (id {id}, {})",
            columns.join(", ")
        ),
        "CREATE INDEX IF NOT EXISTS dmarc_records_domain_time \
         ON dmarc_records (policy_domain, time)"
            .to_string(),
        "CREATE INDEX IF NOT EXISTS dmarc_records_time ON dmarc_records (time)".to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS dmarc_reports (\
             id {id}, \
             policy_domain TEXT NOT NULL, \
             period_begin {int} NOT NULL, \
             period_end {int} NOT NULL, \
             report_id TEXT NOT NULL, \
             message_count {int} NOT NULL, \
             created {int} NOT NULL, \
             UNIQUE (policy_domain, period_begin, period_end))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS dmarc_messages (\
             id {id}, \
             kind TEXT NOT NULL CHECK (kind IN ('aggregate', 'failure')), \
             policy_domain TEXT NOT NULL, \
             sender TEXT NOT NULL, \
             recipient TEXT NOT NULL, \
             payload {blob} NOT NULL, \
             created {int} NOT NULL, \
             state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'abandoned')), \
             attempts INTEGER NOT NULL, \
             last_error TEXT, \
             sent_at {int}, \
             claimed_until {int})"
        ),
        "CREATE INDEX IF NOT EXISTS dmarc_messages_state \
         ON dmarc_messages (state, created)"
            .to_string(),
        // Not on recipient: an address from a DNS record can be longer than
        // a PostgreSQL index entry may be.
        "CREATE INDEX IF NOT EXISTS dmarc_messages_sent ON dmarc_messages (kind, sent_at)"
            .to_string(),
    ]
}

/// `INSERT` of `rows` records: `$1` to `$28` for the first, and so on.
pub(crate) fn insert_records(rows: usize) -> String {
    let names: Vec<&str> = RECORD_COLUMNS.iter().map(|column| column.name).collect();
    let width = RECORD_COLUMNS.len();
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=width)
                .map(|column| format!("${}", row * width + column))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO dmarc_records ({}) VALUES {}",
        names.join(", "),
        tuples.join(", ")
    )
}

/// The records of `$1` with `$2 <= time < $3`, oldest first.
pub(crate) fn select_records() -> String {
    let names: Vec<&str> = RECORD_COLUMNS.iter().map(|column| column.name).collect();
    format!(
        "SELECT {} FROM dmarc_records \
         WHERE policy_domain = $1 AND time >= $2 AND time < $3 ORDER BY time, id",
        names.join(", ")
    )
}

/// The policy domains of records with `$1 <= time < $2` (sorted by the
/// caller, in byte order whatever the database's collation).
pub(crate) const SELECT_POLICY_DOMAINS: &str = "SELECT DISTINCT policy_domain FROM dmarc_records \
     WHERE policy_domain IS NOT NULL AND time >= $1 AND time < $2";

/// How many reports exist for (`$1`, `$2`, `$3`).
pub(crate) const COUNT_REPORTS: &str = "SELECT count(*) FROM dmarc_reports \
     WHERE policy_domain = $1 AND period_begin = $2 AND period_end = $3";

/// Adds a report unless one exists for its domain and period: the unique
/// constraint decides, so two hosts racing get one row (1 changed) and
/// nothing (0 changed).
pub(crate) const INSERT_REPORT: &str = "INSERT INTO dmarc_reports \
     (policy_domain, period_begin, period_end, report_id, message_count, created) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (policy_domain, period_begin, period_end) DO NOTHING";

/// Queues a message: `$1` kind, `$2` policy domain, `$3` sender, `$4`
/// recipient, `$5` payload, `$6` created.
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO dmarc_messages \
     (kind, policy_domain, sender, recipient, payload, created, state, attempts) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0)";

/// The `$1` oldest pending messages.
pub(crate) const SELECT_PENDING: &str = "SELECT id, kind, policy_domain, sender, recipient, \
     payload, created, attempts, last_error FROM dmarc_messages \
     WHERE state = 'pending' ORDER BY created, id LIMIT $1";

/// Claims pending message `$1` until `$3` if no one holds it at `$2`
/// (one UPDATE: atomic in both databases).
pub(crate) const CLAIM: &str = "UPDATE dmarc_messages SET claimed_until = $3 \
     WHERE id = $1 AND state = 'pending' \
     AND (claimed_until IS NULL OR claimed_until <= $2)";

/// Message `$1` delivered at `$2`.
pub(crate) const MARK_SENT: &str =
    "UPDATE dmarc_messages SET state = 'sent', sent_at = $2, claimed_until = NULL WHERE id = $1";

/// A failed attempt on message `$1` with error `$2` (its claim released);
/// `$3` gives up on a pending message (a sent one stays sent).
pub(crate) const MARK_FAILED: &str = "UPDATE dmarc_messages \
     SET attempts = attempts + 1, last_error = $2, claimed_until = NULL, \
     state = CASE WHEN state = 'pending' AND $3 THEN 'abandoned' ELSE state END \
     WHERE id = $1";

/// Messages of kind `$1` to `$2` sent at or after `$3`.
pub(crate) const COUNT_SENT: &str = "SELECT count(*) FROM dmarc_messages \
     WHERE kind = $1 AND recipient = $2 AND state = 'sent' AND sent_at >= $3";

/// Records older than `$1`.
pub(crate) const PURGE_RECORDS: &str = "DELETE FROM dmarc_records WHERE time < $1";

/// Sent or abandoned messages created before `$1`.
pub(crate) const PURGE_MESSAGES: &str = "DELETE FROM dmarc_messages \
     WHERE state IN ('sent', 'abandoned') AND created < $1";

/// Reports whose period ended by `$1`: their records are gone too, so no
/// report for that period can be made again.
pub(crate) const PURGE_REPORTS: &str = "DELETE FROM dmarc_reports WHERE period_end <= $1";

/// A statement in SQLite's numbered placeholders (`?1` for `$1`). No
/// statement of this module has a `$` elsewhere.
pub(crate) fn sqlite_placeholders(statement: &str) -> String {
    statement.replace('$', "?")
}

/// The word stored for a message kind.
pub(crate) fn kind_word(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Aggregate => "aggregate",
        MessageKind::Failure => "failure",
    }
}

/// The message kind of a stored word.
pub(crate) fn kind_of(word: &str) -> Result<MessageKind, StoreError> {
    match word {
        "aggregate" => Ok(MessageKind::Aggregate),
        "failure" => Ok(MessageKind::Failure),
        _ => Err(corrupt("kind", &format!("unknown message kind {word:?}"))),
    }
}

/// The error for a stored value this program cannot read back.
pub(crate) fn corrupt(column: &str, problem: &str) -> StoreError {
    StoreError {
        message: format!("stored row has a bad value in column {column}: {problem}"),
        transient: false,
    }
}

/// The error of `mark_sent` and `mark_failed` for an id the store does not
/// have.
pub(crate) fn message_found(found: bool, id: i64) -> Result<(), StoreError> {
    if found {
        Ok(())
    } else {
        Err(StoreError {
            message: format!("no queued message with id {id}"),
            transient: false,
        })
    }
}

/// A count or size as the signed 64-bit integer columns hold.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError {
        message: format!("{what} {value} does not fit the store"),
        transient: false,
    })
}

/// The values of a record, in the order of [`RECORD_COLUMNS`].
pub(crate) fn record_values(record: &EvaluationRecord) -> Result<Vec<Value>, StoreError> {
    let text = |value: &str| Value::Text(Some(value.to_string()));
    let opt_text = |value: Option<&str>| Value::Text(value.map(str::to_string));
    let policy = record.policy.as_ref();
    let spf = record.spf.as_ref();
    Ok(vec![
        Value::Int(Some(record.time)),
        text(&record.source_ip.to_string()),
        text(&record.header_from),
        opt_text(record.envelope_from.as_deref()),
        opt_text(record.envelope_to.as_deref()),
        opt_text(policy.map(|policy| policy.domain.as_str())),
        opt_text(policy.map(|policy| policy.discovery_method.as_str())),
        opt_text(policy.map(|policy| policy.p.as_str())),
        opt_text(policy.and_then(|policy| policy.sp).map(PolicyWord::as_str)),
        opt_text(policy.and_then(|policy| policy.np).map(PolicyWord::as_str)),
        opt_text(policy.map(|policy| policy.adkim.as_str())),
        opt_text(policy.map(|policy| policy.aspf.as_str())),
        Value::Int(policy.map(|policy| i64::from(policy.pct))),
        opt_text(policy.map(|policy| policy.fo.as_str())),
        Value::Bool(policy.map(|policy| policy.testing)),
        Value::Bool(policy.map(|policy| policy.psd)),
        Value::Text(policy.map(|policy| json(&policy.rua)).transpose()?),
        Value::Text(policy.map(|policy| json(&policy.ruf)).transpose()?),
        text(record.dmarc.as_str()),
        text(record.disposition.as_str()),
        text(record.dkim_aligned.as_str()),
        text(record.spf_aligned.as_str()),
        Value::Text(Some(json(&record.reasons)?)),
        opt_text(spf.map(|spf| spf.domain.as_str())),
        opt_text(spf.map(|spf| spf.scope.as_str())),
        opt_text(spf.map(|spf| spf.result.as_str())),
        opt_text(spf.and_then(|spf| spf.human_result.as_deref())),
        Value::Text(Some(json(&record.dkim)?)),
    ])
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError {
        message: format!("cannot encode a record list as JSON: {error}"),
        transient: false,
    })
}

/// The record of a row's values, in the order of [`RECORD_COLUMNS`].
pub(crate) fn record_from_values(values: Vec<Value>) -> Result<EvaluationRecord, StoreError> {
    let mut row = Reader {
        values: values.into_iter(),
        columns: RECORD_COLUMNS.iter(),
    };
    let time = row.int()?;
    let source_ip: IpAddr = row.word()?;
    let header_from = row.text()?;
    let envelope_from = row.opt_text()?;
    let envelope_to = row.opt_text()?;
    let policy = match row.opt_text()? {
        Some(domain) => Some(PublishedPolicy {
            domain,
            discovery_method: row.word::<DiscoveryWord>()?,
            p: row.word::<PolicyWord>()?,
            sp: row.opt_word::<PolicyWord>()?,
            np: row.opt_word::<PolicyWord>()?,
            adkim: row.word::<AlignmentWord>()?,
            aspf: row.word::<AlignmentWord>()?,
            pct: row.pct()?,
            fo: row.text()?,
            testing: row.bool()?,
            psd: row.bool()?,
            rua: row.json::<Vec<ReportDestination>>()?,
            ruf: row.json::<Vec<ReportDestination>>()?,
        }),
        None => {
            // The other policy columns, policy_discovery to policy_ruf, are
            // NULL too.
            for _ in 0..12 {
                row.next()?;
            }
            None
        }
    };
    let dmarc = row.word::<DmarcWord>()?;
    let disposition = row.word::<ActionDisposition>()?;
    let dkim_aligned = row.word::<AlignedWord>()?;
    let spf_aligned = row.word::<AlignedWord>()?;
    let reasons = row.json::<Vec<PolicyOverride>>()?;
    let spf = match row.opt_text()? {
        Some(domain) => Some(SpfAuth {
            domain,
            scope: row.word::<SpfScopeWord>()?,
            result: row.word::<SpfWord>()?,
            human_result: row.opt_text()?,
        }),
        None => {
            // spf_scope, spf_result, spf_human_result.
            for _ in 0..3 {
                row.next()?;
            }
            None
        }
    };
    let dkim = row.json::<Vec<DkimAuth>>()?;
    Ok(EvaluationRecord {
        time,
        source_ip,
        header_from,
        envelope_from,
        envelope_to,
        policy,
        dmarc,
        disposition,
        dkim_aligned,
        spf_aligned,
        reasons,
        spf,
        dkim,
    })
}

/// Reads a row's values in column order, naming the column in errors.
struct Reader<'a> {
    values: std::vec::IntoIter<Value>,
    columns: std::slice::Iter<'a, Column>,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(&'static str, Value), StoreError> {
        match (self.columns.next(), self.values.next()) {
            (Some(column), Some(value)) => Ok((column.name, value)),
            _ => Err(corrupt("(end of row)", "fewer values than columns")),
        }
    }

    fn opt_text(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            (_, Value::Text(text)) => Ok(text),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    fn text(&mut self) -> Result<String, StoreError> {
        match self.next()? {
            (_, Value::Text(Some(text))) => Ok(text),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        match self.next()? {
            (_, Value::Int(Some(int))) => Ok(int),
            (name, _) => Err(corrupt(name, "not an integer")),
        }
    }

    fn pct(&mut self) -> Result<u8, StoreError> {
        match self.next()? {
            (name, Value::Int(Some(int))) => {
                u8::try_from(int).map_err(|_| corrupt(name, &format!("{int} is not a percentage")))
            }
            (name, _) => Err(corrupt(name, "not an integer")),
        }
    }

    fn bool(&mut self) -> Result<bool, StoreError> {
        match self.next()? {
            (_, Value::Bool(Some(flag))) => Ok(flag),
            (name, _) => Err(corrupt(name, "not a boolean")),
        }
    }

    fn opt_word<T>(&mut self) -> Result<Option<T>, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.next()? {
            (name, Value::Text(Some(text))) => text
                .parse()
                .map(Some)
                .map_err(|error: T::Err| corrupt(name, &error.to_string())),
            (_, Value::Text(None)) => Ok(None),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    fn word<T>(&mut self) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.next()? {
            (name, Value::Text(Some(text))) => text
                .parse()
                .map_err(|error: T::Err| corrupt(name, &error.to_string())),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    fn json<T: DeserializeOwned>(&mut self) -> Result<T, StoreError> {
        match self.next()? {
            (name, Value::Text(Some(text))) => {
                serde_json::from_str(&text).map_err(|error| corrupt(name, &error.to_string()))
            }
            (name, _) => Err(corrupt(name, "not JSON text")),
        }
    }
}
