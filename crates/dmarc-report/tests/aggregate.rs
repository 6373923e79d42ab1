//! RFC 9990 aggregate reports: grouping, determinism, escaping, the schema
//! (xmllint against the RFC 9990 XSD), the mail (Python's `email`), and a
//! real report consumer reading them back (parsedmarc).
//!
//! The external checks need `DMARC_CONFORMANCE_DIR`, `xmllint`, `python3`
//! and `parsedmarc`; see `tools/mod.rs`.

mod tools;

use dmarc_report::aggregate::{AggregateReport, ReportFormat, ReporterInfo, MAX_DKIM_PER_ROW};
use dmarc_report::model::{
    ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DkimWord, DmarcWord,
    EvaluationRecord, OverrideWord, PolicyOverride, PolicyWord, PublishedPolicy, ReportDestination,
    SpfAuth, SpfScopeWord, SpfWord,
};
use flate2::read::GzDecoder;
use serde_json::Value;
use std::io::Read;

/// 2024-07-15 00:00:00 UTC, one day.
const BEGIN: i64 = 1_721_001_600;
const END: i64 = BEGIN + 86_400;

fn reporter() -> ReporterInfo {
    ReporterInfo::new(
        "Example Receiver",
        "mx.example.net",
        "dmarc-reports@example.net",
    )
}

fn policy(domain: &str) -> PublishedPolicy {
    PublishedPolicy {
        domain: domain.to_string(),
        discovery_method: DiscoveryWord::TreeWalk,
        p: PolicyWord::Reject,
        sp: Some(PolicyWord::Quarantine),
        np: None,
        adkim: AlignmentWord::Relaxed,
        aspf: AlignmentWord::Strict,
        pct: 100,
        fo: "1".to_string(),
        testing: false,
        psd: false,
        rua: vec![ReportDestination {
            uri: "mailto:dmarc@example.com".to_string(),
            max_size: None,
        }],
        ruf: Vec::new(),
    }
}

fn spf(domain: &str, scope: SpfScopeWord, result: SpfWord) -> Option<SpfAuth> {
    Some(SpfAuth {
        domain: domain.to_string(),
        scope,
        result,
        human_result: None,
    })
}

fn dkim(domain: &str, selector: &str, result: DkimWord) -> DkimAuth {
    DkimAuth {
        domain: domain.to_string(),
        selector: selector.to_string(),
        result,
        human_result: None,
    }
}

/// A message of example.com that passed: DKIM and SPF aligned.
fn passing(ip: &str) -> EvaluationRecord {
    EvaluationRecord {
        time: BEGIN + 3_600,
        source_ip: ip.parse().unwrap(),
        header_from: "example.com".to_string(),
        envelope_from: Some("example.com".to_string()),
        envelope_to: Some("example.net".to_string()),
        policy: Some(policy("example.com")),
        dmarc: DmarcWord::Pass,
        disposition: ActionDisposition::Pass,
        dkim_aligned: AlignedWord::Pass,
        spf_aligned: AlignedWord::Pass,
        reasons: Vec::new(),
        spf: spf("example.com", SpfScopeWord::MailFrom, SpfWord::Pass),
        dkim: vec![dkim("example.com", "sel1", DkimWord::Pass)],
    }
}

/// A forgery of example.com, rejected.
fn forged(ip: &str) -> EvaluationRecord {
    EvaluationRecord {
        dmarc: DmarcWord::Fail,
        disposition: ActionDisposition::Reject,
        dkim_aligned: AlignedWord::Fail,
        spf_aligned: AlignedWord::Fail,
        envelope_from: Some("spoof.example".to_string()),
        spf: spf("spoof.example", SpfScopeWord::MailFrom, SpfWord::SoftFail),
        dkim: vec![DkimAuth {
            human_result: Some("body hash did not verify".to_string()),
            ..dkim("example.com", "sel1", DkimWord::Fail)
        }],
        ..passing(ip)
    }
}

fn build(records: &[EvaluationRecord]) -> AggregateReport {
    AggregateReport::build(
        &reporter(),
        "example.com",
        BEGIN,
        END,
        records,
        ReportFormat::Rfc9990,
    )
    .unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut xml = String::new();
    GzDecoder::new(bytes).read_to_string(&mut xml).unwrap();
    xml
}

#[test]
fn rows_group_messages_that_share_every_reported_fact() {
    let mut other_domain = passing("192.0.2.1");
    other_domain.policy = Some(policy("example.org"));
    let mut no_policy = passing("192.0.2.1");
    no_policy.policy = None;
    let mut other_envelope_to = passing("192.0.2.1");
    other_envelope_to.envelope_to = Some("example.org".to_string());
    let mut upper_case = passing("192.0.2.1");
    upper_case.header_from = "EXAMPLE.com".to_string();
    let records = vec![
        passing("192.0.2.1"),
        forged("198.51.100.7"),
        passing("192.0.2.1"),
        other_domain,
        passing("192.0.2.2"),
        no_policy,
        forged("198.51.100.7"),
        other_envelope_to,
        upper_case,
    ];
    let report = build(&records);
    let rows: Vec<(String, Option<String>, ActionDisposition, u64)> = report
        .rows()
        .map(|(row, count)| {
            (
                row.source_ip.to_string(),
                row.envelope_to.clone(),
                row.disposition,
                count,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "192.0.2.1".to_string(),
                Some("example.net".to_string()),
                ActionDisposition::Pass,
                3
            ),
            (
                "192.0.2.1".to_string(),
                Some("example.org".to_string()),
                ActionDisposition::Pass,
                1
            ),
            (
                "192.0.2.2".to_string(),
                Some("example.net".to_string()),
                ActionDisposition::Pass,
                1
            ),
            (
                "198.51.100.7".to_string(),
                Some("example.net".to_string()),
                ActionDisposition::Reject,
                2
            ),
        ]
    );
    assert_eq!(report.message_count(), 7);
    let xml = report.to_xml();
    assert_eq!(xml.matches("<record>").count(), 4);
    assert!(xml.contains("<count>3</count>"));
    assert!(!xml.contains("example.org</domain>"));
}

#[test]
fn no_report_without_records_of_the_domain() {
    let mut no_policy = passing("192.0.2.1");
    no_policy.policy = None;
    for records in [vec![], vec![no_policy], vec![passing("192.0.2.1")]] {
        assert!(AggregateReport::build(
            &reporter(),
            "example.org",
            BEGIN,
            END,
            &records,
            ReportFormat::Rfc9990
        )
        .is_none());
    }
    // The policy domain is compared without regard to case.
    assert!(AggregateReport::build(
        &reporter(),
        "EXAMPLE.COM",
        BEGIN,
        END,
        &[passing("192.0.2.1")],
        ReportFormat::Rfc9990
    )
    .is_some());
}

#[test]
fn the_same_records_give_the_same_bytes_in_any_order() {
    let mut records: Vec<EvaluationRecord> = (0..40)
        .map(|i| {
            if i % 3 == 0 {
                forged(&format!("198.51.100.{}", i % 7))
            } else {
                passing(&format!("2001:db8::{:x}", i % 5))
            }
        })
        .collect();
    let first = build(&records);
    records.reverse();
    records.rotate_left(13);
    let second = build(&records);
    assert_eq!(first.to_xml(), second.to_xml());
    assert_eq!(first.gzip(), second.gzip());
    assert_eq!(first.size_bytes(), first.gzip().len() as u64);
    assert_eq!(
        first.report_mail(
            "dmarc@example.net",
            "rua@example.com",
            END + 60,
            "example.net"
        ),
        second.report_mail(
            "dmarc@example.net",
            "rua@example.com",
            END + 60,
            "example.net"
        )
    );
    // The signatures' header order does not split a row.
    let mut a = passing("192.0.2.1");
    a.dkim = vec![
        dkim("example.com", "s1", DkimWord::Pass),
        dkim("esp.example", "s2", DkimWord::Pass),
    ];
    let mut b = a.clone();
    b.dkim.reverse();
    assert_eq!(build(&[a, b]).rows().count(), 1);
}

#[test]
fn policy_published_is_the_most_recent_policy() {
    let mut old = passing("192.0.2.1");
    old.time = BEGIN + 10;
    old.policy = Some(PublishedPolicy {
        p: PolicyWord::None,
        ..policy("example.com")
    });
    let mut new = passing("192.0.2.1");
    new.time = BEGIN + 20;
    new.policy = Some(PublishedPolicy {
        p: PolicyWord::Quarantine,
        np: Some(PolicyWord::Reject),
        testing: true,
        fo: "0:d".to_string(),
        ..policy("example.com")
    });
    for records in [vec![old.clone(), new.clone()], vec![new, old]] {
        let report = build(&records);
        assert_eq!(report.policy().p, PolicyWord::Quarantine);
        let xml = report.to_xml();
        assert!(xml.contains("<p>quarantine</p>"), "{xml}");
        assert!(xml.contains("<sp>quarantine</sp>"));
        assert!(xml.contains("<np>reject</np>"));
        assert!(xml.contains("<testing>y</testing>"));
        assert!(xml.contains("<fo>0:d</fo>"));
        assert!(xml.contains("<discovery_method>treewalk</discovery_method>"));
        assert!(xml.contains("<aspf>s</aspf>"));
    }
}

#[test]
fn identifiers_of_the_report_follow_rfc_9990() {
    let report = build(&[passing("192.0.2.1")]);
    let last = END - 1;
    assert_eq!(
        report.report_id(),
        format!("example.com!{BEGIN}!{last}@mx.example.net")
    );
    assert_eq!(
        report.file_name(),
        format!("mx.example.net!example.com!{BEGIN}!{last}.xml.gz")
    );
    assert_eq!(
        report.subject(),
        format!(
            "Report Domain: example.com\r\n Submitter: mx.example.net\r\n Report-ID: <example.com!{BEGIN}!{last}@mx.example.net>"
        )
    );
    let xml = report.to_xml();
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n  <version>1.0</version>\n"
    ));
    assert!(xml.contains(&format!(
        "<date_range>\n      <begin>{BEGIN}</begin>\n      <end>{last}</end>\n    </date_range>"
    )));
    assert!(xml.contains(&format!("<report_id>{}</report_id>", report.report_id())));
    assert!(xml.contains(&format!(
        "<generator>dmarc-milter {}</generator>",
        env!("CARGO_PKG_VERSION")
    )));
}

/// A record of every shape the schema has to accept.
fn shapes() -> Vec<(&'static str, Vec<EvaluationRecord>)> {
    let mut reasons = forged("203.0.113.9");
    reasons.disposition = ActionDisposition::None;
    reasons.reasons = vec![
        PolicyOverride {
            kind: OverrideWord::LocalPolicy,
            comment: Some("allow-listed sender".to_string()),
        },
        PolicyOverride {
            kind: OverrideWord::Other,
            comment: Some("sampled out by pct=50".to_string()),
        },
        PolicyOverride {
            kind: OverrideWord::PolicyTestMode,
            comment: None,
        },
        PolicyOverride {
            kind: OverrideWord::MailingList,
            comment: None,
        },
        PolicyOverride {
            kind: OverrideWord::TrustedForwarder,
            comment: None,
        },
    ];
    let mut no_auth = forged("203.0.113.10");
    no_auth.dkim = Vec::new();
    no_auth.spf = None;
    no_auth.envelope_from = None;
    no_auth.envelope_to = None;
    let mut helo = forged("203.0.113.11");
    helo.envelope_from = Some("mail.spoof.example".to_string());
    helo.spf = spf("mail.spoof.example", SpfScopeWord::Helo, SpfWord::Pass);
    let mut empty_selector = forged("203.0.113.12");
    empty_selector.dkim = vec![
        dkim("example.com", "", DkimWord::PermError),
        dkim("example.com", "s", DkimWord::TempError),
        dkim("example.com", "s", DkimWord::Neutral),
        dkim("example.com", "s", DkimWord::Policy),
    ];
    empty_selector.spf = spf("example.com", SpfScopeWord::MailFrom, SpfWord::PermError);
    let mut quarantined = forged("203.0.113.13");
    quarantined.disposition = ActionDisposition::Quarantine;
    let ipv6 = vec![
        passing("2001:db8::25"),
        passing("::ffff:192.0.2.77"),
        forged("2001:db8:ffff::1"),
    ];
    let many: Vec<EvaluationRecord> = (0..600)
        .map(|i| match i % 4 {
            0 => forged(&format!("198.51.100.{}", i % 250)),
            1 => passing(&format!("192.0.2.{}", i % 250)),
            2 => passing(&format!("2001:db8::{:x}", i)),
            _ => quarantined.clone(),
        })
        .collect();
    vec![
        ("pass", vec![passing("192.0.2.1")]),
        ("reasons", vec![reasons]),
        ("no-auth", vec![no_auth]),
        ("helo", vec![helo]),
        ("dkim-results", vec![empty_selector]),
        ("quarantine", vec![quarantined]),
        ("ipv6", ipv6),
        ("many", many),
        ("hostile", vec![hostile()]),
    ]
}

/// Strings from the network that try to break the document.
fn hostile() -> EvaluationRecord {
    let mut record = forged("192.0.2.66");
    record.header_from = "example.com".to_string();
    record.envelope_from = Some("a<b>&c\"d'e]]>.example".to_string());
    record.envelope_to = Some("</envelope_to><injected/>".to_string());
    record.spf = Some(SpfAuth {
        human_result: Some("exp=<script>&amp;\u{7}\u{fffe}\u{ffff}\u{85}".to_string()),
        ..spf("x&y.example", SpfScopeWord::MailFrom, SpfWord::Fail).unwrap()
    });
    record.dkim = vec![
        DkimAuth {
            human_result: Some("<![CDATA[ x ]]> \u{1f600} caf\u{e9}".to_string()),
            ..dkim("example.com", "sel<\"'>", DkimWord::Fail)
        },
        // A selector with control characters is not a selector.
        dkim("example.org", "s\u{0}\u{1b}[2J", DkimWord::Fail),
    ];
    record.reasons = vec![PolicyOverride {
        kind: OverrideWord::Other,
        comment: Some("--> <!-- &#0; \u{b}".to_string()),
    }];
    record
}

#[test]
fn every_shape_validates_against_the_rfc9990_schema() {
    let dir = tempfile::tempdir().unwrap();
    for (name, records) in shapes() {
        let xml = build(&records).to_xml();
        if !tools::validate_rfc9990(dir.path(), &format!("{name}.xml"), &xml) {
            return;
        }
    }
}

#[test]
fn the_rfc9990_shapes_hold_what_was_recorded() {
    let shapes = shapes();
    let xml = |name: &str| {
        let (_, records) = shapes.iter().find(|(n, _)| *n == name).unwrap();
        build(records).to_xml()
    };
    let helo = xml("helo");
    assert!(helo.contains("<domain>mail.spoof.example</domain>\n        <result>pass</result>"));
    assert!(!helo.contains("<scope>"), "{helo}");
    let pass = xml("pass");
    assert!(pass.contains("<scope>mfrom</scope>"));
    assert!(pass.contains("<disposition>pass</disposition>"));
    let no_auth = xml("no-auth");
    assert!(
        no_auth.contains("<auth_results>\n    </auth_results>"),
        "{no_auth}"
    );
    assert!(!no_auth.contains("<envelope_from>"));
    let results = xml("dkim-results");
    assert!(results.contains("<selector></selector>"));
    for word in ["permerror", "temperror", "neutral", "policy"] {
        assert!(
            results.contains(&format!("<result>{word}</result>")),
            "{word}"
        );
    }
    let reasons = xml("reasons");
    assert!(reasons.contains(
        "<reason>\n          <type>local_policy</type>\n          <comment>allow-listed sender</comment>\n        </reason>"
    ));
    assert!(reasons.contains("<type>policy_test_mode</type>"));
    let ipv6 = xml("ipv6");
    assert!(ipv6.contains("<source_ip>2001:db8::25</source_ip>"));
    assert!(ipv6.contains("<source_ip>192.0.2.77</source_ip>"), "{ipv6}");
    let (_, many) = shapes.iter().find(|(n, _)| *n == "many").unwrap();
    let distinct: std::collections::HashSet<_> =
        many.iter().map(|r| (r.source_ip, r.disposition)).collect();
    assert!(distinct.len() > 300);
    assert_eq!(xml("many").matches("<record>").count(), distinct.len());
}

#[test]
fn hostile_strings_are_escaped_and_the_document_stays_valid() {
    let xml = build(&[hostile()]).to_xml();
    assert!(
        xml.contains("<envelope_from>a&lt;b&gt;&amp;c&quot;d&apos;e]]&gt;.example</envelope_from>")
    );
    assert!(xml.contains("<envelope_to>&lt;/envelope_to&gt;&lt;injected/&gt;</envelope_to>"));
    assert!(xml.contains(
        "<human_result>exp=&lt;script&gt;&amp;amp;\u{fffd}\u{fffd}\u{fffd}\u{fffd}</human_result>"
    ));
    assert!(xml.contains("<selector>sel&lt;&quot;&apos;&gt;</selector>"));
    assert!(
        xml.contains("<domain>example.org</domain>\n        <selector></selector>"),
        "{xml}"
    );
    assert!(xml.contains("&lt;![CDATA[ x ]]&gt; \u{1f600} caf\u{e9}"));
    assert!(xml.contains("<comment>--&gt; &lt;!-- &amp;#0; \u{fffd}</comment>"));
    assert!(!xml.contains("<injected"));
    assert!(!xml.chars().any(|c| c.is_control() && c != '\n'));
    let dir = tempfile::tempdir().unwrap();
    if tools::well_formed(dir.path(), "hostile.xml", &xml) {
        tools::validate_rfc9990(dir.path(), "hostile.xml", &xml);
    }
}

#[test]
fn dkim_results_are_ordered_by_preference_and_capped() {
    let mut record = forged("192.0.2.1");
    record.dkim = (0..150)
        .map(|i| dkim(&format!("d{i}.example"), "s", DkimWord::Fail))
        .collect();
    record.dkim.push(dkim("esp.example", "s", DkimWord::Pass));
    record
        .dkim
        .push(dkim("mail.example.com", "s", DkimWord::Pass));
    record.dkim.push(dkim("example.com", "s", DkimWord::Pass));
    let report = build(&[record]);
    let (row, _) = report.rows().next().unwrap();
    assert_eq!(row.dkim.len(), MAX_DKIM_PER_ROW);
    let first: Vec<&str> = row.dkim.iter().take(3).map(|d| d.domain.as_str()).collect();
    assert_eq!(first, ["example.com", "mail.example.com", "esp.example"]);
}

#[test]
fn the_rfc7489_format_follows_the_old_schema() {
    let shapes = shapes();
    for (name, records) in &shapes {
        let report = AggregateReport::build(
            &reporter(),
            "example.com",
            BEGIN,
            END,
            records,
            ReportFormat::Rfc7489,
        )
        .unwrap();
        let xml = report.to_xml();
        assert!(
            xml.contains("\n<feedback>\n  <report_metadata>"),
            "{name}: {xml}"
        );
        for absent in [
            "xmlns",
            "<version>",
            "<generator>",
            "<np>",
            "<testing>",
            "<discovery_method>",
            "<disposition>pass",
            "<type>policy_test_mode",
            "<human_result>exp",
        ] {
            assert!(!xml.contains(absent), "{name}: {absent} in {xml}");
        }
        assert!(xml.contains("<pct>100</pct>"));
        assert!(xml.contains("<sp>quarantine</sp>"));
        assert!(xml.contains("<fo>1</fo>"));
        assert_eq!(
            xml.matches("<record>").count(),
            xml.matches("<envelope_from>").count(),
            "{name}: envelope_from is required"
        );
        assert_eq!(
            xml.matches("<record>").count(),
            xml.matches("<spf>\n").count(),
            "{name}: an SPF result is required"
        );
        assert_eq!(
            xml.matches("<spf>\n").count(),
            xml.matches("<scope>").count(),
            "{name}: the SPF scope is required"
        );
        let dir = tempfile::tempdir().unwrap();
        if !tools::well_formed(dir.path(), "rfc7489.xml", &xml) {
            return;
        }
    }
    let reasons = &shapes.iter().find(|(n, _)| *n == "reasons").unwrap().1;
    let xml = AggregateReport::build(
        &reporter(),
        "example.com",
        BEGIN,
        END,
        reasons,
        ReportFormat::Rfc7489,
    )
    .unwrap()
    .to_xml();
    assert!(xml.contains("<type>sampled_out</type>"));
    assert!(xml.contains("<type>other</type>\n          <comment>policy_test_mode</comment>"));
    let helo = &shapes.iter().find(|(n, _)| *n == "helo").unwrap().1;
    let xml = AggregateReport::build(
        &reporter(),
        "example.com",
        BEGIN,
        END,
        helo,
        ReportFormat::Rfc7489,
    )
    .unwrap()
    .to_xml();
    assert!(xml.contains("<scope>helo</scope>"));
}

/// A row as parsedmarc and we see it: source IP, count, disposition,
/// aligned DKIM and SPF, DKIM and SPF results as `domain/result`.
type RowSummary = (
    String,
    u64,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
);

/// The rows parsedmarc read, as comparable tuples.
fn parsed_rows(report: &Value) -> Vec<RowSummary> {
    let mut rows: Vec<_> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let evaluated = &record["policy_evaluated"];
            let results = |kind: &str| -> Vec<String> {
                record["auth_results"][kind]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        format!(
                            "{}/{}",
                            r["domain"].as_str().unwrap(),
                            r["result"].as_str().unwrap()
                        )
                    })
                    .collect()
            };
            (
                record["source"]["ip_address"].as_str().unwrap().to_string(),
                record["count"].as_u64().unwrap(),
                evaluated["disposition"].as_str().unwrap().to_string(),
                evaluated["dkim"].as_str().unwrap().to_string(),
                evaluated["spf"].as_str().unwrap().to_string(),
                results("dkim"),
                results("spf"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The same tuples from our report.
fn our_rows(report: &AggregateReport) -> Vec<RowSummary> {
    let mut rows: Vec<_> = report
        .rows()
        .map(|(row, count)| {
            let disposition = match (report.format(), row.disposition) {
                (ReportFormat::Rfc7489, ActionDisposition::Pass) => ActionDisposition::None,
                (_, disposition) => disposition,
            };
            let spf = match (&row.spf, report.format()) {
                (Some(spf), _) => vec![format!("{}/{}", spf.domain, spf.result)],
                (None, ReportFormat::Rfc9990) => Vec::new(),
                (None, ReportFormat::Rfc7489) => vec![format!(
                    "{}/none",
                    row.envelope_from.clone().unwrap_or_default()
                )],
            };
            (
                row.source_ip.to_string(),
                count,
                disposition.to_string(),
                row.dkim_aligned.to_string(),
                row.spf_aligned.to_string(),
                row.dkim
                    .iter()
                    .map(|d| format!("{}/{}", d.domain, d.result))
                    .collect(),
                spf,
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn parsedmarc_reads_back_the_gzip_file_and_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<EvaluationRecord> = shapes()
        .into_iter()
        .filter(|(name, _)| *name != "hostile" && *name != "no-auth")
        .flat_map(|(_, records)| records)
        .collect();
    // parsedmarc drops DKIM results without a domain and SPF results of
    // rows without one; every shape above has them except "no-auth".
    records.truncate(400);
    for format in [ReportFormat::Rfc9990, ReportFormat::Rfc7489] {
        let report =
            AggregateReport::build(&reporter(), "example.com", BEGIN, END, &records, format)
                .unwrap();
        let gz = dir.path().join(report.file_name());
        std::fs::write(&gz, report.gzip()).unwrap();
        let eml = dir.path().join("report.eml");
        std::fs::write(
            &eml,
            report.report_mail(
                "DMARC Reports <dmarc@example.net>",
                "dmarc@example.com",
                END + 3_600,
                "example.net",
            ),
        )
        .unwrap();
        for path in [&gz, &eml] {
            let Some(parsed) = tools::python(tools::PARSEDMARC, &["parsedmarc"], &[path]) else {
                return;
            };
            assert_eq!(parsed["report_type"], "aggregate", "{}", path.display());
            let parsed = &parsed["report"];
            let metadata = &parsed["report_metadata"];
            assert_eq!(metadata["org_email"], "dmarc-reports@example.net");
            // parsedmarc keeps the part of the report_id before the "@".
            assert_eq!(
                metadata["report_id"].as_str().unwrap(),
                report.report_id().split('@').next().unwrap()
            );
            assert_eq!(metadata["begin_date"], "2024-07-15 00:00:00");
            assert_eq!(metadata["end_date"], "2024-07-15 23:59:59");
            assert_eq!(metadata["errors"], serde_json::json!([]));
            let published = &parsed["policy_published"];
            assert_eq!(published["domain"], "example.com");
            assert_eq!(published["p"], "reject");
            assert_eq!(published["sp"], "quarantine");
            assert_eq!(published["aspf"], "s");
            match format {
                ReportFormat::Rfc9990 => {
                    assert_eq!(parsed["xml_namespace"], "urn:ietf:params:xml:ns:dmarc-2.0");
                    assert_eq!(published["np"], "quarantine");
                    assert_eq!(published["discovery_method"], "treewalk");
                    assert_eq!(
                        metadata["generator"],
                        format!("dmarc-milter {}", env!("CARGO_PKG_VERSION"))
                    );
                }
                ReportFormat::Rfc7489 => {
                    assert_eq!(parsed["xml_namespace"], Value::Null);
                    assert_eq!(published["pct"], "100");
                    assert_eq!(published["np"], Value::Null);
                }
            }
            assert_eq!(parsed_rows(parsed), our_rows(&report), "{}", path.display());
            let total: u64 = parsed["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["count"].as_u64().unwrap())
                .sum();
            assert_eq!(total, records.len() as u64);
        }
    }
}

#[test]
fn the_report_mail_is_well_formed_mime() {
    let report = build(&[passing("192.0.2.1"), forged("198.51.100.7"), hostile()]);
    let mail = report.report_mail(
        "DMARC Reports <dmarc@example.net>",
        "dmarc@example.com\r\nBcc: victim@example.org",
        END + 3_600,
        "example.net",
    );
    // CRLF everywhere, no line over 998 octets.
    let text = String::from_utf8(mail.clone()).unwrap();
    assert!(text.is_ascii());
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
    assert!(text.split("\r\n").all(|line| line.len() <= 998));
    assert!(text.contains("\r\nDate: Tue, 16 Jul 2024 01:00:00 +0000\r\n"));
    assert!(text.contains("\r\nMIME-Version: 1.0\r\n"));
    // A CR LF in the recipient stays inside the To field.
    assert!(text.contains("\r\nTo: dmarc@example.com  Bcc: victim@example.org\r\n"));

    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("report.eml");
    std::fs::write(&eml, &mail).unwrap();
    let Some(parsed) = tools::python(tools::EMAIL_STRUCTURE, &[], &[&eml]) else {
        return;
    };
    assert_eq!(parsed["content_type"], "multipart/mixed");
    assert_eq!(parsed["defects"], serde_json::json!([]));
    let headers: Vec<(String, String)> = parsed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Auto-Submitted",
            "Content-Type"
        ]
    );
    let subject = &headers[2].1;
    assert_eq!(
        subject,
        &format!(
            "Report Domain: example.com Submitter: mx.example.net Report-ID: <{}>",
            report.report_id()
        )
    );
    let parts = parsed["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert!(parts[0]["payload"]
        .as_str()
        .unwrap()
        .contains("Report Domain: example.com"));
    assert_eq!(parts[1]["content_type"], "application/gzip");
    assert_eq!(parts[1]["filename"], report.file_name().as_str());
    assert_eq!(parts[1]["defects"], serde_json::json!([]));
    let gz: Vec<u8> = parts[1]["payload"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    assert_eq!(gz, report.gzip());
    assert_eq!(gunzip(&gz), report.to_xml());
}

/// A verdict as the verifier gives it for a message from example.com
/// (`p=reject`) that failed DMARC and was let through by an override of an
/// indirect mail flow.
fn overridden_verdict(
    reason: dmarc_verifier::OverrideReason,
    comment: &str,
    disposition: dmarc_verifier::Disposition,
) -> dmarc_verifier::Verdict {
    use dmarc_verifier::{
        arc::ArcCheck,
        policy::{apply_pct_and_t, PolicySource},
        DiscoveryMethod, DkimCheck, DkimResult, DmarcRecord, DmarcResult, Evaluation, PctMode,
        Policy, SpfCheck, SpfResult, SpfScope, Verdict,
    };
    let record = DmarcRecord::parse("v=DMARC1; p=reject").unwrap();
    let evaluation = Evaluation {
        author_domain: "example.com".into(),
        result: DmarcResult::Fail,
        discovery: DiscoveryMethod::Psl,
        policy_domain: Some("example.com".into()),
        org_domain: Some("example.com".into()),
        record: Some(std::sync::Arc::new(record)),
        policy: Some(apply_pct_and_t(
            Policy::Reject,
            PolicySource::P,
            100,
            false,
            PctMode::Honor,
            0,
        )),
        spf_alignment: None,
        dkim_alignments: vec![None],
        spf_aligned: false,
        dkim_aligned: false,
        disposition,
        override_reason: Some(reason),
        override_comment: Some(comment.into()),
        reason: None,
        dns_failure: None,
    };
    Verdict {
        spf: SpfCheck {
            result: SpfResult::Fail,
            domain: "lists.example.org".into(),
            scope: SpfScope::MailFrom,
            reason: None,
            record: None,
        },
        dkim: vec![DkimCheck {
            result: DkimResult::Fail,
            domain: "example.com".into(),
            selector: "s1".into(),
            algorithm: "rsa-sha256".into(),
            key_bits: None,
            b_prefix: "abcdefgh".into(),
            reason: Some("body hash did not verify".into()),
            body_hash: Some(false),
        }],
        arc: ArcCheck::none(),
        author_domains: Ok(vec!["example.com".into()]),
        evaluations: vec![evaluation],
        decisive: Some(0),
        dmarc: DmarcResult::Fail,
        disposition,
        override_reason: Some(reason),
        override_comment: Some(comment.into()),
        authentication_results: String::new(),
        trail: Vec::new(),
        shadow: Vec::new(),
    }
}

#[test]
fn override_reasons_of_indirect_flows_reach_the_report_with_their_comment() {
    use dmarc_verifier::{Disposition, Envelope, OverrideReason};
    let cases = [
        (
            OverrideReason::TrustedForwarder,
            "arc=pass i=1 sealer=lists.example.org",
            Disposition::Accept,
            "198.51.100.7",
            "trusted_forwarder",
        ),
        (
            OverrideReason::MailingList,
            "list-id=dev.lists.example.org dkim=pass header.d=lists.example.org",
            Disposition::Quarantine,
            "198.51.100.8",
            "mailing_list",
        ),
        (
            OverrideReason::LocalPolicy,
            "policy_override from_domain=example.com action=quarantine",
            Disposition::Quarantine,
            "198.51.100.9",
            "local_policy",
        ),
    ];
    let mut records = Vec::new();
    for (reason, comment, disposition, ip, _) in &cases {
        let verdict = overridden_verdict(*reason, comment, *disposition);
        let envelope = Envelope::new(
            ip.parse().unwrap(),
            "mail.lists.example.org",
            "b@lists.example.org",
        );
        let mut from = EvaluationRecord::from_verdict(
            &verdict,
            &envelope,
            BEGIN + 60,
            &dmarc_report::model::RecordOptions::default(),
            None,
        )
        .records;
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0].reasons,
            vec![PolicyOverride {
                kind: reason.as_str().parse().unwrap(),
                comment: Some(comment.to_string()),
            }]
        );
        records.append(&mut from);
    }
    let dir = tempfile::tempdir().unwrap();
    for format in [ReportFormat::Rfc9990, ReportFormat::Rfc7489] {
        let report =
            AggregateReport::build(&reporter(), "example.com", BEGIN, END, &records, format)
                .unwrap();
        let xml = report.to_xml();
        for (_, comment, _, _, word) in &cases {
            assert!(
                xml.contains(&format!(
                    "<reason>\n          <type>{word}</type>\n          <comment>{comment}</comment>\n        </reason>"
                )),
                "{xml}"
            );
        }
        if format == ReportFormat::Rfc9990
            && !tools::validate_rfc9990(dir.path(), "overrides.xml", &xml)
        {
            return;
        }
        let gz = dir.path().join(report.file_name());
        std::fs::write(&gz, report.gzip()).unwrap();
        let Some(parsed) = tools::python(tools::PARSEDMARC, &["parsedmarc"], &[&gz]) else {
            return;
        };
        let mut seen: Vec<(String, String)> = parsed["report"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["policy_evaluated"]["policy_override_reasons"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|r| {
                (
                    r["type"].as_str().unwrap_or_default().to_string(),
                    r["comment"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        seen.sort();
        let mut expected: Vec<(String, String)> = cases
            .iter()
            .map(|(_, comment, _, _, word)| (word.to_string(), comment.to_string()))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{}", parsed);
    }
}
