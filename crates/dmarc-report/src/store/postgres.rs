//! The PostgreSQL store: one report set shared by several MX hosts.

use super::{
    migrate,
    sql::{self, Column, ColumnType, Dialect, Value},
    MessageKind, OutgoingMessage, QueuedMessage, ReportEntry, Store, StoreError, StoreStatus,
};
use crate::aggregate::Row as ReportRow;
use crate::model::{EvaluationRecord, PublishedPolicy};
use postgres::{
    config::Host, fallible_iterator::FallibleIterator, types::ToSql, Client, Config, GenericClient,
    NoTls, Row, Transaction,
};
use std::{borrow::Cow, collections::HashMap, time::Duration};

const DIALECT: Dialect = Dialect {
    id: "BIGSERIAL PRIMARY KEY",
    int: "BIGINT",
    bool: "BOOLEAN",
    blob: "BYTEA",
    greatest: "GREATEST",
    byte_order: " COLLATE \"C\"",
};

/// The advisory lock held while the schema is created or checked, so that
/// hosts starting at once create it one after the other (`CREATE TABLE IF
/// NOT EXISTS` alone can fail when two sessions race).
const SCHEMA_LOCK: i64 = 0x646d_6172_635f_7270;

/// Rows per `INSERT` when appending records: one round trip for many rows
/// (and well below PostgreSQL's limit of 65,535 parameters).
const ROWS_PER_INSERT: usize = 100;

/// Used when the URL gives no `connect_timeout`: a host that does not
/// answer must not hold the recorder for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Used when the URL gives no `tcp_user_timeout`: a server that went away
/// mid-transaction is given up on after this long.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// A [`Store`] in a PostgreSQL database, with the sync `postgres` client
/// (no TLS).
///
/// The schema (tables `dmarc_policies`, `dmarc_records`, `dmarc_reports`,
/// `dmarc_messages` and `dmarc_schema`, which holds the schema version) is
/// read first without any lock; it is created when missing, or migrated
/// from version 1, under an advisory lock so that hosts starting at once
/// are safe. The database's encoding must be UTF-8: in another one a
/// report value (a selector, a reason) could fail to convert, and the
/// batch holding it would be retried for ever; such a database is refused
/// at once, with a clear error.
/// A connection that breaks is replaced at the next call; the error of the
/// call that saw it break is transient.
///
/// # Threads
///
/// The `postgres` client runs a tokio runtime of its own and panics when
/// called from a thread that runs a tokio runtime already: use this store
/// from a dedicated std thread (as [`Recorder`](super::recorder::Recorder)
/// does) or from `tokio::task::spawn_blocking`, never from an async task.
pub struct PostgresStore {
    config: Config,
    /// The URL without its password, for error messages.
    target: String,
    client: Option<Client>,
    schema_checked: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl PostgresStore {
    /// A store for the database at `url` (`postgresql://user@host:port/db`
    /// or `host=… user=… dbname=…`), not yet connected: the first call
    /// connects, and creates or checks the schema.
    ///
    /// # Errors
    ///
    /// A non-transient error when `url` is not a valid connection string.
    pub fn new(url: &str) -> Result<PostgresStore, StoreError> {
        let mut config: Config = url.parse().map_err(|error| StoreError {
            message: format!(
                "PostgreSQL store: invalid connection URL: {}",
                describe_error(&error)
            ),
            transient: false,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let target = describe(&config);
        Ok(PostgresStore {
            config,
            target,
            client: None,
            schema_checked: false,
        })
    }

    /// A store for the database at `url`, connected, with its schema
    /// created or checked.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::new`]; a transient error when the server cannot
    /// be reached; a non-transient one when it refuses us (authentication,
    /// no such database) or the schema is of another version.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let mut store = PostgresStore::new(url)?;
        store.client()?;
        Ok(store)
    }

    /// The state of the database at `url`, read without writing anything
    /// (see [`super::check`]).
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub fn check(url: &str) -> Result<StoreStatus, StoreError> {
        let store = PostgresStore::new(url)?;
        let mut client = store
            .config
            .connect(NoTls)
            .map_err(|error| store.error("connecting", &error, true))?;
        let failed = |error: postgres::Error| store.error("reading the schema", &error, false);
        check_encoding(&mut client).map_err(|error| store.wrap(error))?;
        let mut transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(failed)?;
        let status = match schema_version(&mut transaction).map_err(failed)? {
            None => StoreStatus::Empty,
            Some(sql::SCHEMA_VERSION) => StoreStatus::Current,
            Some(1) => StoreStatus::Migrate { from: 1 },
            Some(other) => return Err(store.other_version(other)),
        };
        transaction.commit().map_err(failed)?;
        Ok(status)
    }

    /// The report mails by kind and state words, read in a read-only
    /// transaction as [`PostgresStore::check`] reads (see
    /// [`super::message_counts`]).
    pub(crate) fn message_counts(url: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let store = PostgresStore::new(url)?;
        let mut client = store
            .config
            .connect(NoTls)
            .map_err(|error| store.error("connecting", &error, true))?;
        let failed = |error: postgres::Error| store.error("counting report mails", &error, true);
        let mut transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(failed)?;
        if schema_version(&mut transaction).map_err(failed)?.is_none() {
            return Ok(Vec::new());
        }
        let rows = transaction
            .query(sql::COUNT_MESSAGES_BY_STATE, &[])
            .map_err(failed)?;
        let counts = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(failed)?;
        transaction.commit().map_err(failed)?;
        Ok(counts)
    }

    /// The connection, made (with the schema checked) when there is none or
    /// the last one broke.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => self
                .config
                .connect(NoTls)
                .map_err(|error| self.error("connecting", &error, true))?,
        };
        let client = self.client.insert(client);
        if !self.schema_checked {
            let target = self.target.clone();
            let wrap = |error: StoreError| StoreError {
                message: format!("PostgreSQL store {target}: {}", error.message),
                transient: error.transient,
            };
            check_encoding(client).map_err(wrap)?;
            let version = ensure_schema(client).map_err(|error| StoreError {
                message: format!(
                    "PostgreSQL store {target}: creating the schema: {}",
                    describe_error(&error)
                ),
                transient: is_transient(&error),
            })?;
            match version {
                Ok(version) if version == sql::SCHEMA_VERSION => {}
                Ok(other) => {
                    return Err(StoreError {
                        message: format!(
                            "PostgreSQL store {target}: schema version {other}, this program knows version {}",
                            sql::SCHEMA_VERSION
                        ),
                        transient: false,
                    })
                }
                Err(error) => {
                    return Err(StoreError {
                        message: format!(
                            "PostgreSQL store {target}: migrating the schema from version 1: {}",
                            error.message
                        ),
                        transient: error.transient,
                    })
                }
            }
            self.schema_checked = true;
        }
        Ok(client)
    }

    fn wrap(&self, error: StoreError) -> StoreError {
        StoreError {
            message: format!("PostgreSQL store {}: {}", self.target, error.message),
            transient: error.transient,
        }
    }

    fn other_version(&self, version: i64) -> StoreError {
        StoreError {
            message: format!(
                "PostgreSQL store {}: schema version {version}, this program knows version {}",
                self.target,
                sql::SCHEMA_VERSION
            ),
            transient: false,
        }
    }

    /// Runs `work` on the connection; a connection that broke is dropped,
    /// to be replaced at the next call.
    fn run<T>(
        &mut self,
        doing: &str,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        let result = work(client);
        if client.is_closed() {
            self.client = None;
        }
        result.map_err(|error| {
            if is_transient(&error) {
                // A lost connection is not always noticed at once: start
                // afresh rather than use one that may be half-broken.
                self.client = None;
            }
            self.error(doing, &error, false)
        })
    }

    fn error(&self, doing: &str, error: &postgres::Error, connecting: bool) -> StoreError {
        let transient = if connecting {
            is_transient_connect(error)
        } else {
            is_transient(error)
        };
        StoreError {
            message: format!(
                "PostgreSQL store {}: {doing}: {}",
                self.target,
                describe_error(error)
            ),
            transient,
        }
    }
}

/// The error with its server message or I/O cause (the `postgres` error's
/// own text is often only "db error" or "error connecting to server").
fn describe_error(error: &postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(source)) => format!("{error}: {source}"),
        (None, None) => error.to_string(),
    }
}

/// `postgresql://user@host:port/db`, without the password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config
        .get_ports()
        .first()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let user = config
        .get_user()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or_default();
    format!("postgresql://{user}{}{port}/{database}", hosts.join(","))
}

/// Errors that retrying may cure: a connection lost or refused, the server
/// starting up, shutting down or short of resources, a serialisation
/// failure, a deadlock or a lock or statement timeout.
fn is_transient(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(state) => {
            let code = state.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code, "40001" | "40P01" | "55P03" | "57014")
        }
        // No SQLSTATE: an I/O error is the connection; anything else (a
        // value that does not convert) is ours.
        None => {
            std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

/// While connecting, everything is transient (the server is down, the
/// network is) except the server refusing us: bad credentials (class 28),
/// no such database (3D000).
fn is_transient_connect(error: &postgres::Error) -> bool {
    match error.code() {
        Some(state) => !state.code().starts_with("28") && state.code() != "3D000",
        None => true,
    }
}

/// Refuses a database whose encoding is not UTF-8 (see
/// [`PostgresStore`]).
fn check_encoding(client: &mut Client) -> Result<(), StoreError> {
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|error| StoreError {
            message: format!("reading the database encoding: {}", describe_error(&error)),
            transient: is_transient(&error),
        })?;
    if encoding.eq_ignore_ascii_case("UTF8") {
        Ok(())
    } else {
        Err(StoreError {
            message: format!(
                "the database encoding is {encoding}; it must be UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
            ),
            transient: false,
        })
    }
}

/// The schema version, or `None` when there is no schema.
fn schema_version(client: &mut impl GenericClient) -> Result<Option<i64>, postgres::Error> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('dmarc_schema')::text", &[])?
        .try_get(0)?;
    if exists.is_none() {
        return Ok(None);
    }
    client
        .query_opt("SELECT version FROM dmarc_schema LIMIT 1", &[])?
        .map(|row| row.try_get(0))
        .transpose()
}

/// Reads the schema version without a lock; when there is no schema or an
/// old one, creates or migrates it under the advisory lock. The outer
/// result is the database's, the inner the migration's (a record the new
/// code cannot read).
fn ensure_schema(client: &mut Client) -> Result<Result<i64, StoreError>, postgres::Error> {
    match schema_version(client)? {
        Some(version) if version != 1 => return Ok(Ok(version)),
        _ => {}
    }
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS dmarc_schema (version BIGINT NOT NULL)")?;
    let version = match schema_version(&mut transaction)? {
        None => {
            for statement in sql::schema(&DIALECT) {
                transaction.batch_execute(&statement)?;
            }
            transaction.execute(
                "INSERT INTO dmarc_schema (version) VALUES ($1)",
                &[&sql::SCHEMA_VERSION],
            )?;
            sql::SCHEMA_VERSION
        }
        Some(1) => {
            if let Err(error) = migrate_v1(&mut transaction)? {
                transaction.rollback()?;
                return Ok(Err(error));
            }
            transaction.execute(
                "UPDATE dmarc_schema SET version = $1",
                &[&sql::SCHEMA_VERSION],
            )?;
            sql::SCHEMA_VERSION
        }
        Some(version) => version,
    };
    transaction.commit()?;
    Ok(Ok(version))
}

/// Copies the version 1 records into the version 2 tables (see
/// `migrate.rs`).
fn migrate_v1(
    transaction: &mut Transaction<'_>,
) -> Result<Result<(), StoreError>, postgres::Error> {
    for statement in migrate::before(&DIALECT) {
        transaction.batch_execute(&statement)?;
    }
    let select = migrate::select_v1_batch();
    let batch = i64::try_from(migrate::BATCH).unwrap_or(i64::MAX);
    let mut after = 0i64;
    loop {
        let rows = transaction.query(&select, &[&after, &batch])?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let values = read_values(row, 1, migrate::V1_COLUMNS.iter())?;
            match migrate::record_from_v1(values) {
                Ok(record) => records.push(clean_record(record)),
                Err(error) => return Ok(Err(error)),
            }
        }
        insert_into(transaction, migrate::NEW_TABLE, &records)?;
    }
    for statement in migrate::after() {
        transaction.batch_execute(&statement)?;
    }
    Ok(Ok(()))
}

/// Inserts normalised records into `table`, each policy once (upserted,
/// its `last_seen` moved forward), [`ROWS_PER_INSERT`] rows per statement.
fn insert_into(
    transaction: &mut Transaction<'_>,
    table: &str,
    records: &[EvaluationRecord],
) -> Result<(), postgres::Error> {
    let upsert = transaction.prepare(&sql::upsert_policy(&DIALECT))?;
    let mut policy_ids: HashMap<String, i64> = HashMap::new();
    for (hash, values) in sql::batch_policies(records) {
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(bind).collect();
        let id: i64 = transaction.query_one(&upsert, &params)?.try_get(0)?;
        policy_ids.insert(hash, id);
    }
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let policy_id = record
            .policy
            .as_ref()
            .and_then(|policy| policy_ids.get(&sql::policy_hash(policy)).copied());
        rows.push(sql::record_values(record, policy_id));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().flatten().map(bind).collect();
        transaction.execute(&sql::insert_records(table, chunk.len()), &params)?;
    }
    Ok(())
}

/// A record with every text NUL-free (see [`text`]).
fn clean_record(record: EvaluationRecord) -> EvaluationRecord {
    // The cheap path: most records hold no NUL at all.
    let dirty = serde_json::to_string(&record)
        .map(|json| json.contains("\\u0000"))
        .unwrap_or(true);
    if !dirty {
        return record;
    }
    let clean = |s: String| text(&s).into_owned();
    let opt = |s: Option<String>| s.map(clean);
    EvaluationRecord {
        header_from: clean(record.header_from),
        envelope_from: opt(record.envelope_from),
        envelope_to: opt(record.envelope_to),
        policy: record.policy.map(|policy| PublishedPolicy {
            domain: clean(policy.domain),
            fo: clean(policy.fo),
            ..policy
        }),
        reasons: record
            .reasons
            .into_iter()
            .map(|reason| crate::model::PolicyOverride {
                comment: opt(reason.comment),
                ..reason
            })
            .collect(),
        spf: record.spf.map(|spf| crate::model::SpfAuth {
            domain: clean(spf.domain),
            human_result: opt(spf.human_result),
            ..spf
        }),
        dkim: record
            .dkim
            .into_iter()
            .map(|dkim| crate::model::DkimAuth {
                domain: clean(dkim.domain),
                selector: clean(dkim.selector),
                human_result: opt(dkim.human_result),
                ..dkim
            })
            .collect(),
        ..record
    }
}

/// PostgreSQL text cannot hold NUL: it becomes U+FFFD, so that no value
/// can make a whole batch of records fail.
fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

fn bind(value: &Value) -> &(dyn ToSql + Sync) {
    match value {
        Value::Int(int) => int,
        Value::Text(text) => text,
        Value::Bool(flag) => flag,
    }
}

/// The values of `row` from column `first` on, typed by `columns`.
fn read_values<'c>(
    row: &Row,
    first: usize,
    columns: impl Iterator<Item = &'c Column>,
) -> Result<Vec<Value>, postgres::Error> {
    columns
        .enumerate()
        .map(|(index, column)| {
            let index = first + index;
            Ok(match column.kind {
                ColumnType::Int => Value::Int(row.try_get(index)?),
                ColumnType::Text => Value::Text(row.try_get(index)?),
                ColumnType::Bool => Value::Bool(row.try_get(index)?),
            })
        })
        .collect()
}

fn insert_message(
    transaction: &mut Transaction<'_>,
    message: &OutgoingMessage,
) -> Result<(), postgres::Error> {
    transaction.execute(
        sql::INSERT_MESSAGE,
        &[
            &sql::kind_word(message.kind),
            &text(&message.policy_domain),
            &text(&message.sender),
            &text(&message.recipient),
            &message.payload,
            &message.created,
        ],
    )?;
    Ok(())
}

impl Store for PostgresStore {
    fn insert(&mut self, records: &[EvaluationRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<EvaluationRecord> = records
            .iter()
            .cloned()
            .map(|record| clean_record(record.normalized()))
            .collect();
        self.run("inserting records", |client| {
            let mut transaction = client.transaction()?;
            insert_into(&mut transaction, "dmarc_records", &records)?;
            transaction.commit()
        })
    }

    fn policy_domains(&mut self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        let mut domains = self.run("listing policy domains", |client| {
            client
                .query(sql::SELECT_POLICY_DOMAINS, &[&begin, &end])?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<Vec<String>, _>>()
        })?;
        domains.sort();
        Ok(domains)
    }

    fn records(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Vec<EvaluationRecord>, StoreError> {
        let policy_domain = text(policy_domain);
        let layout = sql::full_record_layout();
        self.run("reading records", |client| {
            client
                .query(&sql::select_records(), &[&policy_domain, &begin, &end])?
                .iter()
                .map(|row| read_values(row, 0, layout.iter().copied()))
                .collect::<Result<Vec<_>, _>>()
        })?
        .into_iter()
        .map(sql::record_from_values)
        .collect()
    }

    fn report_rows(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(ReportRow, u64),
    ) -> Result<(), StoreError> {
        let policy_domain = text(policy_domain).into_owned();
        let width = sql::ROW_COLUMNS.len();
        // A row that does not read back stops the walk; its error is kept
        // apart from the database's.
        let mut bad_row = None;
        self.run("reading report rows", |client| {
            let params: [&(dyn ToSql + Sync); 3] = [&policy_domain, &begin, &end];
            // query_raw streams: rows are read as they are used.
            let mut rows = client.query_raw(&sql::select_report_rows(&DIALECT), params)?;
            while let Some(row) = rows.next()? {
                let values = read_values(&row, 0, sql::ROW_COLUMNS.iter())?;
                let count: i64 = row.try_get(width)?;
                match sql::report_row_from_values(values, count) {
                    Ok((row, count)) => visit(row, count),
                    Err(error) => {
                        bad_row = Some(error);
                        break;
                    }
                }
            }
            Ok(())
        })?;
        bad_row.map_or(Ok(()), Err)
    }

    fn latest_policy(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Option<PublishedPolicy>, StoreError> {
        let policy_domain = text(policy_domain);
        self.run("reading the latest policy", |client| {
            client
                .query_opt(
                    &sql::select_latest_policy(),
                    &[&policy_domain, &begin, &end],
                )?
                .map(|row| read_values(&row, 0, sql::policy_layout()))
                .transpose()
        })?
        .map(sql::policy_from_values)
        .transpose()
    }

    fn report_exists(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<bool, StoreError> {
        let policy_domain = text(policy_domain);
        let count: i64 = self.run("looking up a report", |client| {
            client
                .query_one(sql::COUNT_REPORTS, &[&policy_domain, &begin, &end])?
                .try_get(0)
        })?;
        Ok(count > 0)
    }

    fn add_report_with(
        &mut self,
        report: &ReportEntry,
        messages: &mut dyn Iterator<Item = OutgoingMessage>,
    ) -> Result<bool, StoreError> {
        let message_count = sql::to_i64(report.message_count, "message count")?;
        self.run("adding a report", |client| {
            let mut transaction = client.transaction()?;
            // A racing host's insert of the same key waits for ours to
            // commit or roll back, then does nothing (or inserts).
            let added = transaction.execute(
                sql::INSERT_REPORT,
                &[
                    &text(&report.policy_domain),
                    &report.begin,
                    &report.end,
                    &text(&report.report_id),
                    &message_count,
                    &report.created,
                ],
            )?;
            if added == 0 {
                transaction.rollback()?;
                return Ok(false);
            }
            for message in messages {
                insert_message(&mut transaction, &message)?;
            }
            transaction.commit()?;
            Ok(true)
        })
    }

    fn queue_message(&mut self, message: &OutgoingMessage) -> Result<(), StoreError> {
        self.run("queueing a message", |client| {
            let mut transaction = client.transaction()?;
            insert_message(&mut transaction, message)?;
            transaction.commit()
        })
    }

    fn pending_messages(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.run("reading pending messages", |client| {
            client.query(sql::SELECT_PENDING, &[&after, &limit])
        })?;
        rows.iter()
            .map(|row| {
                let read =
                    |error: postgres::Error| self.error("reading pending messages", &error, false);
                let kind: String = row.try_get(1).map_err(read)?;
                let attempts: i32 = row.try_get(6).map_err(read)?;
                Ok(QueuedMessage {
                    id: row.try_get(0).map_err(read)?,
                    kind: sql::kind_of(&kind)?,
                    policy_domain: row.try_get(2).map_err(read)?,
                    sender: row.try_get(3).map_err(read)?,
                    recipient: row.try_get(4).map_err(read)?,
                    created: row.try_get(5).map_err(read)?,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| sql::corrupt("attempts", &attempts.to_string()))?,
                    last_error: row.try_get(7).map_err(read)?,
                })
            })
            .collect()
    }

    fn payload(&mut self, id: i64) -> Result<Vec<u8>, StoreError> {
        let payload: Option<Vec<u8>> = self.run("reading a payload", |client| {
            client
                .query_opt(sql::SELECT_PAYLOAD, &[&id])?
                .map(|row| row.try_get(0))
                .transpose()
        })?;
        payload.ok_or_else(|| StoreError {
            message: format!("no queued message with id {id}"),
            transient: false,
        })
    }

    fn claim(&mut self, id: i64, now: i64, until: i64) -> Result<bool, StoreError> {
        let changed = self.run("claiming a message", |client| {
            client.execute(sql::CLAIM, &[&id, &now, &until])
        })?;
        Ok(changed > 0)
    }

    fn mark_sent(&mut self, id: i64, time: i64) -> Result<(), StoreError> {
        let changed = self.run("marking a message sent", |client| {
            client.execute(sql::MARK_SENT, &[&id, &time])
        })?;
        sql::message_found(changed > 0, id)
    }

    fn mark_failed(&mut self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        let error = text(error);
        let changed = self.run("marking a message failed", |client| {
            client.execute(sql::MARK_FAILED, &[&id, &error, &give_up])
        })?;
        sql::message_found(changed > 0, id)
    }

    fn sent_since(
        &mut self,
        kind: MessageKind,
        recipient: &str,
        since: i64,
    ) -> Result<u64, StoreError> {
        self.count(sql::COUNT_SENT, kind, recipient, since)
    }

    fn sent_since_domain(
        &mut self,
        kind: MessageKind,
        policy_domain: &str,
        since: i64,
    ) -> Result<u64, StoreError> {
        self.count(sql::COUNT_SENT_DOMAIN, kind, policy_domain, since)
    }

    fn purge(&mut self, before: i64) -> Result<u64, StoreError> {
        self.run("purging", |client| {
            let mut transaction = client.transaction()?;
            let records = transaction.execute(sql::PURGE_RECORDS, &[&before])?;
            transaction.execute(sql::PURGE_POLICIES, &[&before])?;
            transaction.execute(sql::PURGE_MESSAGES, &[&before])?;
            transaction.execute(sql::PURGE_REPORTS, &[&before])?;
            transaction.commit()?;
            Ok(records)
        })
    }
}

impl PostgresStore {
    /// A count of sent messages (`COUNT_SENT` or `COUNT_SENT_DOMAIN`).
    fn count(
        &mut self,
        statement: &str,
        kind: MessageKind,
        key: &str,
        since: i64,
    ) -> Result<u64, StoreError> {
        let key = text(key);
        let count: i64 = self.run("counting sent messages", |client| {
            client
                .query_one(statement, &[&sql::kind_word(kind), &key, &since])?
                .try_get(0)
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
