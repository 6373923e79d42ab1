//! Issue 16: reporting and the milter under attack, through the milter
//! (in-process, real milter protocol) with test-dns serving the hostile
//! records of a sender who controls the DNS of its own domain. Every test
//! asserts bounds (counts, bytes, "the end of a message builds nothing"),
//! never wall-clock time.

mod common;

use common::*;
use dmarc_report::{
    counters::ReportCountersSnapshot,
    model::{ActionDisposition, DkimWord, DmarcWord, OverrideWord},
    store::{SqliteStore, Store},
};
use indymilter_test::Status;
use std::path::{Path, PathBuf};
use test_dns::{Fault, TestDns};

/// `evil.example` publishes a record with 1,000 `ruf` and 1,000 `rua`
/// addresses (a 45 KB TXT record), `fo=1`, `p=none`; SPF fails for every
/// sender. `stuck.example`'s DMARC record never answers when a test says
/// so.
fn hostile_zone() -> String {
    let mut strings = vec!["\"v=DMARC1; p=none; fo=1; ruf=\"".to_string()];
    for chunk in (0..1000).collect::<Vec<_>>().chunks(8) {
        let part: Vec<String> = chunk
            .iter()
            .map(|n| format!("mailto:f{n}@evil.example,"))
            .collect();
        strings.push(format!("\"{}\"", part.concat()));
    }
    strings.push("\"mailto:last@evil.example; rua=\"".to_string());
    for chunk in (0..1000).collect::<Vec<_>>().chunks(8) {
        let part: Vec<String> = chunk
            .iter()
            .map(|n| format!("mailto:a{n}@evil.example,"))
            .collect();
        strings.push(format!("\"{}\"", part.concat()));
    }
    strings.push("\"mailto:end@evil.example\"".to_string());
    format!(
        "{}
evil.example.        IN SOA ns.evil.example. hostmaster.evil.example. 1 3600 900 604800 300
evil.example.        IN TXT \"v=spf1 -all\"
_dmarc.evil.example. IN TXT ( {} )
stuck.example.       IN SOA ns.stuck.example. hostmaster.stuck.example. 1 3600 900 604800 300
_dmarc.stuck.example. IN TXT \"v=DMARC1; p=reject\"
",
        demo_zone(),
        strings.join("\n    ")
    )
}

/// The report settings of a test, on an SQLite store in `dir`.
fn reporting(dir: &Path, extra: &str) -> String {
    format!(
        "report_store = \"{}\"\nreport_org_name = \"Test Receiver\"\nreport_email = \"dmarc-noreply@mx.test.example\"\nreport_transport = \"dir:{}\"\nfailure_reports = true\n{extra}\n",
        dir.join("reports.db").display(),
        dir.join("out").display()
    )
}

async fn hostile_milter(store_dir: &Path, extra: &str) -> Milter {
    let dns = TestDns::start(&hostile_zone()).await.expect("test DNS");
    Milter::start_with_dns(dns, &reporting(store_dir, extra)).await
}

/// A failing message From evil.example, with `headers` extra header fields.
fn evil_mail(extra_headers: Vec<(String, String)>) -> Mail {
    let mut mail = Mail::parse(
        b"From: boss@evil.example\r\nTo: someone@example.net\r\nSubject: urgent\r\nMessage-ID: <1@evil.example>\r\n\r\nThe secret body\r\n",
    );
    mail.headers.extend(extra_headers);
    mail
}

async fn send_evil(milter: &Milter, mail: &Mail) -> Status {
    let mut conn = milter.connect("203.0.113.66", "mta.evil.example").await;
    let (_, status) = send(
        &mut conn,
        "list-bounces+john.smith=mx.test@evil.example",
        None,
        mail,
    )
    .await;
    status
}

fn report_counters(milter: &Milter) -> ReportCountersSnapshot {
    milter.counters.report.snapshot()
}

/// Holds SQLite's write lock on the store, as another process would.
fn lock(db: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(db).expect("open");
    connection.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    connection
}

/// Items 1, 2, 3 and 4: with the store write-locked from before the
/// milter starts, a hostile record of 1,000 `ruf` makes five reports per
/// message, not a thousand; the end of the message builds nothing (the
/// outbox's thread, held by the locked store after building the first
/// message's reports, has not built the second's when its end of message
/// is answered, though that one carries 1.5 MB of distinct addresses);
/// every report is at most 64 KiB; the record keeps five `ruf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_ruf_and_megabytes_of_addresses_cost_nothing_at_eom() {
    let dir = TempDir::new("attack-ruf");
    let db = dir.path().join("reports.db");
    drop(SqliteStore::open(&db).expect("create the store"));
    let locker = lock(&db);
    let milter = hostile_milter(dir.path(), "").await;

    assert_eq!(
        send_evil(&milter, &evil_mail(Vec::new())).await,
        Status::Accept
    );
    wait_until("the first reports built", async || {
        report_counters(&milter).failure_reports_built == 1
    })
    .await;

    // 30 fields of 50 KB: 60,000 distinct local parts.
    let fat: Vec<(String, String)> = (0..30)
        .map(|field| {
            let value: String = (0..2_000)
                .map(|n| format!(" u{field}x{n}@example.net"))
                .collect();
            ("X-Addresses".to_string(), value)
        })
        .collect();
    assert_eq!(send_evil(&milter, &evil_mail(fat)).await, Status::Accept);
    let now = report_counters(&milter);
    assert_eq!(now.failure_jobs_queued, 2);
    assert_eq!(
        now.failure_reports_built, 1,
        "nothing built at the end of the message"
    );
    // 1,001 ruf and 1,001 rua: 996 and 991 left out, per message.
    assert_eq!(now.destinations_dropped, 2 * (996 + 991), "{now:?}");

    drop(locker);
    wait_until("the reports stored", async || {
        report_counters(&milter).failure_reports_stored == 10
    })
    .await;
    let after = report_counters(&milter);
    assert_eq!(after.failure_reports_built, 2);
    assert_eq!(after.failure_reports_truncated, 1);
    milter.stop().await.expect("clean stop");

    let mut store = SqliteStore::open(&db).expect("store");
    let records = store.records("evil.example", 0, i64::MAX).expect("records");
    assert_eq!(records.len(), 2);
    let policy = records[0].policy.as_ref().expect("policy");
    assert_eq!(policy.ruf.len(), 5);
    assert_eq!(policy.rua.len(), 10);
    let pending = store.pending_messages(0, 100).expect("pending");
    assert_eq!(pending.len(), 10, "five destinations per message");
    for queued in &pending {
        let mail = store.payload(queued.id).expect("payload");
        assert!(mail.len() <= 64 * 1024, "{}", mail.len());
        let text = String::from_utf8_lossy(&mail);
        assert!(!text.contains("john.smith"), "Original-Mail-From redacted");
        assert!(!text.contains("The secret body"));
    }
}

/// Items 1, 2 and 11: every limit is checked before any copy: over the
/// per-recipient, per-domain or overall hourly limit, or for an excluded
/// domain, no job is even made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_exclusions_refuse_before_any_work() {
    type Refused = fn(&ReportCountersSnapshot) -> u64;
    let cases: &[(&str, Refused)] = &[
        ("failure_reports_per_hour = 0", |c| {
            c.failure_reports_limited_recipient
        }),
        ("failure_reports_per_domain_per_hour = 0", |c| {
            c.failure_reports_limited_domain
        }),
        ("failure_reports_max_per_hour = 0", |c| {
            c.failure_reports_limited_total
        }),
        ("report_exclude_domains = [\".example\"]", |c| {
            c.failure_reports_excluded
        }),
        // The README: excluded domains never get reports; an exact one too.
        ("report_exclude_domains = [\"evil.example\"]", |c| {
            c.failure_reports_excluded
        }),
    ];
    for (setting, refused) in cases {
        let dir = TempDir::new("attack-limits");
        let milter = hostile_milter(dir.path(), setting).await;
        for _ in 0..3 {
            assert_eq!(
                send_evil(&milter, &evil_mail(Vec::new())).await,
                Status::Accept
            );
        }
        let counters = report_counters(&milter);
        assert_eq!(counters.failure_jobs_queued, 0, "{setting}");
        assert!(refused(&counters) >= 3, "{setting}: {counters:?}");
        milter.stop().await.expect("clean stop");
    }
}

/// Item 9: an oversized signed message is accepted with `dmarc=none
/// reason="message too large"`, and that is what is recorded: not the
/// reject the verifier alone would have asked for. Dry run likewise
/// records what was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_recorded_is_what_was_done() {
    let dir = TempDir::new("attack-applied");
    let milter = Milter::start(&reporting(dir.path(), "max_message_size = \"64k\"")).await;
    let mut mail = Mail::example("newsletter.eml");
    mail.body.extend(std::iter::repeat_n(b'x', 110 * 1024));
    mail.body.extend_from_slice(b"\r\n");
    // Sent from a client outside example.com's SPF: only DKIM could pass.
    let mut conn = milter
        .connect("198.51.100.200", "unknown.example.net")
        .await;
    let (_, status) = send(&mut conn, "bounce-1@bounce.example.net", None, &mail).await;
    assert_eq!(status, Status::Accept);
    drop(conn);
    milter.stop().await.expect("clean stop");

    let mut store = SqliteStore::open(&dir.path().join("reports.db")).expect("store");
    let records = store.records("example.com", 0, i64::MAX).expect("records");
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.dmarc, DmarcWord::None);
    assert_eq!(record.disposition, ActionDisposition::None);
    assert!(record.dkim.iter().all(|d| d.result == DkimWord::PermError));
    assert!(
        record
            .reasons
            .iter()
            .any(|r| r.kind == OverrideWord::LocalPolicy
                && r.comment.as_deref() == Some("message too large")),
        "{:?}",
        record.reasons
    );

    let dry = TempDir::new("attack-dry");
    let milter = Milter::start(&reporting(dry.path(), "dry_run = true")).await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(status, Status::Accept);
    milter.stop().await.expect("clean stop");
    let mut store = SqliteStore::open(&dry.path().join("reports.db")).expect("store");
    let records = store.records("example.com", 0, i64::MAX).expect("records");
    assert_eq!(records[0].dmarc, DmarcWord::Fail);
    assert_eq!(records[0].disposition, ActionDisposition::None, "delivered");
    assert!(records[0]
        .reasons
        .iter()
        .any(|r| r.comment.as_deref() == Some("dry run")));
}

/// Item 12: `failure_reports = false` (or a lower limit) applies from the
/// next message after a reload; only the restart-only keys wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stops_failure_reports_at_once() {
    let dir = TempDir::new("attack-reload");
    let milter = hostile_milter(dir.path(), "").await;
    assert_eq!(
        send_evil(&milter, &evil_mail(Vec::new())).await,
        Status::Accept
    );
    assert_eq!(report_counters(&milter).failure_jobs_queued, 1);

    let dns = milter.dns.addr();
    std::fs::write(
        &milter.config_path,
        config_text(
            dns,
            &reporting(dir.path(), "").replace("failure_reports = true", "failure_reports = false"),
        ),
    )
    .expect("rewrite");
    milter.reloader.reload().await.expect("reload");
    for _ in 0..3 {
        assert_eq!(
            send_evil(&milter, &evil_mail(Vec::new())).await,
            Status::Accept
        );
    }
    let counters = report_counters(&milter);
    assert_eq!(
        counters.failure_jobs_queued, 1,
        "no failure report after the reload"
    );
    assert_eq!(counters.records_queued, 4, "recording goes on");
    milter.stop().await.expect("clean stop");
}

// --- Log lines ---------------------------------------------------------------

/// Item 14: values from the message or DNS cannot reach the terminal as
/// escape sequences nor pass for fields; a warning an attacker can repeat
/// (destinations left out) is logged once per interval, not once per
/// message. On a current-thread runtime, so that every log line of the
/// milter's tasks is captured.
#[tokio::test]
async fn log_lines_escape_outside_values_and_are_not_repeated() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let dir = TempDir::new("attack-logs");
    let milter = hostile_milter(dir.path(), "").await;
    let dkim = (
        "DKIM-Signature".to_string(),
        " v=1; a=rsa-sha256; d=evil\u{1b}[2J.example disposition=accept; s=x\u{7}y; h=from; bh=AAAA; b=AAAA".to_string(),
    );
    for _ in 0..3 {
        let mut conn = milter.connect("203.0.113.66", "mta.evil.example").await;
        let mail = evil_mail(vec![dkim.clone()]);
        send_until_body(&mut conn, "x@evil.example", None, &mail).await;
        let (_, status) = finish(&mut conn, &mail, "4Q\u{1b}]0;owned\u{7}").await;
        assert_eq!(status, Status::Accept);
    }
    milter.stop().await.expect("clean stop");
    let logs = capture.text();
    assert!(logs.contains("verdict"), "{logs}");
    assert!(
        !logs.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the log: {logs:?}"
    );
    assert!(
        logs.contains("queue_id=\"4Q\\u{1b}]0;owned\\u{7}\""),
        "{logs}"
    );
    assert_eq!(
        logs.matches("destinations left out").count(),
        1,
        "one line for three messages: {logs}"
    );
}

/// Item 15 and issue 14 bug 5: one deadline for the whole shutdown. With a
/// message stuck on DNS past `shutdown_timeout` and the store write-locked,
/// the drain uses the whole budget and the report flush gets what is left
/// (nothing), not a budget of its own.
#[tokio::test]
async fn shutdown_has_one_deadline_for_everything() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let dir = TempDir::new("attack-shutdown");
    let db = dir.path().join("reports.db");
    drop(SqliteStore::open(&db).expect("create the store"));
    let dns = TestDns::start(&hostile_zone()).await.expect("test DNS");
    let mut milter = Milter::start_with_dns(
        dns,
        &format!(
            "{}\ndns_timeout = 5\nshutdown_timeout = 1\n",
            reporting(dir.path(), "")
        ),
    )
    .await;
    let locker = lock(&db);
    // Recorded, not written: the store is locked.
    assert_eq!(
        send_evil(&milter, &evil_mail(Vec::new())).await,
        Status::Accept
    );
    // In flight: its DMARC record never answers.
    milter
        .dns
        .set_fault("_dmarc.stuck.example", None, Fault::Timeout);
    let mut conn = milter.connect("203.0.113.66", "mta.stuck.example").await;
    let stuck = Mail::parse(b"From: a@stuck.example\r\nSubject: x\r\n\r\nx\r\n");
    send_until_body(&mut conn, "a@stuck.example", None, &stuck).await;
    let in_flight = tokio::spawn(async move { finish(&mut conn, &stuck, "4STUCK").await });
    wait_until("the stuck question", async || {
        milter.dns.query_count("_dmarc.stuck.example") > 0
    })
    .await;
    milter.shutdown();
    let stopped = milter.stop().await;
    assert!(stopped.is_ok(), "{stopped:?}");
    in_flight.abort();
    drop(locker);
    let logs = capture.text();
    assert!(
        logs.contains("messages still in flight after shutdown_timeout"),
        "{logs}"
    );
    assert!(
        logs.contains("sessions still busy at the shutdown deadline"),
        "{logs}"
    );
    let flush = logs
        .lines()
        .find(|line| line.contains("report store not flushed by the shutdown deadline"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(flush.contains("remaining_ms=0"), "{flush}");
}

/// Item 4 and issue 14 bug 1: a store that cannot be opened at start
/// (here: a directory that does not exist) does not stop the milter: mail
/// is verified, the failure counted; with `report_store_required` it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_degrades_reporting_not_mail() {
    let dir = TempDir::new("attack-nostore");
    let missing: PathBuf = dir.path().join("no/such/dir");
    let milter = Milter::start(&reporting(&missing, "")).await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    wait_until("the store retried", async || {
        report_counters(&milter).store_open_failures >= 2
    })
    .await;
    milter.stop().await.expect("clean stop");

    let text = config_text(
        "127.0.0.1:53".parse().unwrap(),
        &reporting(&missing, "report_store_required = true"),
    );
    let config = dmarc_milter::Config::parse(&text, "required").expect("config");
    let listener = dmarc_milter::MilterListener::bind(&config.socket, config.socket_mode)
        .await
        .expect("bind");
    let (_reloader, reloads) = dmarc_milter::reload_channel();
    let result = dmarc_milter::run(listener, config, reloads, std::future::pending::<()>()).await;
    assert!(
        matches!(result, Err(dmarc_milter::Error::Report(_))),
        "{result:?}"
    );
}

/// Item 12: a reload names exactly the restart-only report keys that
/// changed, compared with what is running (so reverting one says
/// nothing), and never a key that applies at once.
#[tokio::test]
async fn a_reload_names_the_report_keys_that_need_a_restart() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let dir = TempDir::new("attack-reload-keys");
    let milter = hostile_milter(dir.path(), "").await;
    let rewrite = |extra: &str| {
        std::fs::write(
            &milter.config_path,
            config_text(milter.dns.addr(), &reporting(dir.path(), extra)),
        )
        .expect("rewrite");
    };
    rewrite("report_queue_size = 5\nfailure_reports_per_hour = 1\nreport_max_ruf = 2");
    milter.reloader.reload().await.expect("reload");
    let first = capture.text();
    assert!(first.contains("report_queue_size changed"), "{first}");
    assert!(!first.contains("report_store changed"), "{first}");
    assert!(
        !first.contains("failure_reports_per_hour changed"),
        "{first}"
    );
    assert!(!first.contains("report_max_ruf changed"), "{first}");
    rewrite("");
    milter.reloader.reload().await.expect("reload");
    let second = capture.text();
    assert_eq!(
        second.matches("changed in").count(),
        1,
        "reverting warns of nothing: {second}"
    );
    milter.stop().await.expect("clean stop");
}
