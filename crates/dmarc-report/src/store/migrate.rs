//! From schema version 1 to 2, the same for both backends.
//!
//! Version 1 kept the whole published policy in every record (its `rua`
//! and `ruf` lists as JSON), and records as the caller gave them. Version 2
//! keeps each policy once (`dmarc_policies`), records in normal form
//! ([`EvaluationRecord::normalized`]) with compact lists, and pending
//! messages' recipients in lower case. The migration runs in the
//! transaction that opens the store for writing: it copies the records in
//! batches of [`BATCH`] into a new table, normalising each, then puts the
//! new table in place of the old; a record the new code cannot read makes
//! the whole migration fail, and the store stays at version 1.

use super::sql::{self, column, Column, ColumnType, Dialect, Reader, Value};
use super::StoreError;
use crate::model::{
    ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DmarcWord,
    EvaluationRecord, PolicyOverride, PolicyWord, PublishedPolicy, ReportDestination,
};
use std::net::IpAddr;

/// Records copied per statement.
pub(crate) const BATCH: usize = 1000;

/// The name of the new records table while it is filled.
pub(crate) const NEW_TABLE: &str = "dmarc_records_v2";

use ColumnType::{Bool, Int, Text};

/// The columns of `dmarc_records` in version 1, after `id`.
pub(crate) const V1_COLUMNS: &[Column] = &[
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

/// What runs before the copy: the new tables.
pub(crate) fn before(dialect: &Dialect) -> Vec<String> {
    vec![
        sql::create_policies(dialect),
        sql::create_records(dialect, NEW_TABLE),
    ]
}

/// At most `$2` version 1 records with an id above `$1`, by id: the id,
/// then [`V1_COLUMNS`].
pub(crate) fn select_v1_batch() -> String {
    let names: Vec<&str> = V1_COLUMNS.iter().map(|column| column.name).collect();
    format!(
        "SELECT id, {} FROM dmarc_records WHERE id > $1 ORDER BY id LIMIT $2",
        names.join(", ")
    )
}

/// What runs after the copy: the new table in place of the old, the new
/// indexes, recipients in lower case (the rate limits compare them so).
pub(crate) fn after() -> Vec<String> {
    let mut statements = vec![
        "DROP INDEX IF EXISTS dmarc_records_domain_time".to_string(),
        "DROP INDEX IF EXISTS dmarc_records_time".to_string(),
        "DROP TABLE dmarc_records".to_string(),
        format!("ALTER TABLE {NEW_TABLE} RENAME TO dmarc_records"),
    ];
    statements.extend(sql::RECORD_INDEXES.iter().map(|s| s.to_string()));
    statements.extend(sql::MESSAGE_INDEXES.iter().map(|s| s.to_string()));
    statements.push(
        "UPDATE dmarc_messages SET recipient = lower(recipient) WHERE state = 'pending'"
            .to_string(),
    );
    statements
}

/// A version 1 record from its [`V1_COLUMNS`] values, normalised.
pub(crate) fn record_from_v1(values: Vec<Value>) -> Result<EvaluationRecord, StoreError> {
    let mut row = Reader {
        values: values.into_iter(),
        columns: V1_COLUMNS.iter().collect::<Vec<_>>().into_iter(),
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
            // policy_discovery to policy_ruf are NULL too.
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
    let spf = row.spf()?;
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
    }
    .normalized())
}
