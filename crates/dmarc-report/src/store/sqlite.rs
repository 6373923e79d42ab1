//! The SQLite store: one file, WAL journal, nothing to run.

use super::{
    sql::{self, ColumnType, Dialect, Value, RECORD_COLUMNS},
    MessageKind, OutgoingMessage, QueuedMessage, ReportEntry, Store, StoreError,
};
use crate::model::EvaluationRecord;
use rusqlite::{types::ToSql, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

const DIALECT: Dialect = Dialect {
    id: "INTEGER PRIMARY KEY AUTOINCREMENT",
    int: "INTEGER",
    bool: "INTEGER",
    blob: "BLOB",
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
/// The schema is created when the file is new (schema version in
/// `PRAGMA user_version`).
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
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if !directory.is_dir() {
            let problem = if directory.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(StoreError {
                message: format!(
                    "SQLite store {}: {} {problem}",
                    path.display(),
                    directory.display()
                ),
                transient: false,
            });
        }
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
        store.create_schema()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the schema in a new database, or checks the version of an
    /// existing one. `BEGIN IMMEDIATE` makes two processes opening a new
    /// file at once create it one after the other.
    fn create_schema(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let failed = |error: rusqlite::Error| store_error(&path, "creating the schema", &error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version: i64 = transaction
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        if version == sql::SCHEMA_VERSION {
            return Ok(());
        }
        if version != 0 {
            return Err(StoreError {
                message: format!(
                    "SQLite store {}: schema version {version}, this program knows version {}",
                    path.display(),
                    sql::SCHEMA_VERSION
                ),
                transient: false,
            });
        }
        let foreign: Option<String> = transaction
            .query_row(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        if let Some(name) = foreign {
            return Err(StoreError {
                message: format!(
                    "SQLite store {}: not a dmarc-report database (it holds {name:?} and no schema version)",
                    path.display()
                ),
                transient: false,
            });
        }
        for statement in sql::schema(&DIALECT) {
            transaction.execute(&statement, []).map_err(failed)?;
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
            " (is the directory {} writable by this user?)",
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

fn read_record(row: &Row<'_>) -> rusqlite::Result<Vec<Value>> {
    RECORD_COLUMNS
        .iter()
        .enumerate()
        .map(|(index, column)| {
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
        let rows = records
            .iter()
            .map(sql::record_values)
            .collect::<Result<Vec<_>, _>>()?;
        self.write("inserting records", |transaction| {
            let mut statement =
                transaction.prepare_cached(&sql::sqlite_placeholders(&sql::insert_records(1)))?;
            for values in &rows {
                let params: Vec<&dyn ToSql> = values.iter().map(bind).collect();
                statement.execute(params.as_slice())?;
            }
            Ok(())
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
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(&sql::select_records()))
            .and_then(|mut statement| {
                statement
                    .query_map(rusqlite::params![policy_domain, begin, end], read_record)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        result
            .map_err(|error| self.error("reading records", &error))?
            .into_iter()
            .map(sql::record_from_values)
            .collect()
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

    fn add_report(
        &mut self,
        report: &ReportEntry,
        messages: &[OutgoingMessage],
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
                insert_message(transaction, message)?;
            }
            Ok(true)
        })
    }

    fn queue_message(&mut self, message: &OutgoingMessage) -> Result<(), StoreError> {
        self.write("queueing a message", |transaction| {
            insert_message(transaction, message)
        })
    }

    fn pending_messages(&mut self, limit: usize) -> Result<Vec<QueuedMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = self
            .connection
            .prepare_cached(&sql::sqlite_placeholders(sql::SELECT_PENDING))
            .and_then(|mut statement| {
                statement
                    .query_map([limit], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            OutgoingMessage {
                                kind: MessageKind::Aggregate,
                                policy_domain: row.get(2)?,
                                sender: row.get(3)?,
                                recipient: row.get(4)?,
                                payload: row.get(5)?,
                                created: row.get(6)?,
                            },
                            row.get::<_, i64>(7)?,
                            row.get::<_, Option<String>>(8)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        result
            .map_err(|error| self.error("reading pending messages", &error))?
            .into_iter()
            .map(|(id, kind, mut message, attempts, last_error)| {
                message.kind = sql::kind_of(&kind)?;
                Ok(QueuedMessage {
                    id,
                    message,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| sql::corrupt("attempts", &attempts.to_string()))?,
                    last_error,
                })
            })
            .collect()
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
        let count: i64 = self
            .connection
            .query_row(
                &sql::sqlite_placeholders(sql::COUNT_SENT),
                rusqlite::params![sql::kind_word(kind), recipient, since],
                |row| row.get(0),
            )
            .map_err(|error| self.error("counting sent messages", &error))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn purge(&mut self, before: i64) -> Result<u64, StoreError> {
        let purged = self.write("purging", |transaction| {
            let records =
                transaction.execute(&sql::sqlite_placeholders(sql::PURGE_RECORDS), [before])?;
            transaction.execute(&sql::sqlite_placeholders(sql::PURGE_MESSAGES), [before])?;
            transaction.execute(&sql::sqlite_placeholders(sql::PURGE_REPORTS), [before])?;
            Ok(records)
        })?;
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }
}

/// True for SQLITE_BUSY and SQLITE_LOCKED.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}
