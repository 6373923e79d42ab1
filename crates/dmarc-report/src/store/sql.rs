//! The schema and the statements, written once for both backends so that
//! SQLite and PostgreSQL keep exactly the same data.
//!
//! Statements use PostgreSQL's `$1` placeholders; the SQLite backend turns
//! them into `?1`, SQLite's numbered form (see [`sqlite_placeholders`]).
//! The differences between the two schemas are the spellings of a
//! [`Dialect`].

use super::{MessageKind, StoreError};
use crate::aggregate::Row as ReportRow;
use crate::model::{
    ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DkimWord, DmarcWord,
    EvaluationRecord, OverrideWord, PolicyOverride, PolicyWord, PublishedPolicy, ReportDestination,
    SpfAuth, SpfScopeWord, SpfWord,
};
use serde::{de::DeserializeOwned, Serialize};
use std::{net::IpAddr, str::FromStr};

/// The version of the schema below; version 1 is migrated
/// ([`super::migrate`]), another is refused.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Int,
    Text,
    Bool,
}

/// One column of a table.
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: ColumnType,
    pub(crate) nullable: bool,
}

pub(crate) const fn column(name: &'static str, kind: ColumnType, nullable: bool) -> Column {
    Column {
        name,
        kind,
        nullable,
    }
}

use ColumnType::{Bool, Int, Text};

/// The columns of `dmarc_records` after `id`, in the order of
/// [`record_values`]. The scalar fields of an [`EvaluationRecord`] are
/// real columns; its lists are compact JSON ([`encode_dkim`],
/// [`encode_reasons`]); its policy is a row of `dmarc_policies`
/// (`policy_id`), with the policy domain kept here too for the index.
pub(crate) const RECORD_COLUMNS: &[Column] = &[
    column("time", Int, false),
    column("source_ip", Text, false),
    column("header_from", Text, false),
    column("envelope_from", Text, true),
    column("envelope_to", Text, true),
    column("policy_domain", Text, true),
    column("policy_id", Int, true),
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

/// The columns of `dmarc_policies` after `id`, in the order of
/// [`policy_values`]: one row per distinct published policy (normalised,
/// keyed by the SHA-256 of its text), however many messages it applied to.
pub(crate) const POLICY_COLUMNS: &[Column] = &[
    column("hash", Text, false),
    column("last_seen", Int, false),
    column("domain", Text, false),
    column("discovery", Text, false),
    column("p", Text, false),
    column("sp", Text, true),
    column("np", Text, true),
    column("adkim", Text, false),
    column("aspf", Text, false),
    column("pct", Int, false),
    column("fo", Text, false),
    column("testing", Bool, false),
    column("psd", Bool, false),
    column("rua", Text, false),
    column("ruf", Text, false),
];

/// The columns of a report row, the grouping key of
/// [`select_report_rows`] (RFC 9990 §3.1.1: one row per tuple of IP,
/// results and identifiers).
pub(crate) const ROW_COLUMNS: &[Column] = &[
    column("source_ip", Text, false),
    column("header_from", Text, false),
    column("envelope_from", Text, true),
    column("envelope_to", Text, true),
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

/// A column's value, typed like its column (so that PostgreSQL can check a
/// NULL against the column type too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// How a backend spells what differs.
pub(crate) struct Dialect {
    /// A row id that grows and is never reused.
    pub(crate) id: &'static str,
    /// A 64-bit integer.
    pub(crate) int: &'static str,
    /// A boolean.
    pub(crate) bool: &'static str,
    /// Bytes.
    pub(crate) blob: &'static str,
    /// The larger of two values (`max` in SQLite, `GREATEST` in
    /// PostgreSQL).
    pub(crate) greatest: &'static str,
    /// Text compared byte by byte in `ORDER BY`, whatever the database's
    /// locale.
    pub(crate) byte_order: &'static str,
}

fn column_list(columns: &[Column], dialect: &Dialect) -> String {
    columns
        .iter()
        .map(|column| {
            let kind = match column.kind {
                Int => dialect.int,
                Text => "TEXT",
                Bool => dialect.bool,
            };
            let null = if column.nullable { "" } else { " NOT NULL" };
            format!("{} {kind}{null}", column.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE` of the records table, named `table`.
pub(crate) fn create_records(dialect: &Dialect, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (id {}, {})",
        dialect.id,
        column_list(RECORD_COLUMNS, dialect)
    )
}

/// The index of `dmarc_records`: reports read one policy domain and
/// period. None on `time` alone: only the daily purge filters on it, and a
/// scan once a day costs less than an index entry per record (the store
/// grows by about 200 bytes per ordinary evaluation, see BENCHMARKS.md).
pub(crate) const RECORD_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS dmarc_records_domain_time ON dmarc_records (policy_domain, time)",
];

/// `CREATE TABLE` of `dmarc_policies`.
pub(crate) fn create_policies(dialect: &Dialect) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS dmarc_policies (id {}, {}, UNIQUE (hash))",
        dialect.id,
        column_list(POLICY_COLUMNS, dialect)
    )
}

/// The statements creating the whole schema in an empty database, in
/// order; each is idempotent (`IF NOT EXISTS`).
pub(crate) fn schema(dialect: &Dialect) -> Vec<String> {
    let Dialect { id, int, blob, .. } = dialect;
    let mut statements = vec![
        create_policies(dialect),
        create_records(dialect, "dmarc_records"),
    ];
    statements.extend(RECORD_INDEXES.iter().map(|s| s.to_string()));
    statements.extend([
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
    ]);
    statements.extend(MESSAGE_INDEXES.iter().map(|s| s.to_string()));
    statements
}

/// The indexes of `dmarc_messages` (version 2).
pub(crate) const MESSAGE_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS dmarc_messages_state ON dmarc_messages (state, created)",
    "CREATE INDEX IF NOT EXISTS dmarc_messages_pending ON dmarc_messages (state, id)",
    // Not on recipient: an address from a DNS record could be longer than
    // a PostgreSQL index entry may be (they are capped now, but old rows).
    "CREATE INDEX IF NOT EXISTS dmarc_messages_sent ON dmarc_messages (kind, sent_at)",
];

/// `INSERT` of `rows` records into `table`: `$1` to `$17` for the first,
/// and so on.
pub(crate) fn insert_records(table: &str, rows: usize) -> String {
    insert_rows(table, RECORD_COLUMNS, rows)
}

fn insert_rows(table: &str, columns: &[Column], rows: usize) -> String {
    let names: Vec<&str> = columns.iter().map(|column| column.name).collect();
    let width = columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=width)
                .map(|column| format!("${}", row * width + column))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        names.join(", "),
        tuples.join(", ")
    )
}

/// Adds a policy or, when one with the same hash exists, moves its
/// `last_seen` forward; returns its id either way.
pub(crate) fn upsert_policy(dialect: &Dialect) -> String {
    format!(
        "{} ON CONFLICT (hash) DO UPDATE SET last_seen = {}(dmarc_policies.last_seen, excluded.last_seen) RETURNING id",
        insert_rows("dmarc_policies", POLICY_COLUMNS, 1),
        dialect.greatest
    )
}

/// The columns read back for a whole record: the record's (without
/// `policy_id`) and its policy's, NULL when it has none.
fn full_record_columns() -> String {
    RECORD_COLUMNS
        .iter()
        .filter(|column| column.name != "policy_id")
        .map(|column| format!("r.{}", column.name))
        .chain(policy_layout().map(|column| format!("p.{}", column.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The records of `$1` with `$2 <= time < $3`, oldest first, with their
/// policies.
pub(crate) fn select_records() -> String {
    format!(
        "SELECT {} FROM dmarc_records r LEFT JOIN dmarc_policies p ON p.id = r.policy_id \
         WHERE r.policy_domain = $1 AND r.time >= $2 AND r.time < $3 ORDER BY r.time, r.id",
        full_record_columns()
    )
}

/// The report rows of `$1` with `$2 <= time < $3`: records grouped by
/// every reported fact, with their counts, in a fixed order (bytes, NULL
/// first), so that the database does the grouping and the report job
/// reads one row at a time.
pub(crate) fn select_report_rows(dialect: &Dialect) -> String {
    let names: Vec<&str> = ROW_COLUMNS.iter().map(|column| column.name).collect();
    let order: Vec<String> = names
        .iter()
        .map(|name| format!("{name}{} NULLS FIRST", dialect.byte_order))
        .collect();
    format!(
        "SELECT {names}, count(*) FROM dmarc_records \
         WHERE policy_domain = $1 AND time >= $2 AND time < $3 \
         GROUP BY {names} ORDER BY {order}",
        names = names.join(", "),
        order = order.join(", ")
    )
}

/// The policy of the latest record of `$1` with `$2 <= time < $3` (the
/// later row of equal times).
pub(crate) fn select_latest_policy() -> String {
    let names: Vec<String> = policy_layout()
        .map(|column| format!("p.{}", column.name))
        .collect();
    format!(
        "SELECT {} FROM dmarc_records r JOIN dmarc_policies p ON p.id = r.policy_id \
         WHERE r.policy_domain = $1 AND r.time >= $2 AND r.time < $3 \
         ORDER BY r.time DESC, r.id DESC LIMIT 1",
        names.join(", ")
    )
}

/// The policy domains of records with `$1 <= time < $2` (sorted by the
/// caller, in byte order whatever the database's collation).
/// The report mails by kind and state (for metrics).
pub(crate) const COUNT_MESSAGES_BY_STATE: &str =
    "SELECT kind, state, count(*) FROM dmarc_messages GROUP BY kind, state";

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

/// At most `$2` pending messages with an id above `$1`, by id, without
/// their payloads (a cursor: each batch starts after the last id seen).
pub(crate) const SELECT_PENDING: &str = "SELECT id, kind, policy_domain, sender, recipient, \
     created, attempts, last_error FROM dmarc_messages \
     WHERE state = 'pending' AND id > $1 ORDER BY id LIMIT $2";

/// The payload of message `$1`.
pub(crate) const SELECT_PAYLOAD: &str = "SELECT payload FROM dmarc_messages WHERE id = $1";

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

/// Messages of kind `$1` about policy domain `$2` sent at or after `$3`.
pub(crate) const COUNT_SENT_DOMAIN: &str = "SELECT count(*) FROM dmarc_messages \
     WHERE kind = $1 AND policy_domain = $2 AND state = 'sent' AND sent_at >= $3";

/// Records older than `$1`.
pub(crate) const PURGE_RECORDS: &str = "DELETE FROM dmarc_records WHERE time < $1";

/// Policies last seen before `$1`: no record left refers to them (a
/// record refers to a policy seen at its time or later, and the records
/// older than `$1` went first).
pub(crate) const PURGE_POLICIES: &str = "DELETE FROM dmarc_policies WHERE last_seen < $1";

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

/// The values of a (normalised) record, in the order of
/// [`RECORD_COLUMNS`], its policy being row `policy_id`.
pub(crate) fn record_values(record: &EvaluationRecord, policy_id: Option<i64>) -> Vec<Value> {
    let text = |value: &str| Value::Text(Some(value.to_string()));
    let opt_text = |value: Option<&str>| Value::Text(value.map(str::to_string));
    let spf = record.spf.as_ref();
    vec![
        Value::Int(Some(record.time)),
        text(&record.source_ip.to_string()),
        text(&record.header_from),
        opt_text(record.envelope_from.as_deref()),
        opt_text(record.envelope_to.as_deref()),
        opt_text(record.policy.as_ref().map(|policy| policy.domain.as_str())),
        Value::Int(policy_id),
        text(record.dmarc.as_str()),
        text(record.disposition.as_str()),
        text(record.dkim_aligned.as_str()),
        text(record.spf_aligned.as_str()),
        Value::Text(Some(encode_reasons(&record.reasons))),
        opt_text(spf.map(|spf| spf.domain.as_str())),
        opt_text(spf.map(|spf| spf.scope.as_str())),
        opt_text(spf.map(|spf| spf.result.as_str())),
        opt_text(spf.and_then(|spf| spf.human_result.as_deref())),
        Value::Text(Some(encode_dkim(&record.dkim))),
    ]
}

/// The values of a (normalised) policy seen at `time`, in the order of
/// [`POLICY_COLUMNS`].
pub(crate) fn policy_values(policy: &PublishedPolicy, time: i64) -> Vec<Value> {
    let text = |value: &str| Value::Text(Some(value.to_string()));
    vec![
        text(&policy_hash(policy)),
        Value::Int(Some(time)),
        text(&policy.domain),
        text(policy.discovery_method.as_str()),
        text(policy.p.as_str()),
        Value::Text(policy.sp.map(|sp| sp.as_str().to_string())),
        Value::Text(policy.np.map(|np| np.as_str().to_string())),
        text(policy.adkim.as_str()),
        text(policy.aspf.as_str()),
        Value::Int(Some(i64::from(policy.pct))),
        text(&policy.fo),
        Value::Bool(Some(policy.testing)),
        Value::Bool(Some(policy.psd)),
        text(&encode_destinations(&policy.rua)),
        text(&encode_destinations(&policy.ruf)),
    ]
}

/// The distinct policies of a batch of records, each once with the
/// latest time it was seen in the batch (its `last_seen` must not be
/// older than any record referring to it: the purge relies on it), keyed
/// by hash, in a fixed order.
pub(crate) fn batch_policies(records: &[EvaluationRecord]) -> Vec<(String, Vec<Value>)> {
    let mut latest: std::collections::BTreeMap<String, (&PublishedPolicy, i64)> =
        std::collections::BTreeMap::new();
    for record in records {
        if let Some(policy) = &record.policy {
            let entry = latest
                .entry(policy_hash(policy))
                .or_insert((policy, record.time));
            entry.1 = entry.1.max(record.time);
        }
    }
    latest
        .into_iter()
        .map(|(hash, (policy, time))| (hash, policy_values(policy, time)))
        .collect()
}

/// The key of a policy: SHA-256 of its canonical text (the JSON of the
/// normalised policy, fields in a fixed order), in hexadecimal. A
/// collision-resistant hash, so that no published record can be made to
/// stand for another domain's.
pub(crate) fn policy_hash(policy: &PublishedPolicy) -> String {
    let text = serde_json::to_vec(policy).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// DKIM results as compact JSON: `[["d","s","result"]]`, with the human
/// result as a fourth element when there is one.
pub(crate) fn encode_dkim(dkim: &[DkimAuth]) -> String {
    let rows: Vec<Vec<&str>> = dkim
        .iter()
        .map(|d| {
            let mut row = vec![d.domain.as_str(), d.selector.as_str(), d.result.as_str()];
            row.extend(d.human_result.as_deref());
            row
        })
        .collect();
    json(&rows)
}

fn decode_dkim(column: &str, text: &str) -> Result<Vec<DkimAuth>, StoreError> {
    let rows: Vec<Vec<String>> =
        serde_json::from_str(text).map_err(|error| corrupt(column, &error.to_string()))?;
    rows.into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let (Some(domain), Some(selector), Some(result), human_result, None) =
                (row.next(), row.next(), row.next(), row.next(), row.next())
            else {
                return Err(corrupt(column, "a DKIM result of 3 or 4 strings expected"));
            };
            Ok(DkimAuth {
                domain,
                selector,
                result: result
                    .parse::<DkimWord>()
                    .map_err(|error| corrupt(column, &error.to_string()))?,
                human_result,
            })
        })
        .collect()
}

/// Override reasons as compact JSON: `[["type","comment" or null]]`.
pub(crate) fn encode_reasons(reasons: &[PolicyOverride]) -> String {
    let rows: Vec<(&str, Option<&str>)> = reasons
        .iter()
        .map(|r| (r.kind.as_str(), r.comment.as_deref()))
        .collect();
    json(&rows)
}

fn decode_reasons(column: &str, text: &str) -> Result<Vec<PolicyOverride>, StoreError> {
    let rows: Vec<(String, Option<String>)> =
        serde_json::from_str(text).map_err(|error| corrupt(column, &error.to_string()))?;
    rows.into_iter()
        .map(|(kind, comment)| {
            Ok(PolicyOverride {
                kind: kind
                    .parse::<OverrideWord>()
                    .map_err(|error| corrupt(column, &error.to_string()))?,
                comment,
            })
        })
        .collect()
}

/// Destinations as compact JSON: `[["mailto:...", size or null]]`.
fn encode_destinations(destinations: &[ReportDestination]) -> String {
    let rows: Vec<(&str, Option<u64>)> = destinations
        .iter()
        .map(|d| (d.uri.as_str(), d.max_size))
        .collect();
    json(&rows)
}

fn decode_destinations(column: &str, text: &str) -> Result<Vec<ReportDestination>, StoreError> {
    let rows: Vec<(String, Option<u64>)> =
        serde_json::from_str(text).map_err(|error| corrupt(column, &error.to_string()))?;
    Ok(rows
        .into_iter()
        .map(|(uri, max_size)| ReportDestination { uri, max_size })
        .collect())
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising strings, numbers and options cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_string())
}

/// The columns of a row of [`select_records`], in order: the record's
/// (without `policy_id`), then its policy's (without `hash` and
/// `last_seen`).
pub(crate) fn full_record_layout() -> Vec<&'static Column> {
    RECORD_COLUMNS
        .iter()
        .filter(|column| column.name != "policy_id")
        .chain(policy_layout())
        .collect()
}

/// The columns of a row of [`select_latest_policy`].
pub(crate) fn policy_layout() -> impl Iterator<Item = &'static Column> {
    POLICY_COLUMNS.iter().skip(2)
}

/// The record of a row of [`select_records`] (see
/// [`full_record_layout`]; the policy columns are all NULL without one).
pub(crate) fn record_from_values(values: Vec<Value>) -> Result<EvaluationRecord, StoreError> {
    let mut row = Reader {
        values: values.into_iter(),
        columns: full_record_layout().into_iter(),
    };
    let time = row.int()?;
    let source_ip: IpAddr = row.word()?;
    let header_from = row.text()?;
    let envelope_from = row.opt_text()?;
    let envelope_to = row.opt_text()?;
    let policy_domain = row.opt_text()?;
    let dmarc = row.word::<DmarcWord>()?;
    let disposition = row.word::<ActionDisposition>()?;
    let dkim_aligned = row.word::<AlignedWord>()?;
    let spf_aligned = row.word::<AlignedWord>()?;
    let reasons = row.with_text(decode_reasons)?;
    let spf = row.spf()?;
    let dkim = row.with_text(decode_dkim)?;
    let policy = match row.opt_text()? {
        Some(domain) => Some(row.policy(domain)?),
        None => None,
    };
    if policy.is_none() && policy_domain.is_some() {
        return Err(corrupt("policy_id", "refers to no policy"));
    }
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

/// The policy of a row of [`select_latest_policy`].
pub(crate) fn policy_from_values(values: Vec<Value>) -> Result<PublishedPolicy, StoreError> {
    let mut row = Reader {
        values: values.into_iter(),
        columns: policy_layout().collect::<Vec<_>>().into_iter(),
    };
    let domain = row.text()?;
    row.policy(domain)
}

/// The report row and count of a row of [`select_report_rows`].
pub(crate) fn report_row_from_values(
    values: Vec<Value>,
    count: i64,
) -> Result<(ReportRow, u64), StoreError> {
    let mut row = Reader {
        values: values.into_iter(),
        columns: ROW_COLUMNS.iter().collect::<Vec<_>>().into_iter(),
    };
    let source_ip: IpAddr = row.word()?;
    let report_row = ReportRow {
        source_ip,
        header_from: row.text()?,
        envelope_from: row.opt_text()?,
        envelope_to: row.opt_text()?,
        disposition: row.word()?,
        dkim_aligned: row.word()?,
        spf_aligned: row.word()?,
        reasons: row.with_text(decode_reasons)?,
        spf: row.spf()?,
        dkim: row.with_text(decode_dkim)?,
    };
    let count = u64::try_from(count).map_err(|_| corrupt("count", &count.to_string()))?;
    Ok((report_row, count))
}

/// Reads a row's values in column order, naming the column in errors.
pub(crate) struct Reader<'a> {
    pub(crate) values: std::vec::IntoIter<Value>,
    pub(crate) columns: std::vec::IntoIter<&'a Column>,
}

impl Reader<'_> {
    pub(crate) fn next(&mut self) -> Result<(&'static str, Value), StoreError> {
        match (self.columns.next(), self.values.next()) {
            (Some(column), Some(value)) => Ok((column.name, value)),
            _ => Err(corrupt("(end of row)", "fewer values than columns")),
        }
    }

    pub(crate) fn opt_text(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            (_, Value::Text(text)) => Ok(text),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    pub(crate) fn text(&mut self) -> Result<String, StoreError> {
        match self.next()? {
            (_, Value::Text(Some(text))) => Ok(text),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    pub(crate) fn int(&mut self) -> Result<i64, StoreError> {
        match self.next()? {
            (_, Value::Int(Some(int))) => Ok(int),
            (name, _) => Err(corrupt(name, "not an integer")),
        }
    }

    pub(crate) fn pct(&mut self) -> Result<u8, StoreError> {
        match self.next()? {
            (name, Value::Int(Some(int))) => {
                u8::try_from(int).map_err(|_| corrupt(name, &format!("{int} is not a percentage")))
            }
            (name, _) => Err(corrupt(name, "not an integer")),
        }
    }

    pub(crate) fn bool(&mut self) -> Result<bool, StoreError> {
        match self.next()? {
            (_, Value::Bool(Some(flag))) => Ok(flag),
            (name, _) => Err(corrupt(name, "not a boolean")),
        }
    }

    pub(crate) fn opt_word<T>(&mut self) -> Result<Option<T>, StoreError>
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

    pub(crate) fn word<T>(&mut self) -> Result<T, StoreError>
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

    /// A text column read by `decode`.
    fn with_text<T>(
        &mut self,
        decode: impl FnOnce(&str, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.next()? {
            (name, Value::Text(Some(text))) => decode(name, &text),
            (name, _) => Err(corrupt(name, "not text")),
        }
    }

    /// JSON text of the serde form (the schema of version 1).
    pub(crate) fn json<T: DeserializeOwned>(&mut self) -> Result<T, StoreError> {
        self.with_text(|name, text| {
            serde_json::from_str(text).map_err(|error| corrupt(name, &error.to_string()))
        })
    }

    /// `spf_domain`, `spf_scope`, `spf_result`, `spf_human_result`.
    pub(crate) fn spf(&mut self) -> Result<Option<SpfAuth>, StoreError> {
        match self.opt_text()? {
            Some(domain) => Ok(Some(SpfAuth {
                domain,
                scope: self.word::<SpfScopeWord>()?,
                result: self.word::<SpfWord>()?,
                human_result: self.opt_text()?,
            })),
            None => {
                for _ in 0..3 {
                    self.next()?;
                }
                Ok(None)
            }
        }
    }

    /// The policy columns after `domain` (version 2).
    fn policy(&mut self, domain: String) -> Result<PublishedPolicy, StoreError> {
        Ok(PublishedPolicy {
            domain,
            discovery_method: self.word::<DiscoveryWord>()?,
            p: self.word::<PolicyWord>()?,
            sp: self.opt_word::<PolicyWord>()?,
            np: self.opt_word::<PolicyWord>()?,
            adkim: self.word::<AlignmentWord>()?,
            aspf: self.word::<AlignmentWord>()?,
            pct: self.pct()?,
            fo: self.text()?,
            testing: self.bool()?,
            psd: self.bool()?,
            rua: self.with_text(decode_destinations)?,
            ruf: self.with_text(decode_destinations)?,
        })
    }
}
