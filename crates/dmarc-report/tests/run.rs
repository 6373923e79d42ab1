//! Report runs against a real SQLite store: which destinations get a
//! report (ours never, `!size` honoured, exclusions, repeats once, caps per
//! record and per destination domain), that a run is safe to repeat, and
//! delivery into a directory with destination consent (and its
//! redirections), retries, giving up, budgets and claims.

use dmarc_report::{
    aggregate::{ReportFormat, ReporterInfo},
    deliver::{
        deliver_pending, Authorization, Consent, DeliverySettings, DestinationCheck, Redirect,
        Transport,
    },
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
    queue_capped(store, excluded, 10, 1000)
}

/// The organization of a test domain: its last two labels.
fn org(domain: &str) -> String {
    let labels: Vec<&str> = domain.rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}

fn queue_capped(
    store: &mut dyn Store,
    excluded: &dyn Fn(&str) -> bool,
    max_rua: usize,
    max_per_destination_domain: usize,
) -> dmarc_report::run::GenerateSummary {
    let reporter = ReporterInfo::new("Receiver", "mx.example.net", "dmarc@mx.example.net");
    let own = vec!["dmarc@mx.example.net".to_string()];
    let settings = AggregateSettings {
        reporter: &reporter,
        format: ReportFormat::Rfc9990,
        sender: "dmarc@mx.example.net",
        excluded,
        own_addresses: &own,
        max_rua,
        max_per_destination_domain,
        destination_group: &org,
    };
    queue_aggregate_reports(store, &settings, BEGIN, END, END + 10).unwrap()
}

/// A fixed clock.
fn at(time: i64) -> impl Fn() -> i64 {
    move || time
}

fn nothing_excluded(_: &str) -> bool {
    false
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
    let pending = f.store.pending_messages(0, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].recipient, "rua@a.example");
    assert_eq!(pending[0].sender, "dmarc@mx.example.net");

    // Again: nothing new.
    let again = queue(&mut f.store, &excluded);
    assert_eq!((again.reports, again.already_done, again.queued), (0, 2, 0));
    assert_eq!(f.store.pending_messages(0, 10).unwrap().len(), 1);
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
    let first = deliver_pending(
        &mut f.store,
        &transport,
        &mut table,
        &settings,
        &at(END + 20),
        &nothing_excluded,
    )
    .unwrap();
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
    let second = deliver_pending(
        &mut f.store,
        &transport,
        &mut table,
        &settings,
        &at(END + 30),
        &nothing_excluded,
    )
    .unwrap();
    assert_eq!((second.sent, second.given_up), (0, 1));
    assert!(f.store.pending_messages(0, 10).unwrap().is_empty());
    let third = deliver_pending(
        &mut f.store,
        &transport,
        &mut table,
        &settings,
        &at(END + 40),
        &nothing_excluded,
    )
    .unwrap();
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
        &at(END + 5),
        &nothing_excluded,
    )
    .unwrap();
    assert_eq!((summary.sent, summary.rate_limited), (2, 1));
    assert!(f.store.pending_messages(0, 10).unwrap().is_empty());
}

/// Issue 16 item 5: one address repeated 500 times is one report; a
/// record's list is capped; fifty subdomains under a wildcard `_dmarc`
/// naming twenty addresses each at one domain make at most the
/// per-destination-domain cap of report mails to it in one run.
#[test]
fn destinations_are_deduplicated_and_capped_per_record_and_per_domain() {
    let mut f = fixture();
    let repeated: Vec<(&str, Option<u64>)> = vec![("mailto:rua@a.example", None); 500];
    f.store.insert(&[record("a.example", &repeated)]).unwrap();
    // The store keeps the list once already.
    let stored = f.store.records("a.example", BEGIN, END).unwrap();
    assert_eq!(stored[0].policy.as_ref().unwrap().rua.len(), 1);
    let summary = queue(&mut f.store, &nothing_excluded);
    assert_eq!((summary.reports, summary.queued), (1, 1));

    let mut g = fixture();
    let addresses: Vec<String> = (0..20)
        .map(|n| format!("mailto:r{n}@victim.example"))
        .collect();
    let rua: Vec<(&str, Option<u64>)> = addresses.iter().map(|a| (a.as_str(), None)).collect();
    let records: Vec<EvaluationRecord> = (0..50)
        .map(|n| record(&format!("s{n}.wild.example"), &rua))
        .collect();
    g.store.insert(&records).unwrap();
    let summary = queue_capped(&mut g.store, &nothing_excluded, 10, 100);
    assert_eq!(summary.reports, 50);
    assert_eq!(summary.queued, 100, "{summary:?}");
    assert_eq!(summary.over_destination_cap, 400);
    assert_eq!(summary.destinations_dropped, 50 * 10);
    assert_eq!(g.store.pending_messages(0, 1_000).unwrap().len(), 100);
}

/// A report made from the store's grouped rows counts every message.
#[test]
fn reports_are_written_from_the_stores_rows() {
    let mut f = fixture();
    let records: Vec<EvaluationRecord> = (0..250)
        .map(|n| EvaluationRecord {
            source_ip: format!("192.0.2.{}", n % 5).parse().unwrap(),
            ..record("a.example", &[("mailto:rua@a.example", None)])
        })
        .collect();
    f.store.insert(&records).unwrap();
    assert_eq!(queue(&mut f.store, &nothing_excluded).queued, 1);
    let pending = f.store.pending_messages(0, 10).unwrap();
    let mail = String::from_utf8(f.store.payload(pending[0].id).unwrap()).unwrap();
    assert!(mail.contains("Messages: 250 in 5 rows"), "{mail}");
}

/// A destination check that answers from a table and counts its calls.
struct Counting {
    answers: HashMap<String, Authorization>,
    checks: usize,
    prepared: Vec<(String, String)>,
}

impl DestinationCheck for Counting {
    fn prepare(&mut self, pairs: &[(String, String)]) {
        self.prepared.extend(pairs.iter().cloned());
    }
    fn check(&mut self, _policy_domain: &str, host: &str) -> Authorization {
        self.checks += 1;
        self.answers
            .get(host)
            .cloned()
            .unwrap_or(Authorization::Refused)
    }
}

fn queue_to(store: &mut dyn Store, kind: MessageKind, policy_domain: &str, recipient: &str) {
    store
        .queue_message(&OutgoingMessage {
            kind,
            policy_domain: policy_domain.into(),
            sender: "dmarc@mx.example.net".into(),
            recipient: recipient.into(),
            payload: b"Subject: x\r\n\r\nreport\r\n".to_vec(),
            created: END,
        })
        .unwrap();
}

/// Issue 16 item 7: a destination whose consent could not be checked
/// within the run's budget waits for the next run, without an attempt
/// counted; item 11: an excluded policy domain gets nothing, failure
/// reports included; item 8: a recipient that is no longer a usable
/// address (a relay hack queued by an older version) is given up.
#[test]
fn skipped_excluded_and_unusable_destinations() {
    let mut f = fixture();
    queue_to(
        &mut f.store,
        MessageKind::Aggregate,
        "a.example",
        "rua@slow.example",
    );
    queue_to(
        &mut f.store,
        MessageKind::Failure,
        "b.example",
        "ruf@b.example",
    );
    queue_to(
        &mut f.store,
        MessageKind::Aggregate,
        "c.example",
        "victim%third.example@c.example",
    );
    let mut check = Counting {
        answers: HashMap::from([
            ("slow.example".to_string(), Authorization::Skipped),
            ("c.example".to_string(), Authorization::Authorized),
        ]),
        checks: 0,
        prepared: Vec::new(),
    };
    let excluded = |domain: &str| domain == "b.example";
    let settings = DeliverySettings {
        max_attempts: 1,
        ..DeliverySettings::default()
    };
    let transport = Transport::Directory(f.out.clone());
    for run in 0..3 {
        let summary = deliver_pending(
            &mut f.store,
            &transport,
            &mut check,
            &settings,
            &at(END + run),
            &excluded,
        )
        .unwrap();
        if run == 0 {
            assert_eq!(
                (
                    summary.skipped,
                    summary.excluded,
                    summary.given_up,
                    summary.sent
                ),
                (1, 1, 1, 0),
                "{summary:?}"
            );
        } else {
            assert_eq!(summary.skipped, 1, "{summary:?}");
        }
    }
    let pending = f.store.pending_messages(0, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].recipient.as_str(), pending[0].attempts),
        ("rua@slow.example", 0)
    );
    // Excluded domains are not even asked about.
    assert!(check
        .prepared
        .iter()
        .all(|(domain, _)| domain != "b.example"));
}

/// Issue 16 item 8: a claim is taken with the time it is taken, not the
/// run's start: late in a long run it still lasts CLAIM_SECONDS, so a
/// second host cannot take the message over while it is being sent.
#[test]
fn claims_are_taken_with_the_clock_of_the_moment() {
    let mut f = fixture();
    for n in 0..3 {
        queue_to(
            &mut f.store,
            MessageKind::Aggregate,
            "a.example",
            &format!("r{n}@a.example"),
        );
    }
    let mut check = Counting {
        answers: HashMap::from([("a.example".to_string(), Authorization::Authorized)]),
        checks: 0,
        prepared: Vec::new(),
    };
    // Each reading of the clock is 15 minutes later: a run of hours.
    let ticks = std::cell::Cell::new(END);
    let clock = || {
        ticks.set(ticks.get() + 900);
        ticks.get()
    };
    let summary = deliver_pending(
        &mut f.store,
        &Transport::Directory(f.out.clone()),
        &mut check,
        &DeliverySettings::default(),
        &clock,
        &nothing_excluded,
    )
    .unwrap();
    assert_eq!(summary.sent, 3);
    // The last claim was taken at the clock's latest reading but one.
    let mut other = SqliteStore::open(&f._dir.path().join("reports.db")).unwrap();
    queue_to(
        &mut other,
        MessageKind::Aggregate,
        "a.example",
        "late@a.example",
    );
    let id = other.pending_messages(0, 10).unwrap()[0].id;
    let now = ticks.get();
    assert!(other
        .claim(id, now, now + dmarc_report::deliver::CLAIM_SECONDS)
        .unwrap());
    assert!(
        !other
            .claim(
                id,
                now + dmarc_report::deliver::CLAIM_SECONDS - 1,
                now + 5_000
            )
            .unwrap(),
        "held for CLAIM_SECONDS from the moment it was taken"
    );
}

/// RFC 9990 §4 step 9: a consent record naming other addresses at its own
/// host redirects the report there (failure reports by its `ruf`).
#[test]
fn consent_records_redirect_reports() {
    let mut f = fixture();
    queue_to(
        &mut f.store,
        MessageKind::Aggregate,
        "a.example",
        "agg@third.example",
    );
    queue_to(
        &mut f.store,
        MessageKind::Failure,
        "a.example",
        "ruf@third.example",
    );
    let mut check = Counting {
        answers: HashMap::from([(
            "third.example".to_string(),
            Authorization::Consented(Consent {
                rua: Redirect::To(vec!["new@third.example".to_string()]),
                ruf: Redirect::Refused,
            }),
        )]),
        checks: 0,
        prepared: Vec::new(),
    };
    let summary = deliver_pending(
        &mut f.store,
        &Transport::Directory(f.out.clone()),
        &mut check,
        &DeliverySettings::default(),
        &at(END + 1),
        &nothing_excluded,
    )
    .unwrap();
    assert_eq!(
        (summary.sent, summary.redirected, summary.unauthorized),
        (1, 1, 1)
    );
    let file = std::fs::read_dir(&f.out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = String::from_utf8(std::fs::read(file).unwrap()).unwrap();
    assert!(
        text.contains("X-Original-To: new@third.example\r\n"),
        "{text}"
    );
}

/// A run's delivery reads a bounded batch at a time whatever is pending,
/// and reaches every message once.
#[test]
fn delivery_walks_every_pending_message_once_by_cursor() {
    let mut f = fixture();
    for n in 0..250 {
        queue_to(
            &mut f.store,
            MessageKind::Aggregate,
            "a.example",
            &format!("r{n}@a.example"),
        );
    }
    let mut check = Counting {
        answers: HashMap::from([(
            "a.example".to_string(),
            Authorization::Unknown("timeout".into()),
        )]),
        checks: 0,
        prepared: Vec::new(),
    };
    let summary = deliver_pending(
        &mut f.store,
        &Transport::Directory(f.out.clone()),
        &mut check,
        &DeliverySettings {
            batch: 7,
            ..DeliverySettings::default()
        },
        &at(END + 1),
        &nothing_excluded,
    )
    .unwrap();
    assert_eq!(summary.deferred, 250);
    assert_eq!(check.checks, 250);
    assert_eq!(check.prepared.len(), 250);
}
