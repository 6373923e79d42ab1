//! Reporting end to end: messages through the milter (in-process, real
//! milter protocol) → the SQLite report store → `run_reports` → report
//! mail delivered over SMTP to a sink on 127.0.0.1 → the report read back
//! from the delivered mail: rows, counts and results as sent.

mod common;

use common::*;
use dmarc_milter::{
    reporting::{run_reports, unix_now, ReportOutcome, ReportRun},
    Config,
};
use indymilter_test::Status;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
};
use test_dns::TestDns;

/// A partner domain whose reports go to a third party that consents
/// (RFC 9990 §4) and to one that does not.
const PARTNER_ZONE: &str = "
partner.example.                IN SOA ns1.partner.example. hostmaster.partner.example. 1 3600 900 604800 300
_dmarc.partner.example.         IN TXT \"v=DMARC1; p=none; rua=mailto:agg@reports.thirdparty.example,mailto:agg@unauthorized.example\"
partner.example._report._dmarc.reports.thirdparty.example. IN TXT \"v=DMARC1\"
";

/// One message the sink accepted.
#[derive(Debug, Clone)]
struct Delivered {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

/// A minimal SMTP server on 127.0.0.1 that accepts everything (RFC 5321
/// §4.1 commands, no extensions but 8BITMIME-free plain SMTP).
struct SmtpSink {
    addr: SocketAddr,
    delivered: Arc<Mutex<Vec<Delivered>>>,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&delivered);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let store = Arc::clone(&store);
                std::thread::spawn(move || serve(stream, &store));
            }
        });
        SmtpSink { addr, delivered }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }
}

fn serve(stream: std::net::TcpStream, store: &Mutex<Vec<Delivered>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| {
        let _ = writer.write_all(format!("{text}\r\n").as_bytes());
    };
    reply("220 sink.test ESMTP");
    let mut current = Delivered {
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: Vec::new(),
    };
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            reply("250 sink.test");
        } else if upper.starts_with("MAIL FROM:") {
            current.mail_from = command[10..].trim().trim_matches(['<', '>']).to_string();
            reply("250 OK");
        } else if upper.starts_with("RCPT TO:") {
            current
                .rcpt_to
                .push(command[8..].trim().trim_matches(['<', '>']).to_string());
            reply("250 OK");
        } else if upper == "DATA" {
            reply("354 go on");
            let mut data = Vec::new();
            loop {
                let mut raw = Vec::new();
                if reader.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                    return;
                }
                if raw == b".\r\n" {
                    break;
                }
                // RFC 5321 §4.5.2: a leading dot was doubled.
                let raw = if raw.starts_with(b"..") {
                    &raw[1..]
                } else {
                    &raw[..]
                };
                data.extend_from_slice(raw);
            }
            current.data = data;
            store.lock().unwrap().push(current.clone());
            current.rcpt_to.clear();
            reply("250 queued");
        } else if upper == "RSET" || upper == "NOOP" {
            reply("250 OK");
        } else if upper == "QUIT" {
            reply("221 bye");
            return;
        } else {
            reply("502 not implemented");
        }
    }
}

/// The gzip attachment of a report mail, decoded and decompressed.
fn report_xml(mail: &[u8]) -> String {
    let text = String::from_utf8_lossy(mail);
    let start = text
        .find("Content-Type: application/gzip")
        .expect("a gzip part");
    let part = &text[start..];
    let body_start = part.find("\r\n\r\n").expect("part body") + 4;
    let body_end = part[body_start..].find("\r\n--").expect("part end") + body_start;
    let b64: String = part[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let mut xml = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut xml)
        .expect("gzip");
    xml
}

/// The `<record>` elements of a report, each as its text.
fn records(xml: &str) -> Vec<&str> {
    xml.split("<record>").skip(1).collect()
}

fn count_of(record: &str) -> u64 {
    let start = record.find("<count>").unwrap() + 7;
    let end = record.find("</count>").unwrap();
    record[start..end].parse().unwrap()
}

fn run(config: Config, run: ReportRun) -> ReportOutcome {
    // run_reports starts runtimes of its own: off the test's runtime.
    std::thread::spawn(move || run_reports(&config, &run))
        .join()
        .unwrap()
        .expect("report run")
}

/// A period around now, and a run at its end (a period must have ended to
/// be reported).
fn period_around_now() -> (Option<(i64, i64)>, i64) {
    let now = unix_now();
    (Some((now - 3_600, now + 3_600)), now + 3_600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_become_aggregate_reports_delivered_over_smtp() {
    let sink = SmtpSink::start();
    let store_dir = TempDir::new("reports");
    let db = store_dir.path().join("reports.db");
    let extra = format!(
        "report_store = \"{}\"\nreport_org_name = \"Test Receiver\"\nreport_email = \"dmarc-noreply@mx.test.example\"\nreport_domain = \"mx.test.example\"\nreport_transport = \"smtp:{}\"\n",
        db.display(),
        sink.addr
    );
    let zone = format!("{}\n{PARTNER_ZONE}", demo_zone());
    let milter =
        Milter::start_with_dns(TestDns::start(&zone).await.expect("test DNS"), &extra).await;

    // Three legitimate newsletters (DKIM pass), two forgeries (reject),
    // one partner message (p=none, fail).
    for _ in 0..3 {
        let (_, status) = newsletter(&milter, &Mail::example("newsletter.eml")).await;
        assert_eq!(status, Status::Accept);
    }
    for _ in 0..2 {
        let (_, status) = forged(
            &milter,
            "198.51.100.200",
            None,
            &Mail::example("forged.eml"),
        )
        .await;
        assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    }
    let partner = Mail::parse(
        b"From: news@partner.example\r\nTo: someone@example.net\r\nSubject: hi\r\n\r\nHello\r\n",
    );
    let mut conn = milter.connect("203.0.113.9", "mta.partner.example").await;
    let (_, status) = send(&mut conn, "news@partner.example", None, &partner).await;
    assert_eq!(status, Status::Accept);
    drop(conn);

    // A clean stop flushes the store (and ends the milter's DNS server).
    milter.stop().await.expect("clean stop");
    let dns = TestDns::start(&zone).await.expect("test DNS");
    let config = Config::parse(&config_text(dns.addr(), &extra), "reports").expect("config");

    let (period, now) = period_around_now();
    let outcome = run(
        config.clone(),
        ReportRun {
            period,
            deliver: true,
            now,
        },
    );
    assert_eq!(outcome.generated.domains, 2, "{outcome}");
    assert_eq!(outcome.generated.reports, 2, "{outcome}");
    assert_eq!(outcome.generated.queued, 3, "{outcome}");
    assert_eq!(outcome.delivered.sent, 2, "{outcome}");
    assert_eq!(outcome.delivered.unauthorized, 1, "{outcome}");

    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 2);
    let to = |address: &str| {
        delivered
            .iter()
            .find(|d| d.rcpt_to == [address.to_string()])
            .unwrap_or_else(|| panic!("nothing delivered to {address}: {delivered:?}"))
    };

    let example = to("dmarc-reports@example.com");
    assert_eq!(example.mail_from, "dmarc-noreply@mx.test.example");
    let head = String::from_utf8_lossy(&example.data);
    assert!(head.contains("Report Domain: example.com"), "{head}");
    let xml = report_xml(&example.data);
    assert!(xml.contains("<domain>example.com</domain>"), "{xml}");
    let rows = records(&xml);
    assert_eq!(rows.len(), 2, "{xml}");
    let pass = rows
        .iter()
        .find(|r| r.contains("<source_ip>192.0.2.10</source_ip>"))
        .expect("newsletter row");
    assert_eq!(count_of(pass), 3);
    assert!(pass.contains("<disposition>pass</disposition>"), "{pass}");
    assert!(pass.contains("<selector>news2048</selector>"), "{pass}");
    let forged = rows
        .iter()
        .find(|r| r.contains("<source_ip>198.51.100.200</source_ip>"))
        .expect("forgery row");
    assert_eq!(count_of(forged), 2);
    assert!(
        forged.contains("<disposition>reject</disposition>"),
        "{forged}"
    );

    let third = to("agg@reports.thirdparty.example");
    let xml = report_xml(&third.data);
    assert!(xml.contains("<domain>partner.example</domain>"), "{xml}");
    assert_eq!(records(&xml).len(), 1);
    assert!(xml.contains("<p>none</p>"), "{xml}");

    // A second run makes nothing new and sends nothing again.
    let again = run(
        config,
        ReportRun {
            period,
            deliver: true,
            now,
        },
    );
    assert_eq!(again.generated.reports, 0, "{again}");
    assert_eq!(again.generated.already_done, 2, "{again}");
    assert_eq!(again.delivered.sent, 0, "{again}");
    assert_eq!(sink.delivered().len(), 2);
}

/// A relay that is down: the report stays pending and goes out on the next
/// run, once the relay is back; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_on_the_next_run() {
    let store_dir = TempDir::new("reports-retry");
    let db = store_dir.path().join("reports.db");
    // A port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = |transport: &str| {
        format!(
            "report_store = \"{}\"\nreport_org_name = \"Test Receiver\"\nreport_email = \"dmarc-noreply@mx.test.example\"\nreport_transport = \"{transport}\"\n",
            db.display()
        )
    };
    let milter = Milter::start(&extra(&format!("smtp:{dead}"))).await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert!(matches!(status, Status::Reject { .. }));
    milter.stop().await.expect("clean stop");
    let dns = TestDns::start(&demo_zone()).await.expect("test DNS");
    let config = Config::parse(
        &config_text(dns.addr(), &extra(&format!("smtp:{dead}"))),
        "retry",
    )
    .expect("config");

    let (period, now) = period_around_now();
    let first = run(
        config,
        ReportRun {
            period,
            deliver: true,
            now,
        },
    );
    assert_eq!(first.generated.reports, 1, "{first}");
    assert_eq!(first.delivered.deferred, 1, "{first}");

    let sink = SmtpSink::start();
    let config = Config::parse(
        &config_text(dns.addr(), &extra(&format!("smtp:{}", sink.addr))),
        "retry",
    )
    .expect("config");
    let second = run(
        config,
        ReportRun {
            period: None,
            deliver: true,
            now,
        },
    );
    assert_eq!(second.delivered.sent, 1, "{second}");
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].rcpt_to, ["dmarc-reports@example.com"]);
    let xml = report_xml(&delivered[0].data);
    assert_eq!(count_of(records(&xml)[0]), 1);
}

/// A domain asking for failure reports on any failure (`fo=1`).
const RUF_ZONE: &str = "
fail.example.                IN SOA ns1.fail.example. hostmaster.fail.example. 1 3600 900 604800 300
fail.example.                IN TXT \"v=spf1 -all\"
_dmarc.fail.example.         IN TXT \"v=DMARC1; p=none; ruf=mailto:ruf@fail.example; fo=1\"
";

/// Failure reports (RFC 9991): queued by the milter for a failing message
/// of a domain with `ruf`, delivered by the next run (here into a
/// directory), header fields only with the body left out, at most
/// `failure_reports_per_hour` to one address (checked when queued, and
/// again when delivered: see dmarc-report's tests/run.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_are_queued_and_rate_limited() {
    let store_dir = TempDir::new("reports-ruf");
    let db = store_dir.path().join("reports.db");
    let out = store_dir.path().join("out");
    let extra = format!(
        "report_store = \"{}\"\nreport_org_name = \"Test Receiver\"\nreport_email = \"dmarc-noreply@mx.test.example\"\nreport_transport = \"dir:{}\"\nfailure_reports = true\nfailure_reports_per_hour = 2\n",
        db.display(),
        out.display()
    );
    let zone = format!("{}\n{RUF_ZONE}", demo_zone());
    let milter =
        Milter::start_with_dns(TestDns::start(&zone).await.expect("test DNS"), &extra).await;
    let secret = "The secret body of the message";
    let mail = Mail::parse(
        format!("From: boss@fail.example\r\nTo: someone@example.net\r\nSubject: urgent\r\nMessage-ID: <1@fail.example>\r\n\r\n{secret}\r\n")
            .as_bytes(),
    );
    for _ in 0..3 {
        let mut conn = milter.connect("203.0.113.66", "evil.example").await;
        let (_, status) = send(&mut conn, "boss@fail.example", None, &mail).await;
        assert_eq!(status, Status::Accept, "p=none");
    }
    milter.stop().await.expect("clean stop");

    let dns = TestDns::start(&zone).await.expect("test DNS");
    let config = Config::parse(&config_text(dns.addr(), &extra), "ruf").expect("config");
    let outcome = run(
        config,
        ReportRun {
            period: None,
            deliver: true,
            now: unix_now(),
        },
    );
    // The third was never queued: the milter counts per recipient and hour
    // too, so a flood of forgeries cannot fill the store.
    assert_eq!(outcome.delivered.sent, 2, "{outcome}");
    assert_eq!(outcome.delivered.rate_limited, 0, "{outcome}");

    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let report = String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(
        report.contains("X-Original-To: ruf@fail.example"),
        "{report}"
    );
    assert!(report.contains("multipart/report"), "{report}");
    assert!(report.contains("report-type=feedback-report"), "{report}");
    assert!(report.contains("Feedback-Type: auth-failure"), "{report}");
    assert!(report.contains("Reported-Domain: fail.example"), "{report}");
    assert!(report.contains("Source-IP: 203.0.113.66"), "{report}");
    // RFC 9991 §4: the SPF record of an aligned identifier that failed.
    assert!(
        report.contains("SPF-DNS: txt : fail.example : v=spf1 -all"),
        "{report}"
    );
    assert!(report.contains("text/rfc822-headers"), "{report}");
    assert!(report.contains("Subject: urgent"), "{report}");
    assert!(
        !report.contains(secret),
        "the body must not be sent: {report}"
    );
}

/// Issue 16 item 7: consent look-ups (RFC 9990 §4) are asked together and
/// the run has one budget for them (`report_consent_budget`): ten
/// destinations whose `_report._dmarc` questions never answer cost the
/// budget once, not ten DNS timeouts, and their reports wait for the next
/// run without an attempt counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_checks_share_one_budget_and_skip_what_it_does_not_cover() {
    use dmarc_report::store::{MessageKind, OutgoingMessage, SqliteStore, Store};
    let store_dir = TempDir::new("reports-budget");
    let db = store_dir.path().join("reports.db");
    let mut store = SqliteStore::open(&db).unwrap();
    for n in 0..10 {
        store
            .queue_message(&OutgoingMessage {
                kind: MessageKind::Aggregate,
                policy_domain: "example.com".into(),
                sender: "dmarc-noreply@mx.test.example".into(),
                recipient: format!("agg@slow{n}.example"),
                payload: b"Subject: x\r\n\r\nreport\r\n".to_vec(),
                created: 1,
            })
            .unwrap();
    }
    drop(store);
    let dns = TestDns::start(&demo_zone()).await.expect("test DNS");
    for n in 0..10 {
        dns.set_fault(
            &format!("example.com._report._dmarc.slow{n}.example"),
            None,
            test_dns::Fault::Timeout,
        );
    }
    let extra = format!(
        "dns_timeout = 5\nreport_consent_budget = 1\nreport_store = \"{}\"\nreport_org_name = \"Test\"\nreport_email = \"dmarc-noreply@mx.test.example\"\nreport_transport = \"dir:{}\"\n",
        db.display(),
        store_dir.path().join("out").display()
    );
    let config = Config::parse(&config_text(dns.addr(), &extra), "budget").expect("config");
    for _ in 0..2 {
        let outcome = run(
            config.clone(),
            ReportRun {
                period: None,
                deliver: true,
                now: unix_now(),
            },
        );
        assert_eq!(outcome.delivered.skipped, 10, "{outcome}");
        assert_eq!(outcome.delivered.deferred, 0, "{outcome}");
    }
    let mut store = SqliteStore::open(&db).unwrap();
    let pending = store.pending_messages(0, 100).unwrap();
    assert_eq!(pending.len(), 10);
    assert!(pending.iter().all(|queued| queued.attempts == 0));
    // Every question asked in each run (the resolver may retransmit).
    let fewest = (0..10)
        .map(|n| dns.query_count(&format!("example.com._report._dmarc.slow{n}.example")))
        .min()
        .unwrap();
    assert!(fewest >= 2, "{fewest}");
}
