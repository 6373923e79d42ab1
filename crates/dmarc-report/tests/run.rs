//! Report runs against a real SQLite store: which destinations get a
//! report (ours never, `!size` honoured, exclusions), that a run is safe to
//! repeat, and delivery into a directory with destination consent, retries
//! and giving up.

use dmarc_report::{
    aggregate::{ReportFormat, ReporterInfo},
    deliver::{deliver_pending, Authorization, DeliverySettings, DestinationCheck, Transport},
    model::{
        ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DmarcWord, EvaluationRecord,
        PolicyWord, PublishedPolicy, ReportDestination,
    },
    run::{queue_aggregate_reports, AggregateSettings},
    store::{MessageKind, OutgoingMessage, SqliteStore, Store},
};
use std::collections::HashMap;

const BEGIN: i64 = 1_721_001_600;
const END: i64 = BEGIN + 86_400;

fn record(domain: &str, rua: &[(&str, Option<u64>)]) -> EvaluationRecord {
    EvaluationRecord {
        time: BEGIN + 60,
        source_ip: "192.0.2.1".parse().unwrap(),
        header_from: domain.to_string(),
        envelope_from: Some(domain.to_string()),
        envelope_to: None,
        policy: Some(PublishedPolicy {
            domain: domain.to_string(),
            discovery_method: DiscoveryWord::Psl,
            p: PolicyWord::Reject,
            sp: None,
            np: None,
            adkim: AlignmentWord::Relaxed,
            aspf: AlignmentWord::Relaxed,
            pct: 100,
            fo: "0".to_string(),
            testing: false,
            psd: false,
            rua: rua
                .iter()
                .map(|(uri, max_size)| ReportDestination {
                    uri: uri.to_string(),
                    max_size: *max_size,
                })
                .collect(),
            ruf: Vec::new(),
        }),
        dmarc: DmarcWord::Fail,
        disposition: ActionDisposition::Reject,
        dkim_aligned: AlignedWord::Fail,
        spf_aligned: AlignedWord::Fail,
        reasons: Vec::new(),
        spf: None,
        dkim: Vec::new(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    out: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("reports.db")).unwrap();
    let out = dir.path().join("out");
    Fixture {
        _dir: dir,
        store,
        out,
    }
}

/// Answers from a table; unknown pairs are refused.
struct Table(HashMap<(String, String), Authorization>);

impl DestinationCheck for Table {
    fn check(&mut self, policy_domain: &str, host: &str) -> Authorization {
        self.0
            .get(&(policy_domain.to_string(), host.to_string()))
            .cloned()
            .unwrap_or(Authorization::Refused)
    }
}

fn queue(
    store: &mut dyn Store,
    excluded: &dyn Fn(&str) -> bool,
) -> dmarc_report::run::GenerateSummary {
    let reporter = ReporterInfo::new("Receiver", "mx.example.net", "dmarc@mx.example.net");
    let own = vec!["dmarc@mx.example.net".to_string()];
    let settings = AggregateSettings {
        reporter: &reporter,
        format: ReportFormat::Rfc9990,
        sender: "dmarc@mx.example.net",
        excluded,
        own_addresses: &own,
    };
    queue_aggregate_reports(store, &settings, BEGIN, END, END + 10).unwrap()
}

#[test]
fn destinations_size_limits_exclusions_and_reruns() {
    let mut f = fixture();
    f.store
        .insert(&[
            // Two destinations, one with a limit no report fits in.
            record(
                "a.example",
                &[
                    ("mailto:rua@a.example", None),
                    ("mailto:small@a.example", Some(10)),
                ],
            ),
            // Only our own address and a non-mailto URI: nothing to send.
            record(
                "b.example",
                &[
                    ("mailto:DMARC@mx.example.net", None),
                    ("https://b.example/rua", None),
                ],
            ),
            // Excluded by configuration.
            record("c.example", &[("mailto:rua@c.example", None)]),
        ])
        .unwrap();
    let excluded = |domain: &str| domain == "c.example";
    let summary = queue(&mut f.store, &excluded);
    assert_eq!(summary.domains, 3);
    assert_eq!(summary.reports, 2);
    assert_eq!(summary.excluded, 1);
    assert_eq!(summary.no_destination, 1);
    assert_eq!(summary.too_large, 1);
    assert_eq!(summary.queued, 1);
    let pending = f.store.pending_messages(10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message.recipient, "rua@a.example");
    assert_eq!(pending[0].message.sender, "dmarc@mx.example.net");

    // Again: nothing new.
    let again = queue(&mut f.store, &excluded);
    assert_eq!((again.reports, again.already_done, again.queued), (0, 2, 0));
    assert_eq!(f.store.pending_messages(10).unwrap().len(), 1);
}

#[test]
fn delivery_checks_consent_retries_and_gives_up() {
    let mut f = fixture();
    f.store
        .insert(&[record(
            "a.example",
            &[
                ("mailto:rua@a.example", None),
                ("mailto:agg@thirdparty.example", None),
                ("mailto:agg@stranger.example", None),
                ("mailto:agg@flaky.example", None),
            ],
        )])
        .unwrap();
    assert_eq!(queue(&mut f.store, &|_| false).queued, 4);

    let mut table = Table(HashMap::new());
    for (host, answer) in [
        ("a.example", Authorization::Authorized),
        ("thirdparty.example", Authorization::Authorized),
        ("flaky.example", Authorization::Unknown("SERVFAIL".into())),
    ] {
        table
            .0
            .insert(("a.example".to_string(), host.to_string()), answer);
    }
    let transport = Transport::Directory(f.out.clone());
    let settings = DeliverySettings {
        max_attempts: 2,
        ..DeliverySettings::default()
    };
    let first = deliver_pending(&mut f.store, &transport, &mut table, &settings, END + 20).unwrap();
    assert_eq!(
        (
            first.sent,
            first.unauthorized,
            first.deferred,
            first.given_up
        ),
        (2, 1, 1, 0)
    );
    let mut files: Vec<String> = std::fs::read_dir(&f.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|name| name.ends_with(".eml")));

    // The flaky destination stays pending, then is given up.
    let second =
        deliver_pending(&mut f.store, &transport, &mut table, &settings, END + 30).unwrap();
    assert_eq!((second.sent, second.given_up), (0, 1));
    assert!(f.store.pending_messages(10).unwrap().is_empty());
    let third = deliver_pending(&mut f.store, &transport, &mut table, &settings, END + 40).unwrap();
    assert_eq!(third, Default::default());
}

/// Failure reports over `failure_reports_per_hour` to one recipient are
/// dropped at delivery (several hosts queue into one store).
#[test]
fn failure_reports_are_rate_limited_at_delivery() {
    let mut f = fixture();
    for _ in 0..3 {
        f.store
            .queue_message(&OutgoingMessage {
                kind: MessageKind::Failure,
                policy_domain: "a.example".into(),
                sender: "dmarc@mx.example.net".into(),
                recipient: "ruf@a.example".into(),
                payload: b"Subject: x\r\n\r\nreport\r\n".to_vec(),
                created: END,
            })
            .unwrap();
    }
    let mut table = Table(HashMap::from([(
        ("a.example".to_string(), "a.example".to_string()),
        Authorization::Authorized,
    )]));
    let settings = DeliverySettings {
        failure_reports_per_hour: 2,
        ..DeliverySettings::default()
    };
    let summary = deliver_pending(
        &mut f.store,
        &Transport::Directory(f.out.clone()),
        &mut table,
        &settings,
        END + 5,
    )
    .unwrap();
    assert_eq!((summary.sent, summary.rate_limited), (2, 1));
    assert!(f.store.pending_messages(10).unwrap().is_empty());
}
