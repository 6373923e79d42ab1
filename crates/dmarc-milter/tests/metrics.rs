//! The metrics endpoint (issue 15): the milter in-process with
//! `/metrics` on 127.0.0.1, known messages sent over the milter protocol
//! (indymilter-test, as Postfix sends them), then one scrape: every
//! counter must say exactly what was sent, the DNS counters what test-dns
//! saw, and `promtool check metrics` must accept the scrape.
//!
//! `promtool` comes with the Debian package `prometheus`; without it the
//! promtool checks are skipped with a loud message, unless
//! `DMARC_PROMTOOL=require` is set (as in CI), when they fail. Every
//! metric the dashboard and the alerts of `contrib/` name must be in the
//! scrape.

mod common;

use common::*;
use indymilter_test::{EomAction, Status};
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::SocketAddr,
    process::{Command, Stdio},
};
use test_dns::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AR: &str = "Authentication-Results";

/// One scrape: each sample line by its name and labels.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: BTreeMap<(String, BTreeSet<(String, String)>), f64>,
}

impl Scrape {
    /// Parses the Prometheus text format (enough of it for our output:
    /// label values without `,` or `}`).
    fn parse(text: String) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .strip_suffix('}')
                        .expect("labels end")
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeSet::new()),
            };
            assert!(
                samples.insert((name, labels), value).is_none(),
                "duplicate series {line}"
            );
        }
        Scrape { text, samples }
    }

    /// The value of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeSet<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// Every series of `name`: its labels (as `k=v` joined by `,`) and
    /// value.
    fn family(&self, name: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| {
                let key = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                (key, *v)
            })
            .collect()
    }

    /// The sum over every series of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.family(name).values().sum()
    }

    /// The metric names declared (`# TYPE name kind`).
    fn declared(&self) -> BTreeMap<String, String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect()
    }
}

/// GET `path` over plain HTTP/1.1: the status line, the head and the body.
async fn get(addr: SocketAddr, method: &str, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response");
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

async fn scrape(milter: &Milter) -> Scrape {
    let addr = milter.metrics_addr.expect("metrics served");
    let (status, head, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    Scrape::parse(body)
}

/// `promtool check metrics` on a scrape: exit 0 and no lint problem.
fn promtool_check_metrics(text: &str) {
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {report}\n{text}"
    );
    assert_eq!(report.trim(), "", "promtool check metrics found problems");
}

/// The configuration of the scenario: a report store (so the report
/// pipeline counts), at most 2 forged Authentication-Results per message.
fn scenario_config(dir: &std::path::Path) -> String {
    format!(
        "report_store = \"{}\"\nreport_org_name = \"Test\"\nreport_email = \"dmarc@mx.test.example\"\nmax_forged_authentication_results = 2\n",
        dir.join("reports.db").display()
    )
}

/// Sends known messages, scrapes, and checks every counter against what
/// was sent.
#[tokio::test]
async fn every_counter_says_what_was_sent() {
    let dns = test_dns::TestDns::start(&demo_zone())
        .await
        .expect("test DNS");
    // example.org's DMARC record cannot be fetched: temperror.
    dns.set_fault("_dmarc.example.org", None, Fault::ServFail);
    let store_dir = TempDir::new("metrics-store");
    let milter = Milter::start_with_metrics(dns, &scenario_config(store_dir.path())).await;

    let newsletter_mail =
        Mail::example("newsletter.eml").prepend(AR, " mx.test.example; dmarc=pass");
    let forged_mail = Mail::example("forged.eml");
    let subdomain_mail = Mail::example("subdomain.eml");
    // Unsigned, From example.org.
    let mut org_forgery = Mail::example("forged.eml");
    for (name, value) in &mut org_forgery.headers {
        if name.eq_ignore_ascii_case("from") {
            *value = " Alice <alice@example.org>".to_string();
        }
    }
    let bomb = Mail::example("forged.eml")
        .prepend(AR, " mx.test.example; dmarc=pass")
        .prepend(AR, " mx.test.example; dkim=pass")
        .prepend(AR, " mx.test.example; spf=pass");

    // Every connection stays open until the scrape.
    let mut conns = Vec::new();
    // 3 newsletters (pass, accept), each with one forged field removed, on
    // one connection.
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    for _ in 0..3 {
        let (eom, status) = send(
            &mut conn,
            "bounce-123@bounce.example.net",
            None,
            &newsletter_mail,
        )
        .await;
        assert_eq!(status, Status::Accept);
        assert!(eom.actions.contains(&EomAction::DeleteHeader {
            name: c"Authentication-Results".into(),
            index: 1
        }));
    }
    conns.push(conn);
    // 2 forgeries of example.com (fail, reject), each on its own
    // connection.
    for _ in 0..2 {
        let mut conn = milter
            .connect("198.51.100.200", "unknown.example.net")
            .await;
        let (_, status) = send(&mut conn, "ceo@example.com", None, &forged_mail).await;
        assert!(matches!(status, Status::Reject { .. }), "{status:?}");
        conns.push(conn);
    }
    // 2 from billing.example.com (fail, sp=quarantine: hold).
    let mut conn = milter
        .connect("198.51.100.77", "smtp.billing.example.com")
        .await;
    for _ in 0..2 {
        let (eom, status) = send(
            &mut conn,
            "billing@billing.example.com",
            None,
            &subdomain_mail,
        )
        .await;
        assert_eq!(status, Status::Accept);
        assert!(eom
            .actions
            .iter()
            .any(|a| matches!(a, EomAction::Quarantine { .. })));
    }
    conns.push(conn);
    // 1 from example.org, whose record cannot be fetched (temperror,
    // tempfail).
    let mut conn = milter
        .connect("198.51.100.200", "unknown.example.net")
        .await;
    let (_, status) = send(&mut conn, "alice@example.org", None, &org_forgery).await;
    assert!(matches!(status, Status::Tempfail { .. }), "{status:?}");
    conns.push(conn);
    // 1 authenticated submission (skipped) with a forged field removed.
    let mut conn = milter
        .connect("198.51.100.200", "unknown.example.net")
        .await;
    let (_, status) = send(&mut conn, "ceo@example.com", Some("ceo"), &newsletter_mail).await;
    assert_eq!(status, Status::Accept);
    // 1 with 3 forged fields, over the cap of 2: refused.
    let (_, status) = send(&mut conn, "ceo@example.com", None, &bomb).await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    conns.push(conn);

    let s = scrape(&milter).await;
    let dns_queries = milter.dns.queries();

    // Messages, by result, disposition, override and dry run.
    let messages = s.family("dmarc_milter_messages_total");
    let expected: BTreeMap<String, f64> = [
        (
            "disposition=accept,dmarc=pass,dry_run=false,override=none",
            3.0,
        ),
        (
            "disposition=reject,dmarc=fail,dry_run=false,override=none",
            2.0,
        ),
        (
            "disposition=quarantine,dmarc=fail,dry_run=false,override=none",
            2.0,
        ),
        (
            "disposition=tempfail,dmarc=temperror,dry_run=false,override=none",
            1.0,
        ),
        (
            "disposition=reject,dmarc=none,dry_run=false,override=local_policy",
            1.0,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(messages, expected, "{}", s.text);
    assert_eq!(
        s.family("dmarc_milter_messages_skipped_total"),
        [
            ("reason=authenticated", 1.0),
            ("reason=ignored_client", 0.0),
            ("reason=ignored_from", 0.0)
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    );
    // SPF: the newsletters pass, the forgeries fail (example.org's too),
    // billing has no SPF record.
    let spf = s.family("dmarc_milter_spf_results_total");
    assert_eq!(spf.get("result=pass"), Some(&3.0), "{spf:?}");
    assert_eq!(spf.get("result=fail"), Some(&3.0), "{spf:?}");
    assert_eq!(spf.get("result=none"), Some(&2.0), "{spf:?}");
    assert_eq!(
        s.sum("dmarc_milter_spf_results_total"),
        8.0,
        "one per verified message"
    );
    // DKIM: one good signature in each newsletter; none in the others.
    let dkim = s.family("dmarc_milter_dkim_results_total");
    assert_eq!(dkim.get("result=pass"), Some(&3.0), "{dkim:?}");
    assert_eq!(dkim.get("result=none"), Some(&5.0), "{dkim:?}");
    assert_eq!(s.sum("dmarc_milter_dkim_results_total"), 8.0, "{dkim:?}");
    // Forged fields: one per newsletter and one in the skipped message;
    // the refused message had three (refused, not removed).
    assert_eq!(
        s.get("dmarc_milter_forged_auth_results_removed_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        s.get("dmarc_milter_forged_auth_results_refused_total", &[]),
        Some(1.0)
    );
    // Verified messages: 3 + 2 + 2 + 1.
    assert_eq!(
        s.get("dmarc_milter_verification_duration_seconds_count", &[]),
        Some(8.0)
    );
    assert_eq!(
        s.get(
            "dmarc_milter_verification_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        Some(8.0)
    );
    // Connections: all still open; no message in flight.
    assert_eq!(
        s.get("dmarc_milter_connections_total", &[]),
        Some(conns.len() as f64)
    );
    assert_eq!(
        s.get("dmarc_milter_connections_open", &[]),
        Some(conns.len() as f64)
    );
    assert_eq!(s.get("dmarc_milter_messages_in_flight", &[]), Some(0.0));
    assert_eq!(s.sum("dmarc_milter_errors_total"), 0.0);
    assert_eq!(s.sum("dmarc_milter_config_reloads_total"), 0.0);
    let loaded = s
        .get("dmarc_milter_config_last_load_timestamp_seconds", &[])
        .expect("load time");
    assert!(loaded > 1.7e9, "{loaded}");
    assert_eq!(
        s.get("dmarc_milter_shadow_discovery_differences_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "dmarc_milter_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("mail_auth_version", "0.15.1")
            ]
        ),
        Some(1.0)
    );

    // DNS: every question test-dns answered, by type; the failures are
    // the SERVFAIL of _dmarc.example.org.
    let mut by_type: BTreeMap<String, f64> = BTreeMap::new();
    for query in &dns_queries {
        let rtype = query.rtype.map_or("other", |t| t.as_str());
        *by_type.entry(rtype.to_string()).or_default() += 1.0;
    }
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    for (labels, n) in s.family("dmarc_milter_dns_questions_total") {
        let rtype = labels
            .split(',')
            .find_map(|l| l.strip_prefix("type="))
            .expect("type label");
        *counted.entry(rtype.to_string()).or_default() += n;
    }
    assert_eq!(counted, by_type, "{dns_queries:?}");
    let servfail: f64 = s
        .family("dmarc_milter_dns_questions_total")
        .iter()
        .filter(|(labels, _)| labels.contains("outcome=servfail"))
        .map(|(_, n)| n)
        .sum();
    let faulted = dns_queries
        .iter()
        .filter(|q| q.name == "_dmarc.example.org")
        .count();
    assert_eq!(servfail, faulted as f64);
    assert!(faulted >= 1);
    for (labels, n) in s.family("dmarc_milter_dns_questions_total") {
        let pairs: Vec<(&str, &str)> = labels
            .split(',')
            .map(|p| p.split_once('=').expect("pair"))
            .collect();
        assert_eq!(
            s.get("dmarc_milter_dns_question_duration_seconds_count", &pairs),
            Some(n),
            "{labels}"
        );
    }
    // The TXT cache holds every TXT name asked (nothing expired or
    // evicted yet); each message after the first of its kind was answered
    // from the cache.
    let txt_names: BTreeSet<&str> = dns_queries
        .iter()
        .filter(|q| q.rtype == Some(dmarc_verifier::dns::zone::RecordType::Txt))
        .filter(|q| q.name != "_dmarc.example.org")
        .map(|q| q.name.as_str())
        .collect();
    let cached = s
        .get("dmarc_milter_dns_cache_entries", &[("cache", "txt")])
        .unwrap_or(0.0)
        + s.get("dmarc_milter_dns_cache_entries", &[("cache", "dkim_keys")])
            .unwrap_or(0.0)
        + s.get(
            "dmarc_milter_dns_cache_entries",
            &[("cache", "spf_records")],
        )
        .unwrap_or(0.0);
    assert!(
        cached >= txt_names.len() as f64,
        "{cached} < {txt_names:?}\n{}",
        s.text
    );
    assert!(
        s.get(
            "dmarc_milter_dns_cache_lookups_total",
            &[("cache", "txt"), ("result", "hit")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{}",
        s.text
    );

    // The report pipeline: what the counters say.
    let report = milter.counters.report.snapshot();
    assert_eq!(
        s.get("dmarc_milter_report_records_queued_total", &[]),
        Some(report.records_queued as f64)
    );
    assert!(report.records_queued >= 7, "{report:?}");
    assert_eq!(
        s.get("dmarc_milter_report_records_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(s.sum("dmarc_milter_report_store_errors_total"), 0.0);
    assert_eq!(s.sum("dmarc_milter_failure_reports_total"), 0.0);
    // No report run yet: the store holds no report mail.
    assert_eq!(
        s.family("dmarc_milter_report_messages").len(),
        6,
        "{}",
        s.text
    );
    assert_eq!(s.sum("dmarc_milter_report_messages"), 0.0);
    assert_eq!(s.sum("dmarc_milter_failure_reports_suppressed_total"), 0.0);

    promtool_check_metrics(&s.text);

    // Every metric the dashboard and the alerts name is exported.
    let declared = s.declared();
    for name in contrib_metric_names() {
        let histogram = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| declared.get(*base).map(String::as_str) == Some("histogram"));
        assert!(
            declared.contains_key(&name) || histogram.is_some(),
            "contrib/ uses {name}, which the milter does not export"
        );
    }

    // A good reload and a refused one. The reload builds a new verifier,
    // with empty DNS caches.
    milter.rewrite_config(&scenario_config(store_dir.path()));
    milter.reloader.reload().await.expect("reload");
    std::fs::write(&milter.config_path, "dry_run = maybe\n").expect("break the config");
    assert!(milter.reloader.reload().await.is_err());
    let s = scrape(&milter).await;
    assert_eq!(
        s.get("dmarc_milter_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("dmarc_milter_config_reloads_total", &[("result", "failed")]),
        Some(1.0)
    );
    assert!(s.get("dmarc_milter_config_last_load_timestamp_seconds", &[]) >= Some(loaded));
    assert_eq!(s.sum("dmarc_milter_dns_cache_entries"), 0.0, "{}", s.text);

    // Closing every connection brings the gauge back to 0.
    for conn in conns {
        conn.close().await.expect("close");
    }
    wait_until("connections closed", async || {
        scrape(&milter)
            .await
            .get("dmarc_milter_connections_open", &[])
            == Some(0.0)
    })
    .await;
    milter.stop().await.expect("clean stop");
}

/// Only `GET` (and `HEAD`) of `/metrics`; without `metrics_listen` no
/// metrics are recorded and nothing listens.
#[tokio::test]
async fn the_endpoint_answers_only_metrics() {
    let dns = test_dns::TestDns::start(&demo_zone())
        .await
        .expect("test DNS");
    let milter = Milter::start_with_metrics(dns, "").await;
    let addr = milter.metrics_addr.expect("metrics served");
    let (status, _, _) = get(addr, "GET", "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, head, _) = get(addr, "POST", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(head.contains("allow: GET, HEAD"), "{head}");
    let (status, _, body) = get(addr, "HEAD", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "");
    milter.stop().await.expect("clean stop");
}

/// The report mails are counted from the store, where `dmarc-milter
/// report` (another process) queues and delivers them.
#[tokio::test]
async fn report_mails_in_the_store_are_counted() {
    use dmarc_report::store::{MessageKind, OutgoingMessage, SqliteStore, Store as _};
    let dir = TempDir::new("metrics-outbox");
    let db = dir.path().join("reports.db");
    let mut store = SqliteStore::open(&db).expect("create the store");
    for recipient in ["a@example.com", "b@example.com", "c@example.com"] {
        store
            .queue_message(&OutgoingMessage {
                kind: MessageKind::Failure,
                policy_domain: "example.com".to_string(),
                sender: "dmarc@mx.test.example".to_string(),
                recipient: recipient.to_string(),
                payload: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                created: 1_700_000_000,
            })
            .expect("queue");
    }
    let pending = store.pending_messages(0, 10).expect("pending");
    assert_eq!(pending.len(), 3);
    store.mark_sent(pending[0].id, 1_700_000_100).expect("sent");
    store
        .mark_failed(pending[1].id, "refused", true)
        .expect("abandoned");
    drop(store);

    let dns = test_dns::TestDns::start(&demo_zone())
        .await
        .expect("test DNS");
    let milter = Milter::start_with_metrics(dns, &scenario_config(dir.path())).await;
    let s = scrape(&milter).await;
    let counts = s.family("dmarc_milter_report_messages");
    let expected: BTreeMap<String, f64> = [
        ("kind=aggregate,state=abandoned", 0.0),
        ("kind=aggregate,state=pending", 0.0),
        ("kind=aggregate,state=sent", 0.0),
        ("kind=failure,state=abandoned", 1.0),
        ("kind=failure,state=pending", 1.0),
        ("kind=failure,state=sent", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, expected, "{}", s.text);
    milter.stop().await.expect("clean stop");
}
