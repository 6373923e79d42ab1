//! The store's behaviour, written once and run against SQLite and a real
//! PostgreSQL server, then the recorder that the milter writes through.
//!
//! PostgreSQL: `DMARC_REPORT_POSTGRES` unset runs those tests when the
//! server's binaries are installed (`/usr/lib/postgresql/*/bin`, or the
//! directory in `DMARC_REPORT_PG_BIN`) and prints a "skipped" line
//! otherwise; `require` fails them when they cannot run; `skip` skips them.
//! One server is started for the whole test binary (each test gets a
//! database of its own) and stopped when the binary exits, however it
//! exits.

use dmarc_report::{
    model::{
        ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DkimWord,
        DmarcWord, EvaluationRecord, OverrideWord, PolicyOverride, PolicyWord, PublishedPolicy,
        ReportDestination, SpfAuth, SpfScopeWord, SpfWord,
    },
    store::{
        self,
        recorder::{Recorder, RecorderStats},
        MessageKind, OutgoingMessage, PostgresStore, ReportEntry, SqliteStore, Store, StoreError,
        StoreLocation,
    },
};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Arc, Barrier, Condvar, Mutex},
    time::{Duration, Instant},
};

// --- Fixtures ---------------------------------------------------------------

/// A record with every field set, an IPv6 client and a Unicode author.
fn full_record(time: i64, policy_domain: &str) -> EvaluationRecord {
    EvaluationRecord {
        time,
        source_ip: "2001:db8::25".parse().unwrap(),
        header_from: format!("bücher.{policy_domain}"),
        envelope_from: Some("bounces.example.net".to_string()),
        envelope_to: Some("example.org".to_string()),
        policy: Some(PublishedPolicy {
            domain: policy_domain.to_string(),
            discovery_method: DiscoveryWord::TreeWalk,
            p: PolicyWord::Reject,
            sp: Some(PolicyWord::Quarantine),
            np: Some(PolicyWord::None),
            adkim: AlignmentWord::Strict,
            aspf: AlignmentWord::Relaxed,
            pct: 50,
            fo: "1:d".to_string(),
            testing: true,
            psd: true,
            rua: vec![
                ReportDestination {
                    uri: "mailto:rua@example.com".to_string(),
                    max_size: Some(10 * 1024 * 1024),
                },
                ReportDestination {
                    uri: "mailto:agg@example.net".to_string(),
                    max_size: None,
                },
            ],
            ruf: vec![ReportDestination {
                uri: "mailto:ruf@example.com".to_string(),
                max_size: Some(u64::MAX),
            }],
        }),
        dmarc: DmarcWord::Fail,
        disposition: ActionDisposition::Quarantine,
        dkim_aligned: AlignedWord::Fail,
        spf_aligned: AlignedWord::Pass,
        reasons: vec![
            PolicyOverride {
                kind: OverrideWord::Other,
                comment: Some("sampled out by pct=50".to_string()),
            },
            PolicyOverride {
                kind: OverrideWord::MailingList,
                comment: None,
            },
        ],
        spf: Some(SpfAuth {
            domain: "bounces.example.net".to_string(),
            scope: SpfScopeWord::MailFrom,
            result: SpfWord::SoftFail,
            human_result: Some("matched ~all (Ünïcode ✓)".to_string()),
        }),
        dkim: vec![
            DkimAuth {
                domain: policy_domain.to_string(),
                selector: "s2024".to_string(),
                result: DkimWord::Fail,
                human_result: Some("body hash did not verify".to_string()),
            },
            DkimAuth {
                domain: "esp.example".to_string(),
                selector: "k1".to_string(),
                result: DkimWord::Pass,
                human_result: None,
            },
        ],
    }
}

/// A record with every optional field empty.
fn sparse_record(time: i64, policy_domain: &str) -> EvaluationRecord {
    EvaluationRecord {
        time,
        source_ip: "192.0.2.1".parse().unwrap(),
        header_from: policy_domain.to_string(),
        envelope_from: None,
        envelope_to: None,
        policy: Some(PublishedPolicy {
            domain: policy_domain.to_string(),
            discovery_method: DiscoveryWord::Psl,
            p: PolicyWord::None,
            sp: None,
            np: None,
            adkim: AlignmentWord::Relaxed,
            aspf: AlignmentWord::Relaxed,
            pct: 100,
            fo: "0".to_string(),
            testing: false,
            psd: false,
            rua: Vec::new(),
            ruf: Vec::new(),
        }),
        dmarc: DmarcWord::Pass,
        disposition: ActionDisposition::None,
        dkim_aligned: AlignedWord::Pass,
        spf_aligned: AlignedWord::Fail,
        reasons: Vec::new(),
        spf: None,
        dkim: Vec::new(),
    }
}

/// A record of a message whose author domain has no DMARC record.
fn no_policy_record(time: i64) -> EvaluationRecord {
    EvaluationRecord {
        policy: None,
        dmarc: DmarcWord::None,
        header_from: "no-dmarc.example".to_string(),
        ..sparse_record(time, "no-dmarc.example")
    }
}

fn message(kind: MessageKind, recipient: &str, created: i64) -> OutgoingMessage {
    OutgoingMessage {
        kind,
        policy_domain: "example.com".to_string(),
        sender: "dmarc-reports@mx.example.org".to_string(),
        recipient: recipient.to_string(),
        payload: b"Subject: report\r\n\r\n\x00\xff binary\r\n".to_vec(),
        created,
    }
}

fn report(policy_domain: &str, begin: i64, end: i64) -> ReportEntry {
    ReportEntry {
        policy_domain: policy_domain.to_string(),
        begin,
        end,
        report_id: format!("{policy_domain}.{begin}"),
        message_count: 3,
        created: end + 60,
    }
}

fn times(records: &[EvaluationRecord]) -> Vec<i64> {
    records.iter().map(|record| record.time).collect()
}

// --- The suite, once per backend ------------------------------------------

/// Where a test's store lives; `open` gives one more connection to it.
trait Backend: Sync {
    fn location(&self) -> StoreLocation;
    fn open(&self) -> Box<dyn Store> {
        store::open(&self.location()).unwrap()
    }
    /// Rewrites the schema version, as another program version would.
    fn set_schema_version(&self, version: i64);
    /// Runs SQL statements on the database, outside any store.
    fn execute(&self, statements: &str);
    /// One number the database answers.
    fn count(&self, query: &str) -> i64;
    /// The types of the dialect: (id, int, bool, blob).
    fn types(&self) -> (&'static str, &'static str, &'static str, &'static str);
}

struct Sqlite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Sqlite {
    fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.sqlite");
        Sqlite { _dir: dir, path }
    }
}

impl Backend for Sqlite {
    fn location(&self) -> StoreLocation {
        StoreLocation::Sqlite(self.path.clone())
    }

    fn set_schema_version(&self, version: i64) {
        let connection = rusqlite::Connection::open(&self.path).unwrap();
        connection
            .pragma_update(None, "user_version", version)
            .unwrap();
    }

    fn execute(&self, statements: &str) {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .execute_batch(statements)
            .unwrap();
    }

    fn count(&self, query: &str) -> i64 {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .query_row(query, [], |row| row.get(0))
            .unwrap()
    }

    fn types(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        (
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "INTEGER",
            "INTEGER",
            "BLOB",
        )
    }
}

macro_rules! suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::Sqlite::new());
                }
            )+
        }

        mod postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(backend) = super::pg::database() {
                        super::$test(&backend);
                    }
                }
            )+
        }
    };
}

suite!(
    records_round_trip_with_every_field,
    records_are_read_in_half_open_periods_oldest_first,
    policy_domains_are_sorted_distinct_and_skip_records_without_policy,
    text_with_nul_is_stored,
    add_report_is_idempotent,
    add_report_race_has_exactly_one_winner,
    claims_race_has_exactly_one_winner_and_expire,
    messages_go_from_pending_to_sent_or_abandoned,
    sent_since_counts_sent_messages_of_one_kind_and_recipient,
    purge_removes_old_records_and_finished_messages,
    hosts_opening_a_new_store_at_once_all_succeed,
    schema_of_another_version_is_refused,
    each_policy_is_stored_once_and_purged_when_unused,
    report_rows_group_the_same_facts_in_a_fixed_order,
    a_version_1_store_is_migrated,
    check_reads_without_writing,
    message_counts_read_each_kind_and_state_without_writing,
);

fn records_round_trip_with_every_field(backend: &dyn Backend) {
    let mut store = backend.open();
    let written = vec![
        full_record(1_000, "example.com"),
        no_policy_record(1_001),
        sparse_record(1_002, "example.com"),
    ];
    store.insert(&written).unwrap();
    store.insert(&[]).unwrap();

    // Stored in normal form (here: the DKIM results in report order).
    let read = backend.open().records("example.com", 0, 2_000).unwrap();
    assert_eq!(
        read,
        vec![
            written[0].clone().normalized(),
            written[2].clone().normalized()
        ]
    );
    assert_eq!(read[0].dkim[0].domain, "esp.example", "passing first");
    assert!(store
        .records("no-dmarc.example", 0, 2_000)
        .unwrap()
        .is_empty());
}

fn records_are_read_in_half_open_periods_oldest_first(backend: &dyn Backend) {
    let mut store = backend.open();
    let written: Vec<EvaluationRecord> = [199, 100, 99, 200, 150, 100]
        .into_iter()
        .map(|time| sparse_record(time, "example.com"))
        .collect();
    store.insert(&written).unwrap();
    store
        .insert(&[sparse_record(150, "other.example")])
        .unwrap();

    let read = store.records("example.com", 100, 200).unwrap();
    assert_eq!(times(&read), vec![100, 100, 150, 199]);
    assert!(store.records("example.com", 100, 100).unwrap().is_empty());
    assert!(store.records("EXAMPLE.COM", 0, 1_000).unwrap().is_empty());
}

fn policy_domains_are_sorted_distinct_and_skip_records_without_policy(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .insert(&[
            sparse_record(10, "zeta.example"),
            sparse_record(11, "alpha.example"),
            no_policy_record(12),
            sparse_record(13, "zeta.example"),
            sparse_record(14, "Mixed.example"),
            sparse_record(20, "late.example"),
            sparse_record(9, "early.example"),
        ])
        .unwrap();

    assert_eq!(
        store.policy_domains(10, 20).unwrap(),
        vec!["alpha.example", "mixed.example", "zeta.example"]
    );
    assert!(store.policy_domains(100, 200).unwrap().is_empty());
}

fn text_with_nul_is_stored(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut record = full_record(5, "example.com");
    if let Some(spf) = record.spf.as_mut() {
        spf.human_result = Some("before\0after".to_string());
    }
    store.insert(&[record]).unwrap();

    let read = store.records("example.com", 0, 10).unwrap();
    let human = read[0].spf.as_ref().unwrap().human_result.as_deref();
    // SQLite keeps it; PostgreSQL text cannot hold NUL, it becomes U+FFFD.
    assert!(
        matches!(human, Some("before\0after" | "before\u{FFFD}after")),
        "{human:?}"
    );
}

fn add_report_is_idempotent(backend: &dyn Backend) {
    let mut store = backend.open();
    let entry = report("example.com", 0, 86_400);
    let first = [
        message(MessageKind::Aggregate, "rua@example.com", 86_460),
        message(MessageKind::Aggregate, "agg@example.net", 86_460),
    ];
    assert!(!store.report_exists("example.com", 0, 86_400).unwrap());
    assert!(store.add_report(&entry, &first).unwrap());
    assert!(store.report_exists("example.com", 0, 86_400).unwrap());
    assert!(!store.report_exists("example.com", 0, 86_401).unwrap());

    let again = [message(
        MessageKind::Aggregate,
        "someone@else.example",
        90_000,
    )];
    assert!(!store.add_report(&entry, &again).unwrap());
    let pending = store.pending_messages(0, 10).unwrap();
    let recipients: Vec<&str> = pending
        .iter()
        .map(|queued| queued.recipient.as_str())
        .collect();
    assert_eq!(recipients, ["rua@example.com", "agg@example.net"]);
    assert_eq!(
        (
            pending[0].kind,
            pending[0].policy_domain.as_str(),
            pending[0].sender.as_str(),
            pending[0].created
        ),
        (
            first[0].kind,
            first[0].policy_domain.as_str(),
            first[0].sender.as_str(),
            first[0].created
        )
    );
    assert_eq!(store.payload(pending[0].id).unwrap(), first[0].payload);

    // Another period or domain is another report.
    assert!(store
        .add_report(&report("example.com", 86_400, 172_800), &[])
        .unwrap());
    assert!(store
        .add_report(&report("example.net", 0, 86_400), &[])
        .unwrap());
}

fn add_report_race_has_exactly_one_winner(backend: &dyn Backend) {
    const HOSTS: usize = 4;
    let barrier = Barrier::new(HOSTS);
    let entry = report("example.com", 0, 86_400);
    let results: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..HOSTS)
            .map(|host| {
                let (barrier, entry) = (&barrier, &entry);
                scope.spawn(move || {
                    let mut store = backend.open();
                    let messages = [message(
                        MessageKind::Aggregate,
                        &format!("host{host}@example.com"),
                        100,
                    )];
                    barrier.wait();
                    store.add_report(entry, &messages).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(
        results.iter().filter(|added| **added).count(),
        1,
        "{results:?}"
    );
    assert_eq!(backend.open().pending_messages(0, 100).unwrap().len(), 1);
}

/// Hosts delivering from one store: each message is claimed by exactly one
/// of them; a claim expires (a crashed host's messages go out later); a
/// sent message cannot be claimed.
fn claims_race_has_exactly_one_winner_and_expire(backend: &dyn Backend) {
    const HOSTS: usize = 4;
    let mut store = backend.open();
    store
        .queue_message(&message(MessageKind::Aggregate, "rua@example.com", 10))
        .unwrap();
    let id = store.pending_messages(0, 1).unwrap()[0].id;
    let barrier = Barrier::new(HOSTS);
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..HOSTS)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut store = backend.open();
                    barrier.wait();
                    store.claim(id, 1_000, 1_600).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(!store.claim(id, 1_599, 2_000).unwrap(), "still held");
    assert!(store.claim(id, 1_600, 2_200).unwrap(), "expired");
    store.mark_sent(id, 1_700).unwrap();
    assert!(!store.claim(id, 5_000, 5_600).unwrap(), "sent");
    assert!(!store.claim(id + 1_000, 5_000, 5_600).unwrap(), "unknown");
}

fn messages_go_from_pending_to_sent_or_abandoned(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .queue_message(&message(MessageKind::Failure, "c@example.com", 30))
        .unwrap();
    store
        .queue_message(&message(MessageKind::Failure, "a@example.com", 10))
        .unwrap();
    store
        .queue_message(&message(MessageKind::Aggregate, "b@example.com", 20))
        .unwrap();

    // By id, in the order queued; a cursor: each batch after the last id.
    let pending = store.pending_messages(0, 10).unwrap();
    let recipients: Vec<&str> = pending
        .iter()
        .map(|queued| queued.recipient.as_str())
        .collect();
    assert_eq!(
        recipients,
        ["c@example.com", "a@example.com", "b@example.com"]
    );
    assert!(pending
        .iter()
        .all(|queued| queued.attempts == 0 && queued.last_error.is_none()));
    assert_eq!(store.pending_messages(0, 2).unwrap().len(), 2);
    assert!(store.pending_messages(0, 0).unwrap().is_empty());
    let next: Vec<i64> = store
        .pending_messages(pending[0].id, 10)
        .unwrap()
        .iter()
        .map(|queued| queued.id)
        .collect();
    assert_eq!(next, [pending[1].id, pending[2].id]);
    let (c, a, b) = (pending[0].id, pending[1].id, pending[2].id);

    // A failed attempt stays pending, counted, with its error.
    store.mark_failed(a, "451 4.7.1 try later", false).unwrap();
    store
        .mark_failed(a, "421 4.3.2 shutting down", false)
        .unwrap();
    let again = store.pending_messages(0, 10).unwrap();
    assert_eq!(again[1].id, a);
    assert_eq!(again[1].attempts, 2);
    assert_eq!(
        again[1].last_error.as_deref(),
        Some("421 4.3.2 shutting down")
    );

    // Giving up and delivering both leave the pending set.
    store
        .mark_failed(a, "550 5.1.1 no such user", true)
        .unwrap();
    store.mark_sent(b, 100).unwrap();
    let left: Vec<i64> = store
        .pending_messages(0, 10)
        .unwrap()
        .iter()
        .map(|queued| queued.id)
        .collect();
    assert_eq!(left, [c]);

    // A late failure report on a sent message does not un-send it.
    store.mark_failed(b, "duplicate", true).unwrap();
    assert_eq!(
        store
            .sent_since(MessageKind::Aggregate, "b@example.com", 0)
            .unwrap(),
        1
    );

    let unknown = store.mark_sent(999_999, 100).unwrap_err();
    assert!(!unknown.transient);
    assert!(unknown.message.contains("999999"), "{unknown}");
    assert!(store.mark_failed(999_999, "x", false).is_err());
    assert!(!store.payload(999_999).unwrap_err().transient);
}

fn sent_since_counts_sent_messages_of_one_kind_and_recipient(backend: &dyn Backend) {
    let mut store = backend.open();
    let queue = |store: &mut Box<dyn Store>, kind, recipient: &str| {
        store.queue_message(&message(kind, recipient, 1)).unwrap();
        store.pending_messages(0, 100).unwrap().last().unwrap().id
    };
    for sent_at in [100, 200, 300] {
        let id = queue(&mut store, MessageKind::Failure, "ruf@example.com");
        store.mark_sent(id, sent_at).unwrap();
    }
    let other_kind = queue(&mut store, MessageKind::Aggregate, "ruf@example.com");
    store.mark_sent(other_kind, 250).unwrap();
    let other_recipient = queue(&mut store, MessageKind::Failure, "ruf@example.net");
    store.mark_sent(other_recipient, 250).unwrap();
    let abandoned = queue(&mut store, MessageKind::Failure, "ruf@example.com");
    store.mark_failed(abandoned, "550", true).unwrap();
    queue(&mut store, MessageKind::Failure, "ruf@example.com");

    let count = |store: &mut Box<dyn Store>, since| {
        store
            .sent_since(MessageKind::Failure, "ruf@example.com", since)
            .unwrap()
    };
    assert_eq!(count(&mut store, 0), 3);
    assert_eq!(count(&mut store, 200), 2);
    assert_eq!(count(&mut store, 301), 0);
    assert_eq!(
        store
            .sent_since(MessageKind::Aggregate, "ruf@example.com", 0)
            .unwrap(),
        1
    );
    // Per policy domain: every message above is about example.com.
    assert_eq!(
        store
            .sent_since_domain(MessageKind::Failure, "example.com", 200)
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .sent_since_domain(MessageKind::Failure, "example.net", 0)
            .unwrap(),
        0
    );
}

fn purge_removes_old_records_and_finished_messages(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .insert(&[
            sparse_record(10, "example.com"),
            no_policy_record(15),
            sparse_record(20, "example.com"),
            sparse_record(30, "example.com"),
        ])
        .unwrap();
    for created in [5, 50] {
        store
            .queue_message(&message(MessageKind::Failure, "sent@example.com", created))
            .unwrap();
        store
            .queue_message(&message(MessageKind::Failure, "gone@example.com", created))
            .unwrap();
        store
            .queue_message(&message(
                MessageKind::Failure,
                "waiting@example.com",
                created,
            ))
            .unwrap();
    }
    for queued in store.pending_messages(0, 100).unwrap() {
        match queued.recipient.as_str() {
            "sent@example.com" => store.mark_sent(queued.id, 60).unwrap(),
            "gone@example.com" => store.mark_failed(queued.id, "550", true).unwrap(),
            _ => {}
        }
    }
    assert!(store
        .add_report(&report("example.com", 0, 20), &[])
        .unwrap());
    assert!(store
        .add_report(&report("example.com", 20, 40), &[])
        .unwrap());

    assert_eq!(store.purge(25).unwrap(), 3);

    assert_eq!(times(&store.records("example.com", 0, 100).unwrap()), [30]);
    let pending: Vec<i64> = store
        .pending_messages(0, 100)
        .unwrap()
        .iter()
        .map(|queued| queued.created)
        .collect();
    assert_eq!(pending, [5, 50], "pending messages are never purged");
    assert_eq!(
        store
            .sent_since(MessageKind::Failure, "sent@example.com", 0)
            .unwrap(),
        1
    );
    assert!(!store.report_exists("example.com", 0, 20).unwrap());
    assert!(store.report_exists("example.com", 20, 40).unwrap());
    assert_eq!(store.purge(25).unwrap(), 0);
}

fn hosts_opening_a_new_store_at_once_all_succeed(backend: &dyn Backend) {
    const HOSTS: usize = 4;
    let barrier = Barrier::new(HOSTS);
    std::thread::scope(|scope| {
        for host in 0..HOSTS {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                let mut store = backend.open();
                let time = i64::try_from(host).unwrap();
                store.insert(&[sparse_record(time, "example.com")]).unwrap();
            });
        }
    });
    assert_eq!(
        backend.open().records("example.com", 0, 10).unwrap().len(),
        HOSTS
    );
}

fn schema_of_another_version_is_refused(backend: &dyn Backend) {
    drop(backend.open());
    backend.set_schema_version(7);
    let error = store::open(&backend.location()).map(|_| ()).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("schema version 7"), "{error}");
}

/// Issue 16 item 3: a policy seen by many messages is one row; records
/// refer to it; it goes when no record is left.
fn each_policy_is_stored_once_and_purged_when_unused(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut fat = full_record(10, "example.com");
    if let Some(policy) = fat.policy.as_mut() {
        policy.rua = (0..500)
            .map(|n| ReportDestination {
                uri: format!("mailto:rua{}@example.com", n % 50),
                max_size: None,
            })
            .collect();
    }
    let records: Vec<EvaluationRecord> = (0..300)
        .map(|n| EvaluationRecord {
            time: 10 + n,
            ..fat.clone()
        })
        .collect();
    for chunk in records.chunks(100) {
        store.insert(chunk).unwrap();
    }
    store.insert(&[sparse_record(20, "example.net")]).unwrap();
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_policies"), 2);
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_records"), 301);
    // Repeats kept once, at most 100 per stored list.
    let read = store.records("example.com", 0, 1_000).unwrap();
    assert_eq!(read.len(), 300);
    assert_eq!(read[0].policy.as_ref().unwrap().rua.len(), 50);
    assert_eq!(read[0], records[0].clone().normalized());

    // last_seen follows the latest record: purging before it keeps the
    // policy for the records left.
    store.purge(200).unwrap();
    assert_eq!(store.records("example.com", 0, 1_000).unwrap().len(), 110);
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_policies"), 1);
    assert!(store
        .latest_policy("example.com", 0, 1_000)
        .unwrap()
        .is_some());
    store.purge(1_000).unwrap();
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_policies"), 0);
}

/// Issue 16 item 6: the database groups the rows; the same facts in any
/// case or signature order are one row.
fn report_rows_group_the_same_facts_in_a_fixed_order(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut swapped = full_record(3, "example.com");
    swapped.dkim.reverse();
    swapped.envelope_from = swapped.envelope_from.map(|d| d.to_ascii_uppercase());
    let mut other_ip = full_record(4, "example.com");
    other_ip.source_ip = "192.0.2.9".parse().unwrap();
    store
        .insert(&[
            full_record(1, "example.com"),
            full_record(2, "example.com"),
            swapped,
            other_ip,
            sparse_record(5, "example.org"),
        ])
        .unwrap();
    let rows = |store: &mut Box<dyn Store>| {
        let mut rows = Vec::new();
        store
            .report_rows("example.com", 0, 10, &mut |row, count| {
                rows.push((row.source_ip.to_string(), count))
            })
            .unwrap();
        rows
    };
    let first = rows(&mut store);
    assert_eq!(
        first,
        [
            ("192.0.2.9".to_string(), 1),
            ("2001:db8::25".to_string(), 3)
        ]
    );
    assert_eq!(rows(&mut backend.open()), first);
    let latest = store.latest_policy("example.com", 0, 10).unwrap().unwrap();
    assert_eq!(latest.domain, "example.com");
    assert!(store
        .latest_policy("example.com", 10, 20)
        .unwrap()
        .is_none());
}

/// A store of schema version 1 (policies in every record, lists as JSON
/// objects, recipients as given) opens as version 2 with every record.
fn a_version_1_store_is_migrated(backend: &dyn Backend) {
    let (id, int, boolean, blob) = backend.types();
    let (t, f) = if boolean == "BOOLEAN" {
        ("TRUE", "FALSE")
    } else {
        ("1", "0")
    };
    backend.execute(&format!(
        "CREATE TABLE dmarc_records (id {id}, time {int} NOT NULL, source_ip TEXT NOT NULL,          header_from TEXT NOT NULL, envelope_from TEXT, envelope_to TEXT, policy_domain TEXT,          policy_discovery TEXT, policy_p TEXT, policy_sp TEXT, policy_np TEXT, policy_adkim TEXT,          policy_aspf TEXT, policy_pct {int}, policy_fo TEXT, policy_testing {boolean},          policy_psd {boolean}, policy_rua TEXT, policy_ruf TEXT, dmarc TEXT NOT NULL,          disposition TEXT NOT NULL, dkim_aligned TEXT NOT NULL, spf_aligned TEXT NOT NULL,          reasons TEXT NOT NULL, spf_domain TEXT, spf_scope TEXT, spf_result TEXT,          spf_human_result TEXT, dkim TEXT NOT NULL);
         CREATE INDEX dmarc_records_domain_time ON dmarc_records (policy_domain, time);
         CREATE INDEX dmarc_records_time ON dmarc_records (time);
         CREATE TABLE dmarc_reports (id {id}, policy_domain TEXT NOT NULL, period_begin {int} NOT NULL,          period_end {int} NOT NULL, report_id TEXT NOT NULL, message_count {int} NOT NULL,          created {int} NOT NULL, UNIQUE (policy_domain, period_begin, period_end));
         CREATE TABLE dmarc_messages (id {id}, kind TEXT NOT NULL, policy_domain TEXT NOT NULL,          sender TEXT NOT NULL, recipient TEXT NOT NULL, payload {blob} NOT NULL, created {int} NOT NULL,          state TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, sent_at {int}, claimed_until {int});
         INSERT INTO dmarc_records (time, source_ip, header_from, envelope_from, envelope_to,          policy_domain, policy_discovery, policy_p, policy_sp, policy_np, policy_adkim, policy_aspf,          policy_pct, policy_fo, policy_testing, policy_psd, policy_rua, policy_ruf, dmarc, disposition,          dkim_aligned, spf_aligned, reasons, spf_domain, spf_scope, spf_result, spf_human_result, dkim)          VALUES          (100, '192.0.2.1', 'Example.COM', 'bounce.example.com', NULL, 'example.com', 'psl', 'reject',           NULL, NULL, 'r', 'r', 100, '1', {f}, {f},           '[{{\"uri\":\"mailto:RUA@example.com\",\"max_size\":null}},{{\"uri\":\"mailto:rua@example.com\",\"max_size\":null}}]',           '[{{\"uri\":\"mailto:x%y@example.com\",\"max_size\":null}}]', 'fail', 'reject', 'fail', 'fail',           '[{{\"kind\":\"other\",\"comment\":\"sampled out by pct=50\"}}]', 'example.com', 'mfrom', 'fail', NULL,           '[{{\"domain\":\"x.example\",\"selector\":\"s\",\"result\":\"fail\",\"human_result\":null}},            {{\"domain\":\"example.com\",\"selector\":\"s\",\"result\":\"pass\",\"human_result\":null}}]'),
         (200, '192.0.2.2', 'example.com', NULL, NULL, 'example.com', 'psl', 'reject',           NULL, NULL, 'r', 'r', 100, '1', {f}, {t}, '[]', '[]', 'pass', 'pass', 'pass', 'fail', '[]',           NULL, NULL, NULL, NULL, '[]'),
         (300, '192.0.2.3', 'none.example', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,           NULL, NULL, NULL, NULL, NULL, NULL, 'none', 'none', 'fail', 'fail', '[]', NULL, NULL, NULL, NULL, '[]');
         INSERT INTO dmarc_messages (kind, policy_domain, sender, recipient, payload, created, state, attempts)          VALUES ('failure', 'example.com', 'me@mx.example', 'RUF@Example.COM', 'x', 1, 'pending', 0);"
    ));
    if boolean == "BOOLEAN" {
        backend.execute(
            "CREATE TABLE dmarc_schema (version BIGINT NOT NULL); INSERT INTO dmarc_schema VALUES (1);",
        );
    } else {
        backend.set_schema_version(1);
    }
    assert_eq!(
        store::check(&backend.location()).unwrap(),
        store::StoreStatus::Migrate { from: 1 }
    );

    let mut store = backend.open();
    assert_eq!(
        store::check(&backend.location()).unwrap(),
        store::StoreStatus::Current
    );
    let read = store.records("example.com", 0, 1_000).unwrap();
    assert_eq!(read.len(), 2);
    let first = &read[0];
    assert_eq!(first.header_from, "example.com");
    let policy = first.policy.as_ref().unwrap();
    assert_eq!(policy.rua.len(), 1, "repeats kept once");
    assert_eq!(policy.rua[0].uri, "mailto:rua@example.com");
    assert!(policy.ruf.is_empty(), "a relay hack is not kept");
    assert_eq!(first.dkim[0].domain, "example.com", "report order");
    assert_eq!(
        first.reasons[0].comment.as_deref(),
        Some("sampled out by pct=50")
    );
    assert!(read[1].policy.as_ref().unwrap().psd);
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_policies"), 2);
    assert_eq!(backend.count("SELECT count(*) FROM dmarc_records"), 3);
    let pending = store.pending_messages(0, 10).unwrap();
    assert_eq!(pending[0].recipient, "ruf@example.com");
    // And it goes on working.
    store.insert(&[sparse_record(400, "example.com")]).unwrap();
    assert_eq!(store.records("example.com", 0, 1_000).unwrap().len(), 3);
}

/// `check` says what opening would do, and changes nothing.
fn check_reads_without_writing(backend: &dyn Backend) {
    let status = store::check(&backend.location()).unwrap();
    assert!(
        matches!(
            status,
            store::StoreStatus::Missing | store::StoreStatus::Empty
        ),
        "{status:?}"
    );
    // Still nothing there: opening would create the schema.
    assert!(matches!(
        store::check(&backend.location()).unwrap(),
        store::StoreStatus::Missing | store::StoreStatus::Empty
    ));
    drop(backend.open());
    assert_eq!(
        store::check(&backend.location()).unwrap(),
        store::StoreStatus::Current
    );
    backend.set_schema_version(9);
    let error = store::check(&backend.location()).unwrap_err();
    assert!(
        !error.transient && error.message.contains("schema version 9"),
        "{error}"
    );
}

/// The counts a metrics scrape reads (issue 15): nothing before the store
/// exists (and nothing is created), then each kind and state.
fn message_counts_read_each_kind_and_state_without_writing(backend: &dyn Backend) {
    assert_eq!(
        store::message_counts(&backend.location()).unwrap(),
        store::MessageCounts::default()
    );
    assert!(matches!(
        store::check(&backend.location()).unwrap(),
        store::StoreStatus::Missing | store::StoreStatus::Empty
    ));
    let mut store = backend.open();
    for (kind, recipient) in [
        (MessageKind::Aggregate, "a@example.com"),
        (MessageKind::Failure, "b@example.com"),
        (MessageKind::Failure, "c@example.com"),
        (MessageKind::Failure, "d@example.com"),
    ] {
        store.queue_message(&message(kind, recipient, 100)).unwrap();
    }
    let pending = store.pending_messages(0, 10).unwrap();
    let id = |recipient: &str| {
        pending
            .iter()
            .find(|m| m.recipient == recipient)
            .unwrap()
            .id
    };
    store.mark_sent(id("b@example.com"), 200).unwrap();
    store
        .mark_failed(id("c@example.com"), "refused", true)
        .unwrap();
    store
        .mark_failed(id("a@example.com"), "later", false)
        .unwrap();
    let counts = store::message_counts(&backend.location()).unwrap();
    assert_eq!(
        counts,
        store::MessageCounts {
            aggregate: store::StateCounts {
                pending: 1,
                sent: 0,
                abandoned: 0
            },
            failure: store::StateCounts {
                pending: 1,
                sent: 1,
                abandoned: 1
            },
        }
    );
}

// --- SQLite only ------------------------------------------------------------

#[test]
fn sqlite_check_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        SqliteStore::check(&path).unwrap(),
        store::StoreStatus::Missing
    );
    assert!(listing().is_empty());
    // A store that exists, closed (WAL files gone): read as immutable.
    SqliteStore::open(&path)
        .unwrap()
        .insert(&[sparse_record(1, "example.com")])
        .unwrap();
    let before = listing();
    assert_eq!(
        SqliteStore::check(&path).unwrap(),
        store::StoreStatus::Current
    );
    assert_eq!(listing(), before);
    // A store in use (WAL files there): read with them, nothing created.
    let _open = SqliteStore::open(&path).unwrap();
    let before = listing();
    assert_eq!(
        SqliteStore::check(&path).unwrap(),
        store::StoreStatus::Current
    );
    assert_eq!(listing(), before);
    // A foreign file is an error; a missing directory too.
    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE mail (id INTEGER)")
        .unwrap();
    assert!(SqliteStore::check(&foreign).is_err());
    assert!(SqliteStore::check(&dir.path().join("no/such.sqlite")).is_err());
    // A path an SQLite URI would misread.
    let odd = dir.path().join("odd ?#%.sqlite");
    SqliteStore::open(&odd).unwrap();
    assert_eq!(
        SqliteStore::check(&odd).unwrap(),
        store::StoreStatus::Current
    );
}

/// Issue 16 item 4: a store write-locked by another process opens (its
/// schema is read without the write lock), and `check` reads it.
#[test]
fn sqlite_store_write_locked_by_another_process_opens_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let options = store::SqliteOptions {
        busy_timeout: Duration::from_millis(50),
        ..store::SqliteOptions::default()
    };
    let mut store = SqliteStore::open_with(&path, &options).unwrap();
    assert_eq!(
        SqliteStore::check(&path).unwrap(),
        store::StoreStatus::Current
    );
    // Writing waits for the lock: a transient error.
    let error = store
        .insert(&[sparse_record(1, "example.com")])
        .unwrap_err();
    assert!(error.transient, "{error}");
    locker.execute_batch("COMMIT").unwrap();
    store.insert(&[sparse_record(1, "example.com")]).unwrap();
}

#[test]
fn sqlite_store_in_a_missing_directory_is_a_clear_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("reports.sqlite");
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(!error.transient);
    assert!(
        error.message.contains(&path.display().to_string()),
        "{error}"
    );
    assert!(error.message.contains("does not exist"), "{error}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let error = SqliteStore::open(&file.join("reports.sqlite")).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("is not a directory"), "{error}");
}

#[test]
fn sqlite_store_in_a_read_only_directory_is_a_clear_permanent_error() {
    use std::os::unix::fs::PermissionsExt;
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    if uid.trim_ascii() == b"0" {
        println!("skipped: root can write in any directory");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let read_only =
        |mode| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    let path = dir.path().join("reports.sqlite");
    read_only(0o500);
    let error = SqliteStore::open(&path).unwrap_err();
    read_only(0o700);
    assert!(!error.transient, "{error}");
    assert!(
        error.message.contains(&path.display().to_string()),
        "{error}"
    );
    assert!(error.message.contains("writable"), "{error}");
}

#[test]
fn sqlite_store_refuses_a_file_that_is_not_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    let error = SqliteStore::open(&text).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("notes.txt"), "{error}");

    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE mail (id INTEGER)")
        .unwrap();
    let error = SqliteStore::open(&foreign).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(
        error.message.contains("not a dmarc-report database"),
        "{error}"
    );
}

#[test]
fn sqlite_store_is_in_wal_mode_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    SqliteStore::open(&path)
        .unwrap()
        .insert(&[full_record(1, "example.com")])
        .unwrap();
    let journal: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.records("example.com", 0, 10).unwrap().len(), 1);
}

// --- PostgreSQL only --------------------------------------------------------

#[test]
fn postgres_store_that_cannot_reach_its_server_is_a_transient_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgresql://dmarc:secret@127.0.0.1:{port}/reports?connect_timeout=5");
    let error = PostgresStore::connect(&url).unwrap_err();
    assert!(error.transient, "{error}");
    assert!(
        error.message.contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(!error.message.contains("secret"), "{error}");

    // Not connected yet: the first call fails the same way.
    let mut store = PostgresStore::new(&url).unwrap();
    assert!(store.policy_domains(0, 1).unwrap_err().transient);

    let error = PostgresStore::new("postgresql://[bad").unwrap_err();
    assert!(!error.transient, "{error}");
}

#[test]
fn postgres_store_reconnects_after_its_connection_is_killed() {
    let Some(backend) = pg::database() else {
        return;
    };
    let mut store = backend.open();
    store.insert(&[sparse_record(1, "example.com")]).unwrap();
    backend.terminate_connections();

    // The call that meets the dead connection may fail, transiently; the
    // next one reconnects.
    if let Err(error) = store.insert(&[sparse_record(2, "example.com")]) {
        assert!(error.transient, "{error}");
        store.insert(&[sparse_record(2, "example.com")]).unwrap();
    }
    assert_eq!(times(&store.records("example.com", 0, 10).unwrap()), [1, 2]);
}

/// Issue 16 item 8: a database whose encoding cannot hold every value
/// would make one batch fail for ever; it is refused at once.
#[test]
fn postgres_database_not_in_utf8_is_refused_at_once() {
    let Some(backend) = pg::database() else {
        return;
    };
    backend.execute(
        "CREATE DATABASE latin1_reports ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    let url = backend.url_of("latin1_reports");
    let error = PostgresStore::connect(&url).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("LATIN1"), "{error}");
    assert!(error.message.contains("UTF8"), "{error}");
    assert!(
        !store::check(&StoreLocation::Postgres(url))
            .unwrap_err()
            .transient
    );
}

#[test]
fn postgres_store_refused_by_the_server_is_a_permanent_error() {
    let Some(backend) = pg::database() else {
        return;
    };
    let url = backend.url_of("no_such_database");
    let error = PostgresStore::connect(&url).unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("no_such_database"), "{error}");
}

/// The PostgreSQL server of the test binary.
mod pg {
    use super::Backend;
    use dmarc_report::store::StoreLocation;
    use std::{
        path::{Path, PathBuf},
        process::{ChildStdin, Command, Stdio},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Mutex, OnceLock,
        },
    };

    pub(super) struct Database {
        port: u16,
        name: String,
    }

    impl Database {
        pub(super) fn url_of(&self, database: &str) -> String {
            format!(
                "host=127.0.0.1 port={} user=postgres dbname={database}",
                self.port
            )
        }

        fn admin(&self) -> postgres::Client {
            postgres::Client::connect(&self.url_of(&self.name), postgres::NoTls).unwrap()
        }

        /// Kills every other session on this database, as a server restart
        /// or a network cut would.
        pub(super) fn terminate_connections(&self) {
            let terminated = self
                .admin()
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .unwrap();
            assert!(!terminated.is_empty());
        }
    }

    impl Backend for Database {
        fn location(&self) -> StoreLocation {
            StoreLocation::Postgres(format!(
                "postgresql://postgres@127.0.0.1:{}/{}",
                self.port, self.name
            ))
        }

        fn set_schema_version(&self, version: i64) {
            self.admin()
                .execute("UPDATE dmarc_schema SET version = $1", &[&version])
                .unwrap();
        }

        fn execute(&self, statements: &str) {
            self.admin().batch_execute(statements).unwrap();
        }

        fn count(&self, query: &str) -> i64 {
            self.admin().query_one(query, &[]).unwrap().get(0)
        }

        fn types(&self) -> (&'static str, &'static str, &'static str, &'static str) {
            ("BIGSERIAL PRIMARY KEY", "BIGINT", "BOOLEAN", "BYTEA")
        }
    }

    struct Server {
        port: u16,
        /// The watchdog's stdin: when this process ends, however it ends,
        /// the pipe closes and the watchdog stops the server.
        _watchdog: Mutex<ChildStdin>,
    }

    enum Unavailable {
        /// No server installed: skip unless required.
        Missing(String),
        /// Installed but it would not start: always a failure.
        Broken(String),
    }

    static SERVER: OnceLock<Result<Server, Unavailable>> = OnceLock::new();
    static DATABASES: AtomicUsize = AtomicUsize::new(0);

    /// A fresh database on the shared server, or `None` (with a "skipped"
    /// line) when PostgreSQL is not installed and not required.
    pub(super) fn database() -> Option<Database> {
        let mode = std::env::var("DMARC_REPORT_POSTGRES").unwrap_or_default();
        if mode == "skip" {
            println!("skipped: PostgreSQL tests (DMARC_REPORT_POSTGRES=skip)");
            return None;
        }
        let server = match SERVER.get_or_init(start) {
            Ok(server) => server,
            Err(Unavailable::Missing(reason)) if mode != "require" => {
                println!("skipped: PostgreSQL tests ({reason}; set DMARC_REPORT_POSTGRES=require to fail instead)");
                return None;
            }
            Err(Unavailable::Missing(reason) | Unavailable::Broken(reason)) => {
                panic!("PostgreSQL tests cannot run: {reason}")
            }
        };
        let name = format!("dmarc_test_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
        let database = Database {
            port: server.port,
            name: "postgres".to_string(),
        };
        database
            .admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(Database {
            port: server.port,
            name,
        })
    }

    fn binaries() -> Result<PathBuf, Unavailable> {
        let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if let Some(dir) = std::env::var_os("DMARC_REPORT_PG_BIN") {
            let dir = PathBuf::from(dir);
            return if has_server(&dir) {
                Ok(dir)
            } else {
                Err(Unavailable::Broken(format!(
                    "no initdb and pg_ctl in DMARC_REPORT_PG_BIN={}",
                    dir.display()
                )))
            };
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let dir = entry.path().join("bin");
                has_server(&dir).then_some((version, dir))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
            Unavailable::Missing("no PostgreSQL server in /usr/lib/postgresql/*/bin".to_string())
        })
    }

    fn output(command: &mut Command) -> Result<String, String> {
        let output = command
            .output()
            .map_err(|error| format!("cannot run {command:?}: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "{command:?} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// The command `program`, as the `postgres` user when we are root
    /// (the server refuses to run as root).
    fn as_server_user(root: bool, program: &Path) -> Command {
        if root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn start() -> Result<Server, Unavailable> {
        let bin = binaries()?;
        start_in(&bin).map_err(Unavailable::Broken)
    }

    fn start_in(bin: &Path) -> Result<Server, String> {
        let root = output(Command::new("id").arg("-u"))? == "0";
        // Under /tmp, which the postgres user can traverse.
        let base = tempfile::Builder::new()
            .prefix("dmarc-report-pg-")
            .tempdir_in("/tmp")
            .map_err(|error| format!("cannot create a directory in /tmp: {error}"))?
            .keep();
        let data = base.join("data");
        let pg_ctl = bin.join("pg_ctl");

        // The watchdog first, so that the directory goes even if the start
        // fails half-way. Its own process group: a ^C of the tests does not
        // kill it before it has cleaned up.
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(if root {
                r#"cat >/dev/null; runuser -u postgres -- "$0" -D "$1" stop -m immediate; rm -rf "$2""#
            } else {
                r#"cat >/dev/null; "$0" -D "$1" stop -m immediate; rm -rf "$2""#
            })
            .arg(&pg_ctl)
            .arg(&data)
            .arg(&base)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        let mut watchdog = watchdog
            .spawn()
            .map_err(|error| format!("cannot start the watchdog: {error}"))?;
        let Some(watchdog_stdin) = watchdog.stdin.take() else {
            return Err("watchdog without stdin".to_string());
        };

        if root {
            let uid: u32 = output(Command::new("id").args(["-u", "postgres"]))?
                .parse()
                .map_err(|_| "no postgres user".to_string())?;
            let gid: u32 = output(Command::new("id").args(["-g", "postgres"]))?
                .parse()
                .map_err(|_| "no postgres group".to_string())?;
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .map_err(|error| format!("cannot chown {}: {error}", base.display()))?;
        }
        output(
            as_server_user(root, &bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )?;

        let mut last_error = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|error| error.to_string())?
                .port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=200",
                base.display()
            );
            let started = output(
                as_server_user(root, &pg_ctl)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(base.join("server.log"))
                    .args(["-w", "-t", "60", "-o", &options, "start"])
                    .stdout(Stdio::piped()),
            );
            match started {
                Ok(_) => {
                    return Ok(Server {
                        port,
                        _watchdog: Mutex::new(watchdog_stdin),
                    })
                }
                Err(error) => {
                    let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
                    last_error = format!("{error}\nserver log:\n{log}");
                }
            }
        }
        Err(last_error)
    }
}

// --- The recorder -----------------------------------------------------------

/// The records of one message.
fn message_records(time: i64) -> Vec<EvaluationRecord> {
    vec![
        sparse_record(time, "example.com"),
        sparse_record(time, "example.net"),
    ]
}

fn count_records(path: &Path) -> usize {
    let mut store = SqliteStore::open(path).unwrap();
    ["example.com", "example.net"]
        .iter()
        .map(|domain| store.records(domain, i64::MIN, i64::MAX).unwrap().len())
        .sum()
}

/// A switch that stays on once turned on.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

/// A store whose inserts wait for a gate, telling when they start, and
/// remember the size of each batch.
struct GatedStore {
    inner: SqliteStore,
    gate: Gate,
    entered: mpsc::Sender<usize>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl GatedStore {
    fn new(
        path: &Path,
    ) -> (
        GatedStore,
        Gate,
        mpsc::Receiver<usize>,
        Arc<Mutex<Vec<usize>>>,
    ) {
        let gate = Gate::default();
        let (entered, entries) = mpsc::channel();
        let batches = Arc::default();
        let store = GatedStore {
            inner: SqliteStore::open(path).unwrap(),
            gate: gate.clone(),
            entered,
            batches: Arc::clone(&batches),
        };
        (store, gate, entries, batches)
    }
}

/// A store failing its first inserts.
struct FlakyStore {
    inner: SqliteStore,
    failures: usize,
    transient: bool,
}

/// Implements `Store` for a wrapper by delegating everything but `insert`.
macro_rules! delegate_store {
    ($wrapper:ty, |$this:ident, $records:ident| $insert:block) => {
        delegate_store!($wrapper, |$this, $records| $insert, |this, message| {
            this.inner.queue_message(message)
        });
    };
    ($wrapper:ty, |$this:ident, $records:ident| $insert:block, |$qthis:ident, $message:ident| $queue:block) => {
        impl Store for $wrapper {
            fn insert(&mut self, $records: &[EvaluationRecord]) -> Result<(), StoreError> {
                let $this = self;
                $insert
            }
            fn policy_domains(&mut self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
                self.inner.policy_domains(begin, end)
            }
            fn records(
                &mut self,
                domain: &str,
                begin: i64,
                end: i64,
            ) -> Result<Vec<EvaluationRecord>, StoreError> {
                self.inner.records(domain, begin, end)
            }
            fn report_exists(
                &mut self,
                domain: &str,
                begin: i64,
                end: i64,
            ) -> Result<bool, StoreError> {
                self.inner.report_exists(domain, begin, end)
            }
            fn add_report_with(
                &mut self,
                report: &ReportEntry,
                messages: &mut dyn Iterator<Item = OutgoingMessage>,
            ) -> Result<bool, StoreError> {
                self.inner.add_report_with(report, messages)
            }
            fn queue_message(&mut self, $message: &OutgoingMessage) -> Result<(), StoreError> {
                let $qthis = self;
                $queue
            }
            fn report_rows(
                &mut self,
                domain: &str,
                begin: i64,
                end: i64,
                visit: &mut dyn FnMut(dmarc_report::aggregate::Row, u64),
            ) -> Result<(), StoreError> {
                self.inner.report_rows(domain, begin, end, visit)
            }
            fn latest_policy(
                &mut self,
                domain: &str,
                begin: i64,
                end: i64,
            ) -> Result<Option<PublishedPolicy>, StoreError> {
                self.inner.latest_policy(domain, begin, end)
            }
            fn pending_messages(
                &mut self,
                after: i64,
                limit: usize,
            ) -> Result<Vec<dmarc_report::store::QueuedMessage>, StoreError> {
                self.inner.pending_messages(after, limit)
            }
            fn payload(&mut self, id: i64) -> Result<Vec<u8>, StoreError> {
                self.inner.payload(id)
            }
            fn sent_since_domain(
                &mut self,
                kind: MessageKind,
                domain: &str,
                since: i64,
            ) -> Result<u64, StoreError> {
                self.inner.sent_since_domain(kind, domain, since)
            }
            fn claim(&mut self, id: i64, now: i64, until: i64) -> Result<bool, StoreError> {
                self.inner.claim(id, now, until)
            }
            fn mark_sent(&mut self, id: i64, time: i64) -> Result<(), StoreError> {
                self.inner.mark_sent(id, time)
            }
            fn mark_failed(
                &mut self,
                id: i64,
                error: &str,
                give_up: bool,
            ) -> Result<(), StoreError> {
                self.inner.mark_failed(id, error, give_up)
            }
            fn sent_since(
                &mut self,
                kind: MessageKind,
                to: &str,
                since: i64,
            ) -> Result<u64, StoreError> {
                self.inner.sent_since(kind, to, since)
            }
            fn purge(&mut self, before: i64) -> Result<u64, StoreError> {
                self.inner.purge(before)
            }
        }
    };
}

delegate_store!(GatedStore, |this, records| {
    // The test may have stopped listening.
    let _ = this.entered.send(records.len());
    this.gate.wait();
    this.batches.lock().unwrap().push(records.len());
    this.inner.insert(records)
});

delegate_store!(FlakyStore, |this, records| {
    if this.failures > 0 {
        this.failures -= 1;
        return Err(StoreError {
            message: "database restarting".to_string(),
            transient: this.transient,
        });
    }
    this.inner.insert(records)
});

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn recorder_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Recorder>();
}

#[test]
fn recorder_group_commits_what_many_threads_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let recorder = Recorder::start(Box::new(SqliteStore::open(&path).unwrap()), 10_000).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let recorder = &recorder;
            scope.spawn(move || {
                for message in 0..250 {
                    assert!(recorder.record(message_records(thread * 1000 + message)));
                }
            });
        }
    });
    assert!(recorder.record(Vec::new()));
    assert!(recorder.flush(Duration::MAX));

    let stats = recorder.stats();
    assert_eq!(
        stats,
        RecorderStats {
            queued: 2000,
            committed: 2000,
            dropped: 0,
            abandoned: 0,
            failed_attempts: 0,
        }
    );
    assert_eq!(count_records(&path), 2000);
    assert_eq!(recorder.shutdown(WAIT), stats);
}

#[test]
fn recorder_commits_what_queued_during_a_commit_as_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let (store, gate, entered, batches) = GatedStore::new(&path);
    let recorder = Recorder::start(Box::new(store), 100).unwrap();

    assert!(recorder.record(message_records(1)));
    assert_eq!(entered.recv().unwrap(), 2, "the first message alone");
    for time in 2..=11 {
        assert!(recorder.record(message_records(time)));
    }
    gate.open();
    assert!(recorder.flush(WAIT));

    assert_eq!(*batches.lock().unwrap(), [2, 20]);
    assert_eq!(count_records(&path), 22);
}

#[test]
fn recorder_drops_and_counts_when_its_queue_is_full_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let (store, gate, entered, _) = GatedStore::new(&path);
    let recorder = Recorder::start(Box::new(store), 4).unwrap();

    assert!(recorder.record(message_records(1)));
    entered.recv().unwrap();
    // The thread is held inside the store: four messages fill the queue.
    for time in 2..=5 {
        assert!(recorder.record(message_records(time)));
    }
    let started = Instant::now();
    assert!(!recorder.record(message_records(6)));
    assert!(!recorder.record(vec![sparse_record(7, "example.com")]));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(recorder.stats().dropped, 3);

    gate.open();
    assert!(recorder.flush(WAIT));
    let stats = recorder.shutdown(WAIT);
    assert_eq!((stats.queued, stats.committed, stats.dropped), (10, 10, 3));
    assert_eq!(count_records(&path), 10);
}

#[test]
fn recorder_shutdown_commits_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let (store, gate, entered, _) = GatedStore::new(&path);
    let recorder = Recorder::start(Box::new(store), 1000).unwrap();
    assert!(recorder.record(message_records(0)));
    entered.recv().unwrap();
    for time in 1..500 {
        assert!(recorder.record(message_records(time)));
    }
    // Opened while shutdown waits: what is still queued must go in.
    let opener = std::thread::spawn(move || gate.open());
    let stats = recorder.shutdown(WAIT);
    opener.join().unwrap();

    assert_eq!(
        (stats.queued, stats.committed, stats.abandoned),
        (1000, 1000, 0)
    );
    assert_eq!(count_records(&path), 1000);
}

#[test]
fn recorder_retries_a_failing_store_and_loses_nothing() {
    for transient in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.sqlite");
        let store = FlakyStore {
            inner: SqliteStore::open(&path).unwrap(),
            failures: 3,
            transient,
        };
        let recorder = Recorder::start(Box::new(store), 100).unwrap();
        for time in 0..20 {
            assert!(recorder.record(message_records(time)));
        }
        assert!(recorder.flush(WAIT));
        let stats = recorder.shutdown(WAIT);
        assert_eq!(stats.failed_attempts, 3);
        assert_eq!((stats.queued, stats.committed, stats.dropped), (40, 40, 0));
        assert_eq!(count_records(&path), 40);
    }
}

#[test]
fn recorder_shutdown_gives_up_on_a_store_that_keeps_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let store = FlakyStore {
        inner: SqliteStore::open(&path).unwrap(),
        failures: usize::MAX,
        transient: true,
    };
    let recorder = Recorder::start(Box::new(store), 100).unwrap();
    for time in 0..3 {
        assert!(recorder.record(message_records(time)));
    }
    assert!(!recorder.flush(Duration::from_millis(50)));

    let started = Instant::now();
    let stats = recorder.shutdown(Duration::from_millis(500));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.committed, 0);
    assert_eq!(stats.abandoned, stats.queued);
    assert!(stats.failed_attempts >= 1);
    assert_eq!(count_records(&path), 0);
}

/// Set in the child process of `recorded_rows_survive_the_process_being_killed`.
const CHILD_DATABASE: &str = "DMARC_REPORT_TEST_CHILD_DATABASE";
const CHILD_MESSAGES: i64 = 300;

/// The child: records, flushes, says so, and waits to be killed. A no-op
/// in a normal run.
#[test]
fn durability_child() {
    let Some(path) = std::env::var_os(CHILD_DATABASE) else {
        return;
    };
    let recorder =
        Recorder::start(Box::new(SqliteStore::open(Path::new(&path)).unwrap()), 1000).unwrap();
    for time in 0..CHILD_MESSAGES {
        assert!(recorder.record(message_records(time)));
    }
    assert!(recorder.flush(WAIT));
    println!("committed {}", recorder.stats().committed);
    loop {
        std::thread::park();
    }
}

#[test]
fn recorded_rows_survive_the_process_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATABASE, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // libtest writes "test durability_child ... " before the child's own
    // output, on the same line.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (said, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some((_, count)) = line.split_once("committed ") {
                let _ = said.send(count.trim().to_string());
            }
        }
    });
    let committed = heard.recv_timeout(WAIT);
    if committed.is_err() {
        child.kill().unwrap();
    }
    assert_eq!(committed.unwrap(), (CHILD_MESSAGES * 2).to_string());

    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    assert_eq!(
        count_records(&path),
        usize::try_from(CHILD_MESSAGES * 2).unwrap()
    );
}

// --- The failure-report outbox ---------------------------------------------

/// A store whose queue_message waits for a gate after telling it started.
struct GatedQueue {
    inner: SqliteStore,
    gate: Gate,
    entered: mpsc::Sender<()>,
}

delegate_store!(
    GatedQueue,
    |this, records| { this.inner.insert(records) },
    |this, message| {
        let _ = this.entered.send(());
        this.gate.wait();
        this.inner.queue_message(message)
    }
);

fn failure_job(subject: &str, headers: usize) -> dmarc_report::failure::FailureJob {
    use dmarc_report::failure::{AuthFailure, FailureConfig, FailureJob};
    let mut record = full_record(1_000, "example.com");
    if let Some(policy) = record.policy.as_mut() {
        policy.psd = false;
    }
    let mut text = format!("From: boss@example.com\r\nSubject: {subject}\r\n");
    for n in 0..headers {
        text.push_str(&format!("X-Filler: u{n}@example.net\r\n"));
    }
    text.push_str("\r\n");
    FailureJob {
        record,
        kinds: vec![AuthFailure::Dmarc],
        destinations: vec![ReportDestination {
            uri: "mailto:ruf@example.com".to_string(),
            max_size: None,
        }],
        headers: text.into_bytes(),
        body: None,
        mail_from: Some("list-bounces+john.smith=mx.test@lists.example".to_string()),
        envelope_id: Some("4XQID".to_string()),
        authentication_results: None,
        spf_dns: None,
        config: FailureConfig::new("mx.example.net"),
        sender: "dmarc@mx.example.net".to_string(),
        message_id_domain: "mx.example.net".to_string(),
        time: 1_000,
    }
}

/// Issue 16 item 1: queueing a failure report builds nothing; the
/// outbox's thread does, one job after the other.
#[test]
fn the_outbox_builds_off_the_callers_path() {
    use dmarc_report::{
        counters::ReportCounters,
        store::outbox::{Outbox, OutboxOptions},
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let gate = Gate::default();
    let (entered, entries) = mpsc::channel();
    let mut store = Some(Box::new(GatedQueue {
        inner: SqliteStore::open(&path).unwrap(),
        gate: gate.clone(),
        entered,
    }) as Box<dyn Store>);
    let counters = Arc::new(ReportCounters::default());
    let outbox = Outbox::start(
        Box::new(move || {
            store.take().ok_or_else(|| StoreError {
                message: "opened twice".to_string(),
                transient: false,
            })
        }),
        OutboxOptions::default(),
        Arc::clone(&counters),
    )
    .unwrap();
    assert!(outbox.queue(failure_job("first", 0)));
    // The thread built the first report and is held in the store.
    entries.recv().unwrap();
    assert_eq!(counters.snapshot().failure_reports_built, 1);
    // A large hostile job: queueing it costs a move, nothing is built.
    assert!(outbox.queue(failure_job("second", 20_000)));
    let snapshot = counters.snapshot();
    assert_eq!(
        (snapshot.failure_jobs_queued, snapshot.failure_reports_built),
        (2, 1)
    );
    gate.open();
    assert!(outbox.flush(WAIT));
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.failure_reports_built, 2);
    assert_eq!(snapshot.failure_reports_stored, 2);
    assert_eq!(
        snapshot.failure_reports_truncated, 1,
        "20,000 header fields do not fit 64 KiB"
    );
    let mut store = SqliteStore::open(&path).unwrap();
    let pending = store.pending_messages(0, 10).unwrap();
    assert_eq!(pending.len(), 2);
    for queued in &pending {
        let mail = store.payload(queued.id).unwrap();
        assert!(mail.len() <= 64 * 1024, "{}", mail.len());
        let text = String::from_utf8_lossy(&mail);
        assert!(
            text.contains("Original-Mail-From: <redacted1@lists.example>"),
            "{text}"
        );
        assert!(!text.contains("john.smith"), "{text}");
    }
}

/// The outbox is bounded in jobs and in bytes; over a bound a job is
/// dropped and counted, the caller never waits.
#[test]
fn the_outbox_is_bounded_in_jobs_and_bytes() {
    use dmarc_report::{
        counters::ReportCounters,
        store::outbox::{Outbox, OutboxOptions},
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let gate = Gate::default();
    let (entered, entries) = mpsc::channel();
    let mut store = Some(Box::new(GatedQueue {
        inner: SqliteStore::open(&path).unwrap(),
        gate: gate.clone(),
        entered,
    }) as Box<dyn Store>);
    let counters = Arc::new(ReportCounters::default());
    let job_size = failure_job("x", 10).memory_size();
    let outbox = Outbox::start(
        Box::new(move || {
            store.take().ok_or_else(|| StoreError {
                message: "twice".into(),
                transient: false,
            })
        }),
        OutboxOptions {
            capacity: 100,
            max_bytes: job_size * 3,
        },
        Arc::clone(&counters),
    )
    .unwrap();
    assert!(outbox.queue(failure_job("x", 10)));
    entries.recv().unwrap();
    // The thread holds the first; three fit in the bytes, the rest go.
    let accepted = (0..10)
        .filter(|_| outbox.queue(failure_job("x", 10)))
        .count();
    assert_eq!(accepted, 3);
    assert_eq!(counters.snapshot().failure_jobs_dropped, 7);
    gate.open();
    assert!(outbox.flush(WAIT));
    assert_eq!(counters.snapshot().failure_reports_stored, 4);
}

/// The recorder is bounded in bytes as well as in calls.
#[test]
fn recorder_is_bounded_in_bytes() {
    use dmarc_report::{counters::ReportCounters, store::recorder::RecorderOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let (store, gate, entered, _) = GatedStore::new(&path);
    let size = message_records(1)
        .iter()
        .map(EvaluationRecord::memory_size)
        .sum::<usize>();
    let mut store = Some(Box::new(store) as Box<dyn Store>);
    let counters = Arc::new(ReportCounters::default());
    let recorder = Recorder::start_with(
        Box::new(move || {
            store.take().ok_or_else(|| StoreError {
                message: "twice".into(),
                transient: false,
            })
        }),
        RecorderOptions {
            capacity: 1_000,
            max_bytes: size * 5,
        },
        Arc::clone(&counters),
    )
    .unwrap();
    assert!(recorder.record(message_records(0)));
    entered.recv().unwrap();
    let accepted = (1..=20)
        .filter(|&t| recorder.record(message_records(t)))
        .count();
    assert_eq!(accepted, 5);
    assert_eq!(recorder.stats().dropped, 30);
    assert!(counters.snapshot().queue_bytes <= u64::try_from(size * 5).unwrap());
    gate.open();
    assert!(recorder.flush(WAIT));
    assert_eq!(counters.snapshot().queue_bytes, 0);
    assert_eq!(recorder.shutdown(WAIT).committed, 12);
}

/// Issue 16 item 4 / issue 14: a store that cannot be opened at start
/// delays nothing: records wait (bounded) while the thread retries, and
/// go in once it opens.
#[test]
fn recorder_opens_its_store_late_and_loses_nothing_queued() {
    use dmarc_report::{counters::ReportCounters, store::recorder::RecorderOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.sqlite");
    let failures_left = Arc::new(Mutex::new(3));
    let opener_path = path.clone();
    let left = Arc::clone(&failures_left);
    let counters = Arc::new(ReportCounters::default());
    let recorder = Recorder::start_with(
        Box::new(move || {
            let mut left = left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StoreError {
                    message: "database is locked".into(),
                    transient: true,
                });
            }
            Ok(Box::new(SqliteStore::open(&opener_path)?) as Box<dyn Store>)
        }),
        RecorderOptions::default(),
        Arc::clone(&counters),
    )
    .unwrap();
    let started = Instant::now();
    for time in 0..10 {
        assert!(recorder.record(message_records(time)));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "record never waits"
    );
    assert!(recorder.flush(WAIT));
    assert_eq!(counters.snapshot().store_open_failures, 3);
    assert_eq!(count_records(&path), 20);
}
