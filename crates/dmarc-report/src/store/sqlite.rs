//! The SQLite store: one file, WAL journal, nothing to run.

use super::{
    migrate,
    sql::{self, ColumnType, Dialect, Value},
    MessageKind, OutgoingMessage, QueuedMessage, ReportEntry, Store, StoreError, StoreStatus,
};
use crate::aggregate::Row as ReportRow;
use crate::model::{EvaluationRecord, PublishedPolicy};
use rusqlite::{
    types::ToSql, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

const DIALECT: Dialect = Dialect {
    id: "INTEGER PRIMARY KEY AUTOINCREMENT",
    int: "INTEGER",
    bool: "INTEGER",
    blob: "BLOB",
    greatest: "max",
    // SQLite compares text byte by byte (BINARY) unless told otherwise.
    byte_order: "",
};

/// How much a commit survives (SQLite `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `NORMAL`: in WAL mode a committed transaction survives the process
    /// being killed (even `kill -9`), but the last commits before a power
    /// loss or an operating system crash can be lost (the database stays
    /// consistent). The default: losing a few seconds of report data on a
    /// power cut is cheaper than an fsync per message.
    #[default]
    Normal,
    /// `FULL`: every commit is fsynced before it returns and survives a
    /// power loss too.
    Full,
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of commits; [`Synchronous::Normal`] by default.
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's write lock
    /// before failing with a transient error; 5 s by default.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] in an SQLite database file.
///
/// The file is opened in WAL mode, so readers (the report generator) never
/// block the writer (the milter's recorder) and several processes may open
/// it at once; writes take the lock when their transaction begins
/// (`BEGIN IMMEDIATE`), waiting up to the busy timeout for another writer.
/// The schema is created when the file is new, or migrated from version 1
/// (schema version in `PRAGMA user_version`); opening a store whose schema
/// is current takes no write lock.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` with the
    /// default [`SqliteOptions`].
    ///
    /// # Errors
    ///
    /// A non-transient error naming the path when its directory does not
    /// exist or is not writable, when the file is not an SQLite database or
    /// holds tables of another program, or when its schema is of another
    /// version; a transient one when another process held the database
    /// locked for longer than the busy timeout.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, &SqliteOptions::default())
    }

    /// Opens (creating when missing) the database at `path`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_with(path: &Path, options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        let directory = directory_of(path)?;
        let failed = |error: rusqlite::Error| opening_error(path, directory, &error);
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .busy_timeout(options.busy_timeout)
            .map_err(failed)?;
        // Switching a new file to WAL needs an exclusive lock, and SQLite
        // does not always call the busy handler for it (a reader holding a
        // shared lock could deadlock): two processes opening a new store at
        // once can get SQLITE_BUSY at once. Retry until busy_timeout.
        let started = std::time::Instant::now();
        let journal: String = loop {
            match connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
                Err(error) if is_busy(&error) && started.elapsed() < options.busy_timeout => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                result => break result.map_err(failed)?,
            }
        };
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError {
                message: format!(
                    "SQLite store {}: cannot use the WAL journal (journal mode is {journal})",
                    path.display()
                ),
                transient: false,
            });
        }
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        connection
            .pragma_update(None, "synchronous", synchronous)
            .map_err(failed)?;
        let mut store = SqliteStore {
            connection,
            path: path.to_path_buf(),
        };
        store.ensure_schema()?;
        Ok(store)
    }

    /// The state of the database at `path`, read without writing anything
    /// (see [`super::check`]).
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn check(path: &Path) -> Result<StoreStatus, StoreError> {
        let directory = directory_of(path)?;
        if !path.exists() {
            return Ok(StoreStatus::Missing);
        }
        let (connection, failed) = Self::read_only(path, directory)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        match version {
            sql::SCHEMA_VERSION => Ok(StoreStatus::Current),
            1 => Ok(StoreStatus::Migrate { from: 1 }),
            0 => match foreign_table(&connection).map_err(failed)? {
                Some(name) => Err(not_ours(path, &name)),
                None => Ok(StoreStatus::Empty),
            },
            other => Err(other_version(path, other)),
        }
    }

    /// The report mails in the file by kind and state words, read as
    /// [`SqliteStore::check`] reads (see [`super::message_counts`]).
    pub(crate) fn message_counts(path: &Path) -> Result<Vec<(String, String, i64)>, StoreError> {
        let directory = directory_of(path)?;
        if !path.exists() {
            return Ok(Vec::new());
        }
        let (connection, failed) = Self::read_only(path, directory)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        if version == 0 {
            return Ok(Vec::new());
        }
        let mut statement = connection
            .prepare(sql::COUNT_MESSAGES_BY_STATE)
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(failed)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(failed)
    }

    /// The file opened read-only, creating nothing, and how to turn an
    /// error into a [`StoreError`] naming it.
    fn read_only<'a>(
        path: &'a Path,
        directory: &'a Path,
    ) -> Result<
        (
            Connection,
            impl Fn(rusqlite::Error) -> StoreError + Copy + 'a,
        ),
        StoreError,
    > {
        // Read-only. A WAL database needs its -wal and -shm files: when
        // they exist they are used (and nothing is created); when they do
        // not, the file is read as immutable, which creates none (there is
        // no WAL content to miss then).
        let with_suffix = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let wal_files = with_suffix("-wal").exists() && with_suffix("-shm").exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let uri = format!(
            "file:{}{}",
            uri_path(path),
            if wal_files { "" } else { "?immutable=1" }
        );
        let failed = move |error: rusqlite::Error| opening_error(path, directory, &error);
        let connection = Connection::open_with_flags(uri, flags).map_err(failed)?;
        Ok((connection, failed))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the schema version with a plain read (no write lock: a store
    /// busy with another writer opens at once); creates the schema of a
    /// new database or migrates one of version 1 in one write
    /// transaction, `BEGIN IMMEDIATE`, so that two processes opening a new
    /// file at once create it one after the other.
    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let failed = |error: rusqlite::Error| store_error(&path, "reading the schema", &error);
        let version: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        if version == sql::SCHEMA_VERSION {
            return Ok(());
        }
        if version > sql::SCHEMA_VERSION {
            return Err(other_version(&path, version));
        }
        let failed = |error: rusqlite::Error| store_error(&path, "creating the schema", &error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version: i64 = transaction
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        match version {
            sql::SCHEMA_VERSION => return Ok(()),
            0 => {
                if let Some(name) = foreign_table(&transaction).map_err(failed)? {
                    return Err(not_ours(&path, &name));
                }
                for statement in sql::schema(&DIALECT) {
                    transaction.execute(&statement, []).map_err(failed)?;
                }
            }
            1 => migrate_v1(&transaction).map_err(|error| StoreError {
                message: format!(
                    "SQLite store {}: migrating the schema from version 1: {}",
                    path.display(),
                    error.message
                ),
                transient: error.transient,
            })?,
            other => return Err(other_version(&path, other)),
        }
        transaction
            .pragma_update(None, "user_version", sql::SCHEMA_VERSION)
            .map_err(failed)?;
        transaction.commit().map_err(failed)
    }

    /// A store error for `doing` on this database.
    fn error(&self, doing: &str, error: &rusqlite::Error) -> StoreError {
        store_error(&self.path, doing, error)
    }

    /// Runs `work` in one write transaction, taking the write lock at once.
    fn write<T>(
        &mut self,
        doing: &str,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|transaction| {
                let value = work(&transaction)?;
                transaction.commit()?;
                Ok(value)
            });
        result.map_err(|error| self.error(doing, &error))
    }
}

/// The directory of the database file, which must exist.
fn directory_of(path: &Path) -> Result<&Path, StoreError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if directory.is_dir() {
        return Ok(directory);
    }
    let problem = if directory.exists() {
        "is not a directory"
    } else {
        "does not exist"
    };
    Err(StoreError {
        message: format!(
            "SQLite store {}: {} {problem}",
            path.display(),
            directory.display()
        ),
        transient: false,
    })
}

/// `path` for an SQLite URI (RFC 3986 path, `%`, `?` and `#` and every
/// octet outside printable ASCII percent-encoded).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b'?' | b'#') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A table that is not SQLite's own, in a database of version 0.
fn foreign_table(connection: &Connection) -> rusqlite::Result<Option<String>> {
    connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
}

fn not_ours(path: &Path, table: &str) -> StoreError {
    StoreError {
        message: format!(
            "SQLite store {}: not a dmarc-report database (it holds {table:?} and no schema version)",
            path.display()
        ),
        transient: false,
    }
}

fn other_version(path: &Path, version: i64) -> StoreError {
    StoreError {
        message: format!(
            "SQLite store {}: schema version {version}, this program knows version {}",
            path.display(),
            sql::SCHEMA_VERSION
        ),
        transient: false,
    }
}

/// Copies the version 1 records into the version 2 tables (see
/// `migrate.rs`).
fn migrate_v1(transaction: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let failed = |error: rusqlite::Error| StoreError {
        message: error.to_string(),
        transient: is_transient(&error),
    };
    for statement in migrate::before(&DIALECT) {
        transaction.execute(&statement, []).map_err(failed)?;
    }
    let select = sql::sqlite_placeholders(&migrate::select_v1_batch());
    let mut after = 0i64;
    loop {
        let batch_size = i64::try_from(migrate::BATCH).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<Value>)> = {
            let mut statement = transaction.prepare_cached(&select).map_err(failed)?;
            let rows = statement
                .query_map([after, batch_size], |row| {
                    let id: i64 = row.get(0)?;
                    let values = read_values(row, 1, migrate::V1_COLUMNS.iter())?;
                    Ok((id, values))
                })
                .map_err(failed)?;
            rows.collect::<rusqlite::Result<_>>().map_err(failed)?
        };
        let Some(&(last, _)) = rows.last() else {
            break;
        };
        after = last;
        let records = rows
            .into_iter()
            .map(|(_, values)| migrate::record_from_v1(values))
            .collect::<Result<Vec<_>, _>>()?;
        insert_into(transaction, migrate::NEW_TABLE, &records).map_err(failed)?;
    }
    for statement in migrate::after() {
        transaction.execute(&statement, []).map_err(failed)?;
    }
    Ok(())
}

/// Inserts normalised records into `table`, each policy once (upserted,
/// its `last_seen` moved forward).
fn insert_into(
    transaction: &rusqlite::Transaction<'_>,
    table: &str,
    records: &[EvaluationRecord],
) -> rusqlite::Result<()> {
    let mut upsert =
        transaction.prepare_cached(&sql::sqlite_placeholders(&sql::upsert_policy(&DIALECT)))?;
    let mut insert =
        transaction.prepare_cached(&sql::sqlite_placeholders(&sql::insert_records(table, 1)))?;
    let mut policy_ids: HashMap<String, i64> = HashMap::new();
    for (hash, values) in sql::batch_policies(records) {
        let params: Vec<&dyn ToSql> = values.iter().map(bind).collect();
        let id: i64 = upsert.query_row(params.as_slice(), |row| row.get(0))?;
        policy_ids.insert(hash, id);
    }
    for record in records {
        let policy_id = record
            .policy
            .as_ref()
            .and_then(|policy| policy_ids.get(&sql::policy_hash(policy)).copied());
        let values = sql::record_values(record, policy_id);
        let params: Vec<&dyn ToSql> = values.iter().map(bind).collect();
        insert.execute(params.as_slice())?;
    }
    Ok(())
}

/// A store error for `doing` on the database at `path`.
fn store_error(path: &Path, doing: &str, error: &rusqlite::Error) -> StoreError {
    StoreError {
        message: format!("SQLite store {}: {doing}: {error}", path.display()),
        transient: is_transient(error),
    }
}

/// The error of opening the database, with the hint an operator needs.
fn opening_error(path: &Path, directory: &Path, error: &rusqlite::Error) -> StoreError {
    let hint = match error.sqlite_error_code() {
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::AuthorizationForStatementDenied,
        ) => format!(
            " (are the directory {} and the file readable and writable by this user?)",
            directory.display()
        ),
        _ => String::new(),
    };
    StoreError {
        message: format!(
            "SQLite store {}: cannot open: {error}{hint}",
            path.display()
        ),
        transient: is_transient(error),
    }
}

/// Busy and locked databases, and a full disk, may get better by
/// themselves; the rest needs an operator.
fn is_transient(error: &rusqlite::Error) -> bool {
    is_busy(error) || error.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

fn bind(value: &Value) -> &dyn ToSql {
    match value {
        Value::Int(int) => int,
        Value::Text(text) => text,
        Value::Bool(flag) => flag,
    }
}

/// The values of `row` from column `first` on, typed by `columns`.
fn read_values<'c>(
    row: &Row<'_>,
    first: usize,
    columns: impl Iterator<Item = &'c sql::Column>,
) -> rusqlite::Result<Vec<Value>> {
    columns
        .enumerate()
        .map(|(index, column)| {
            let index = first + index;
            Ok(match column.kind {
                ColumnType::Int => Value::Int(row.get(index)?),
                ColumnType::Text => Value::Text(row.get(index)?),
                ColumnType::Bool => Value::Bool(row.get(index)?),
            })
        })
        .collect()
}

fn insert_message(
    transaction: &rusqlite::Transaction<'_>,
    message: &OutgoingMessage,
) -> rusqlite::Result<()> {
    let mut statement =
        transaction.prepare_cached(&sql::sqlite_placeholders(sql::INSERT_MESSAGE))?;
    statement.execute(rusqlite::params![
        sql::kind_word(message.kind),
        message.policy_domain,
        message.sender,
        message.recipient,
        message.payload,
        message.created,
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn insert(&mut self, records: &[EvaluationRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<EvaluationRecord> = records
            .iter()
            .cloned()
            .map(EvaluationRecord::normalized)
            .collect();
        self.write("inserting records", |transaction| {
            insert_into(transaction, "dmarc_records", &records)
        })
    }

    fn policy_domains(&mut self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(sql::SELECT_POLICY_DOMAINS))
            .and_then(|mut statement| {
                statement
                    .query_map([begin, end], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            });
        let mut domains = result.map_err(|error| self.error("listing policy domains", &error))?;
        domains.sort();
        Ok(domains)
    }

    fn records(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Vec<EvaluationRecord>, StoreError> {
        let layout = sql::full_record_layout();
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(&sql::select_records()))
            .and_then(|mut statement| {
                statement
                    .query_map(rusqlite::params![policy_domain, begin, end], |row| {
                        read_values(row, 0, layout.iter().copied())
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        result
            .map_err(|error| self.error("reading records", &error))?
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
        let path = self.path.clone();
        let failed = |error: rusqlite::Error| store_error(&path, "reading report rows", &error);
        let mut statement = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(&sql::select_report_rows(
                &DIALECT,
            )))
            .map_err(failed)?;
        let mut rows = statement
            .query(rusqlite::params![policy_domain, begin, end])
            .map_err(failed)?;
        let width = sql::ROW_COLUMNS.len();
        while let Some(row) = rows.next().map_err(failed)? {
            let values = read_values(row, 0, sql::ROW_COLUMNS.iter()).map_err(failed)?;
            let count: i64 = row.get(width).map_err(failed)?;
            let (row, count) = sql::report_row_from_values(values, count)?;
            visit(row, count);
        }
        Ok(())
    }

    fn latest_policy(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<Option<PublishedPolicy>, StoreError> {
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(&sql::select_latest_policy()))
            .and_then(|mut statement| {
                statement
                    .query_row(rusqlite::params![policy_domain, begin, end], |row| {
                        read_values(row, 0, sql::policy_layout())
                    })
                    .optional()
            });
        result
            .map_err(|error| self.error("reading the latest policy", &error))?
            .map(sql::policy_from_values)
            .transpose()
    }

    fn report_exists(
        &mut self,
        policy_domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<bool, StoreError> {
        let count: i64 = self
            .connection
            .query_row(
                &sql::sqlite_placeholders(sql::COUNT_REPORTS),
                rusqlite::params![policy_domain, begin, end],
                |row| row.get(0),
            )
            .map_err(|error| self.error("looking up a report", &error))?;
        Ok(count > 0)
    }

    fn add_report_with(
        &mut self,
        report: &ReportEntry,
        messages: &mut dyn Iterator<Item = OutgoingMessage>,
    ) -> Result<bool, StoreError> {
        let message_count = sql::to_i64(report.message_count, "message count")?;
        self.write("adding a report", |transaction| {
            let added = transaction.execute(
                &sql::sqlite_placeholders(sql::INSERT_REPORT),
                rusqlite::params![
                    report.policy_domain,
                    report.begin,
                    report.end,
                    report.report_id,
                    message_count,
                    report.created,
                ],
            )?;
            if added == 0 {
                return Ok(false);
            }
            for message in messages {
                insert_message(transaction, &message)?;
            }
            Ok(true)
        })
    }

    fn queue_message(&mut self, message: &OutgoingMessage) -> Result<(), StoreError> {
        self.write("queueing a message", |transaction| {
            insert_message(transaction, message)
        })
    }

    fn pending_messages(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(sql::SELECT_PENDING))
            .and_then(|mut statement| {
                statement
                    .query_map([after, limit], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, String>(4)?,
                            row.get::<_, i64>(5)?,
                            row.get::<_, i64>(6)?,
                            row.get::<_, Option<String>>(7)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        result
            .map_err(|error| self.error("reading pending messages", &error))?
            .into_iter()
            .map(
                |(id, kind, policy_domain, sender, recipient, created, attempts, last_error)| {
                    Ok(QueuedMessage {
                        id,
                        kind: sql::kind_of(&kind)?,
                        policy_domain,
                        sender,
                        recipient,
                        created,
                        attempts: u32::try_from(attempts)
                            .map_err(|_| sql::corrupt("attempts", &attempts.to_string()))?,
                        last_error,
                    })
                },
            )
            .collect()
    }

    fn payload(&mut self, id: i64) -> Result<Vec<u8>, StoreError> {
        let payload: Option<Vec<u8>> = self
            .connection
            .query_row(
                &sql::sqlite_placeholders(sql::SELECT_PAYLOAD),
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| self.error("reading a payload", &error))?;
        payload.ok_or_else(|| StoreError {
            message: format!("no queued message with id {id}"),
            transient: false,
        })
    }

    fn claim(&mut self, id: i64, now: i64, until: i64) -> Result<bool, StoreError> {
        let changed = self.write("claiming a message", |transaction| {
            transaction.execute(&sql::sqlite_placeholders(sql::CLAIM), [id, now, until])
        })?;
        Ok(changed > 0)
    }

    fn mark_sent(&mut self, id: i64, time: i64) -> Result<(), StoreError> {
        let changed = self.write("marking a message sent", |transaction| {
            transaction.execute(&sql::sqlite_placeholders(sql::MARK_SENT), [id, time])
        })?;
        sql::message_found(changed > 0, id)
    }

    fn mark_failed(&mut self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        let changed = self.write("marking a message failed", |transaction| {
            transaction.execute(
                &sql::sqlite_placeholders(sql::MARK_FAILED),
                rusqlite::params![id, error, give_up],
            )
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
        let purged = self.write("purging", |transaction| {
            let records =
                transaction.execute(&sql::sqlite_placeholders(sql::PURGE_RECORDS), [before])?;
            transaction.execute(&sql::sqlite_placeholders(sql::PURGE_POLICIES), [before])?;
            transaction.execute(&sql::sqlite_placeholders(sql::PURGE_MESSAGES), [before])?;
            transaction.execute(&sql::sqlite_placeholders(sql::PURGE_REPORTS), [before])?;
            Ok(records)
        })?;
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }
}

impl SqliteStore {
    /// A count of sent messages (`COUNT_SENT` or `COUNT_SENT_DOMAIN`).
    fn count(
        &mut self,
        statement: &str,
        kind: MessageKind,
        key: &str,
        since: i64,
    ) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row(
                &sql::sqlite_placeholders(statement),
                rusqlite::params![sql::kind_word(kind), key, since],
                |row| row.get(0),
            )
            .map_err(|error| self.error("counting sent messages", &error))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// True for SQLITE_BUSY and SQLITE_LOCKED.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}
