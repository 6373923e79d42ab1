//! RFC 9991 failure reports: when `fo` asks for one, and the AFRF message
//! (RFC 6591) read back by Python's `email` module and by parsedmarc.

mod tools;

use dmarc_report::failure::{
    requested_failure_reports, wants_failure_report, AuthFacts, AuthFailure, FailureConfig,
    FailureInput, FailureOptions, FailureReport, SampleKind,
};
use dmarc_report::model::{
    ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DkimWord, DmarcWord,
    EvaluationRecord, PolicyWord, PublishedPolicy, ReportDestination, SpfAuth, SpfScopeWord,
    SpfWord,
};
use serde_json::Value;

/// 2024-07-15 10:00:00 UTC.
const TIME: i64 = 1_721_037_600;

fn policy(fo: &str) -> PublishedPolicy {
    PublishedPolicy {
        domain: "example.com".to_string(),
        discovery_method: DiscoveryWord::TreeWalk,
        p: PolicyWord::Reject,
        sp: None,
        np: None,
        adkim: AlignmentWord::Relaxed,
        aspf: AlignmentWord::Relaxed,
        pct: 100,
        fo: fo.to_string(),
        testing: false,
        psd: false,
        rua: Vec::new(),
        ruf: vec![ReportDestination {
            uri: "mailto:ruf@example.com".to_string(),
            max_size: None,
        }],
    }
}

fn dkim(domain: &str, result: DkimWord) -> DkimAuth {
    DkimAuth {
        domain: domain.to_string(),
        selector: "sel1".to_string(),
        result,
        human_result: None,
    }
}

fn spf(domain: &str, result: SpfWord) -> SpfAuth {
    SpfAuth {
        domain: domain.to_string(),
        scope: SpfScopeWord::MailFrom,
        result,
        human_result: None,
    }
}

/// A forgery of example.com from 198.51.100.7, rejected: the signature of
/// example.com fails, SPF of the bounce domain soft-fails.
fn forged(fo: &str) -> EvaluationRecord {
    EvaluationRecord {
        time: TIME,
        source_ip: "198.51.100.7".parse().unwrap(),
        header_from: "example.com".to_string(),
        envelope_from: Some("example.com".to_string()),
        envelope_to: Some("example.net".to_string()),
        policy: Some(policy(fo)),
        dmarc: DmarcWord::Fail,
        disposition: ActionDisposition::Reject,
        dkim_aligned: AlignedWord::Fail,
        spf_aligned: AlignedWord::Fail,
        reasons: Vec::new(),
        spf: Some(spf("example.com", SpfWord::SoftFail)),
        dkim: vec![dkim("example.com", DkimWord::Fail)],
    }
}

/// `fo`, the DKIM results, the SPF result, aligned DKIM and SPF, and the
/// reports expected.
type FoCase = (
    &'static str,
    Vec<DkimAuth>,
    Option<SpfWord>,
    AlignedWord,
    AlignedWord,
    Vec<AuthFailure>,
);

#[test]
fn fo_matrix() {
    use AlignedWord::{Fail as F, Pass as P};
    use AuthFailure::{Dmarc, Signature, Spf};
    let signed = |result| vec![dkim("example.com", result)];
    let esp_failed = vec![
        dkim("example.com", DkimWord::Pass),
        dkim("esp.example", DkimWord::Fail),
    ];
    #[rustfmt::skip]
    let cases: Vec<FoCase> = vec![
        // fo   dkim results                  spf result              dkim spf  reports
        ("0",   signed(DkimWord::Fail),       Some(SpfWord::Fail),     F,   F,   vec![Dmarc]),
        ("0",   signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![]),
        ("0",   signed(DkimWord::Fail),       Some(SpfWord::Pass),     F,   P,   vec![]),
        ("0",   vec![],                       None,                    F,   F,   vec![Dmarc]),
        ("1",   signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![Dmarc]),
        ("1",   signed(DkimWord::Fail),       Some(SpfWord::Pass),     F,   P,   vec![Dmarc]),
        ("1",   signed(DkimWord::Pass),       Some(SpfWord::Pass),     P,   P,   vec![]),
        // d: a failed signature, aligned or not, whatever DMARC says.
        ("d",   esp_failed.clone(),           Some(SpfWord::Pass),     P,   P,   vec![Signature]),
        ("d",   signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![]),
        ("d",   vec![],                       Some(SpfWord::Fail),     F,   F,   vec![]),
        ("d",   signed(DkimWord::TempError),  None,                    F,   F,   vec![Signature]),
        ("d",   signed(DkimWord::PermError),  None,                    F,   F,   vec![Signature]),
        ("d",   signed(DkimWord::Neutral),    None,                    F,   F,   vec![Signature]),
        ("d",   signed(DkimWord::None),       None,                    F,   F,   vec![]),
        // s: SPF failed, aligned or not.
        ("s",   signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![Spf]),
        ("s",   signed(DkimWord::Pass),       Some(SpfWord::SoftFail), P,   F,   vec![Spf]),
        ("s",   signed(DkimWord::Pass),       Some(SpfWord::PermError),P,   F,   vec![Spf]),
        ("s",   signed(DkimWord::Pass),       Some(SpfWord::Neutral),  P,   F,   vec![]),
        ("s",   signed(DkimWord::Pass),       Some(SpfWord::None),     P,   F,   vec![]),
        ("s",   signed(DkimWord::Fail),       None,                    F,   F,   vec![]),
        ("s",   signed(DkimWord::Fail),       Some(SpfWord::Pass),     F,   P,   vec![]),
        // Combinations, each report at most once, in a fixed order.
        ("0:d:s", signed(DkimWord::Fail),     Some(SpfWord::Fail),     F,   F,   vec![Dmarc, Signature, Spf]),
        ("s:d:1", signed(DkimWord::Fail),     Some(SpfWord::Fail),     F,   F,   vec![Dmarc, Signature, Spf]),
        ("0:1", signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![Dmarc]),
        ("0:1", signed(DkimWord::Fail),       Some(SpfWord::Fail),     F,   F,   vec![Dmarc]),
        (" 1 : D ", esp_failed.clone(),       Some(SpfWord::Fail),     P,   F,   vec![Dmarc, Signature]),
        // Absent or unknown: the default 0.
        ("",    signed(DkimWord::Fail),       Some(SpfWord::Fail),     F,   F,   vec![Dmarc]),
        ("x:2", signed(DkimWord::Fail),       Some(SpfWord::Fail),     F,   F,   vec![Dmarc]),
        ("x:2", signed(DkimWord::Pass),       Some(SpfWord::Fail),     P,   F,   vec![]),
    ];
    for (fo, dkim, spf_result, dkim_aligned, spf_aligned, expected) in cases {
        let spf = spf_result.map(|result| spf("example.com", result));
        let facts = AuthFacts {
            dkim: &dkim,
            spf: spf.as_ref(),
            dkim_aligned,
            spf_aligned,
        };
        assert_eq!(
            FailureOptions::parse(fo).requests(&facts),
            expected,
            "fo={fo:?} dkim={dkim:?} spf={spf:?} aligned dkim={dkim_aligned} spf={spf_aligned}"
        );
    }
}

#[test]
fn the_record_decides_whether_reports_may_be_sent() {
    assert_eq!(
        requested_failure_reports(&forged("1")),
        [AuthFailure::Dmarc]
    );
    assert!(wants_failure_report(&forged("0")));

    // RFC 9991 §2: never for a psd=y record.
    let mut psd = forged("1");
    psd.policy.as_mut().unwrap().psd = true;
    assert!(!wants_failure_report(&psd));
    // fo is ignored without ruf.
    let mut no_ruf = forged("1");
    no_ruf.policy.as_mut().unwrap().ruf.clear();
    assert!(!wants_failure_report(&no_ruf));
    // No policy, or an evaluation that did not conclude.
    let mut no_policy = forged("1");
    no_policy.policy = None;
    assert!(!wants_failure_report(&no_policy));
    for dmarc in [DmarcWord::TempError, DmarcWord::PermError, DmarcWord::None] {
        let mut record = forged("1");
        record.dmarc = dmarc;
        assert!(!wants_failure_report(&record), "{dmarc}");
    }
    // A pass with fo=0 is no failure.
    let mut pass = forged("0");
    pass.dmarc = DmarcWord::Pass;
    pass.dkim_aligned = AlignedWord::Pass;
    assert!(!wants_failure_report(&pass));
}

const HEADERS: &[u8] = b"Received: from mail.spoof.example (mail.spoof.example [198.51.100.7])\r\n\
\tby mx.example.net with ESMTP id 4AE9D403CC\r\n\
\tfor <alice@example.net>; Mon, 15 Jul 2024 10:00:00 +0000\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel1; i=ceo@example.com;\r\n\
\th=From:To:Subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n\
From: \"The CEO\" <ceo@example.com>\r\n\
To: alice@example.net\r\n\
Subject: Urgent wire transfer\r\n\
Message-ID: <20240715100000.12345@spoof.example>\r\n\
Date: Mon, 15 Jul 2024 10:00:00 +0000\r\n\
\r\n";

const BODY: &[u8] = b"Hello alice@example.net,\r\nplease pay at https://pay.spoof.example/now\r\n";

fn mail(report: &FailureReport) -> Vec<u8> {
    report.report_mail(
        "DMARC Failure Reports <dmarc-ruf@example.net>",
        "ruf@example.com",
        TIME + 5,
        "example.net",
    )
}

/// `(name, value)` pairs of a JSON header list.
fn pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn structure(mail: &[u8]) -> Option<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failure.eml");
    std::fs::write(&path, mail).unwrap();
    tools::python(tools::EMAIL_STRUCTURE, &[], &[&path])
}

#[test]
fn the_report_is_a_well_formed_afrf_message() {
    let record = forged("1");
    let input = FailureInput {
        mail_from: Some("bounce@example.com"),
        envelope_id: Some("4AE9D403CC"),
        ..FailureInput::new(&record, AuthFailure::Dmarc, HEADERS)
    };
    let report = FailureReport::build(&input, &FailureConfig::new("mx.example.net"));
    assert_eq!(report.sample_kind(), SampleKind::Headers);
    assert_eq!(
        report.subject(),
        "DMARC failure report for example.com from 198.51.100.7"
    );
    let mail = mail(&report);
    let text = String::from_utf8(mail.clone()).unwrap();
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
    assert!(text.contains(
        "\r\nContent-Type: multipart/report; report-type=feedback-report;\r\n boundary="
    ));
    assert_eq!(
        report.feedback_report(),
        format!(
            "Feedback-Type: auth-failure\r\n\
         Version: 1\r\n\
         User-Agent: dmarc-milter/{}\r\n\
         Auth-Failure: dmarc\r\n\
         Authentication-Results: mx.example.net;\r\n\
         \tdmarc=fail header.from=example.com;\r\n\
         \tspf=softfail smtp.mailfrom=example.com;\r\n\
         \tdkim=fail header.d=example.com header.s=sel1\r\n\
         Identity-Alignment: dkim, spf\r\n\
         DKIM-Domain: example.com\r\n\
         DKIM-Identity: @example.com\r\n\
         DKIM-Selector: sel1\r\n\
         Original-Envelope-Id: 4AE9D403CC\r\n\
         Original-Mail-From: <redacted1@example.com>\r\n\
         Arrival-Date: Mon, 15 Jul 2024 10:00:00 +0000\r\n\
         Source-IP: 198.51.100.7\r\n\
         Reported-Domain: example.com\r\n\
         Delivery-Result: reject\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    let Some(parsed) = structure(&mail) else {
        return;
    };
    assert_eq!(parsed["content_type"], "multipart/report");
    assert_eq!(parsed["params"]["report-type"], "feedback-report");
    assert_eq!(parsed["defects"], serde_json::json!([]));
    let parts = parsed["parts"].as_array().unwrap();
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/feedback-report",
            "text/rfc822-headers"
        ]
    );
    let fields = pairs(&parts[1]["sub_headers"]);
    assert_eq!(field(&fields, "Feedback-Type"), Some("auth-failure"));
    assert_eq!(field(&fields, "Auth-Failure"), Some("dmarc"));
    assert_eq!(field(&fields, "Identity-Alignment"), Some("dkim, spf"));
    assert_eq!(field(&fields, "Source-IP"), Some("198.51.100.7"));
    let sample = parts[2]["payload"].as_str().unwrap();
    assert!(sample.starts_with("Received: from mail.spoof.example"));
    assert!(sample.contains("Subject: Urgent wire transfer\r\n"));
    assert!(!sample.contains("Hello"));

    // parsedmarc reads it as a DMARC failure report.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failure.eml");
    std::fs::write(&path, &mail).unwrap();
    let Some(parsed) = tools::python(tools::PARSEDMARC, &["parsedmarc"], &[&path]) else {
        return;
    };
    assert_eq!(parsed["report_type"], "failure");
    let report = &parsed["report"];
    assert_eq!(report["feedback_type"], "auth-failure");
    assert_eq!(report["auth_failure"], serde_json::json!(["dmarc"]));
    assert_eq!(
        report["authentication_mechanisms"],
        serde_json::json!(["dkim", "spf"])
    );
    assert_eq!(report["reported_domain"], "example.com");
    assert_eq!(report["source"]["ip_address"], "198.51.100.7");
    assert_eq!(report["original_mail_from"], "<redacted1@example.com>");
    assert_eq!(report["dkim_domain"], "example.com");
    assert_eq!(report["delivery_result"], "reject");
    assert_eq!(report["arrival_date_utc"], "2024-07-15 10:00:00");
    assert_eq!(report["sample_headers_only"], true);
    assert_eq!(report["parsed_sample"]["subject"], "Urgent wire transfer");
}

#[test]
fn dkim_and_spf_reports_carry_their_mechanism_fields() {
    let mut record = forged("d:s");
    record.dkim = vec![
        dkim("example.com", DkimWord::Pass),
        DkimAuth {
            selector: "esp2024".to_string(),
            ..dkim("esp.example", DkimWord::PermError)
        },
    ];
    record.dkim_aligned = AlignedWord::Pass;
    record.dmarc = DmarcWord::Pass;
    assert_eq!(
        requested_failure_reports(&record),
        [AuthFailure::Signature, AuthFailure::Spf]
    );
    let config = FailureConfig::new("mx.example.net");
    let signature = FailureReport::build(
        &FailureInput::new(&record, AuthFailure::Signature, HEADERS),
        &config,
    );
    let fields = signature.feedback_report();
    assert!(fields.contains("\r\nAuth-Failure: signature\r\n"));
    assert!(fields.contains(
        "\r\nDKIM-Domain: esp.example\r\nDKIM-Identity: @esp.example\r\nDKIM-Selector: esp2024\r\n"
    ));
    assert!(!fields.contains("Identity-Alignment"));
    assert!(!fields.contains("SPF-DNS"));
    assert!(signature.subject().starts_with("DKIM failure report"));

    let spf_report = FailureReport::build(
        &FailureInput {
            spf_dns: Some("txt : example.com : v=spf1 ip4:192.0.2.0/24 -all"),
            ..FailureInput::new(&record, AuthFailure::Spf, HEADERS)
        },
        &config,
    );
    let fields = spf_report.feedback_report();
    assert!(fields.contains("\r\nAuth-Failure: spf\r\n"));
    assert!(fields.contains("\r\nSPF-DNS: txt : example.com : v=spf1 ip4:192.0.2.0/24 -all\r\n"));
    assert!(!fields.contains("DKIM-Domain"));

    // A DMARC report names the failed signature of an aligned identifier
    // only: a failed third-party signature is not one.
    let mut third_party = forged("1");
    third_party.dkim = vec![dkim("esp.example", DkimWord::Fail)];
    let report = FailureReport::build(
        &FailureInput::new(&third_party, AuthFailure::Dmarc, HEADERS),
        &config,
    );
    assert!(!report.feedback_report().contains("DKIM-Domain"));
}

#[test]
fn hostile_values_cannot_add_fields_or_parts() {
    let mut record = forged("1");
    record.header_from = "evil.example\r\nBcc: victim@example.org".to_string();
    record.dkim = vec![DkimAuth {
        selector: "s\r\nX-Injected: selector".to_string(),
        ..dkim("evil.example\nX-Injected: domain", DkimWord::Fail)
    }];
    // Aligned with the hostile Author Domain, so DKIM-Domain carries it.
    record.dkim[0].domain = record.header_from.clone();
    let headers = b"From: a@evil.example\r\n\
Subject: =?utf-8?q?caf=C3=A9?= \xff\xfe raw 8-bit \x00 nul\r\n\
X-Fake: --=_dmarc_failure_0000000000000000_0\r\n\
--=_dmarc_failure_\r\n\
Content-Type: text/plain\r\n\
\r\n\
body\r\n";
    let input = FailureInput {
        mail_from: Some("<x@evil.example>\r\nX-Injected: mail-from"),
        envelope_id: Some("ID\nX-Injected: envelope-id"),
        authentication_results: Some("mx.example.net;\n\tdmarc=fail\r\nX-Injected: a-r\n"),
        ..FailureInput::new(&record, AuthFailure::Dmarc, headers)
    };
    let report = FailureReport::build(&input, &FailureConfig::new("mx.example.net"));
    let mail = report.report_mail(
        "dmarc@example.net\r\nBcc: victim@example.org",
        "ruf@example.com",
        TIME,
        "example.net\r\nX-Injected: message-id",
    );
    let text = String::from_utf8_lossy(&mail).to_string();
    // Every injected "field" stays inside another field's value.
    for line in text.split("\r\n") {
        assert!(
            !line.starts_with("X-Injected") && !line.starts_with("Bcc"),
            "{line:?} in\n{text}"
        );
    }
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
    // The 8-bit, NUL-carrying header section travels in base64.
    assert!(
        text.contains("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: base64\r\n")
    );

    let Some(parsed) = structure(&mail) else {
        return;
    };
    let top = pairs(&parsed["headers"]);
    assert!(field(&top, "Bcc").is_none() && field(&top, "X-Injected").is_none());
    let parts = parsed["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let fields = pairs(&parts[1]["sub_headers"]);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Feedback-Type",
            "Version",
            "User-Agent",
            "Auth-Failure",
            "Authentication-Results",
            "Identity-Alignment",
            "DKIM-Domain",
            "DKIM-Identity",
            "DKIM-Selector",
            "Original-Envelope-Id",
            "Original-Mail-From",
            "Arrival-Date",
            "Source-IP",
            "Reported-Domain",
            "Delivery-Result"
        ]
    );
    assert_eq!(
        field(&fields, "Reported-Domain"),
        Some("evil.example  Bcc: victim@example.org")
    );
    assert_eq!(
        field(&fields, "DKIM-Selector"),
        Some("s  X-Injected: selector")
    );
    let sample = parts[2]["payload"].as_str().unwrap();
    assert!(
        sample.contains("\u{ff}\u{fe} raw 8-bit \u{0} nul"),
        "{sample:?}"
    );
    assert!(sample.contains("--=_dmarc_failure_\r\n"));
    // The header section ends at the first empty line.
    assert!(!sample.contains("body"));
}

#[test]
fn the_body_is_left_out_unless_asked_for_and_local_parts_are_redacted() {
    let record = forged("1");
    let input = FailureInput {
        body: Some(BODY),
        ..FailureInput::new(&record, AuthFailure::Dmarc, HEADERS)
    };
    let config = FailureConfig::new("mx.example.net");
    assert!(!config.include_body && config.redact_local_parts);

    let headers_only = FailureReport::build(&input, &config);
    assert_eq!(headers_only.sample_kind(), SampleKind::Headers);
    let mail_bytes = mail(&headers_only);
    let text = String::from_utf8(mail_bytes.clone()).unwrap();
    assert!(!text.contains("Hello") && !text.contains("pay.spoof.example"));
    assert!(!text.contains("alice@") && !text.contains("ceo@"));
    let sample = String::from_utf8(headers_only.sample().to_vec()).unwrap();
    assert!(sample.contains("for <redacted1@example.net>"), "{sample}");
    assert!(sample.contains("i=redacted2@example.com;"));
    assert!(sample.contains("From: \"The CEO\" <redacted2@example.com>"));
    assert!(sample.contains("To: redacted1@example.net"));
    // Message identifiers stay, for the Domain Owner to find the message.
    assert!(sample.contains("Message-ID: <20240715100000.12345@spoof.example>"));

    let with_body = FailureReport::build(
        &input,
        &FailureConfig {
            include_body: true,
            ..config.clone()
        },
    );
    assert_eq!(with_body.sample_kind(), SampleKind::Message);
    let mail_bytes = mail(&with_body);
    if let Some(parsed) = structure(&mail_bytes) {
        let parts = parsed["parts"].as_array().unwrap();
        assert_eq!(parts[2]["content_type"], "message/rfc822");
        let sample = parts[2]["payload"].as_str().unwrap();
        assert!(sample.contains("Hello redacted1@example.net,"), "{sample}");
        assert!(sample.contains("please pay at hxxps://pay.spoof.example/now"));
        assert!(!sample.contains("alice@"));
    }

    // Without redaction the addresses stay.
    let plain = FailureReport::build(
        &input,
        &FailureConfig {
            redact_local_parts: false,
            ..config
        },
    );
    assert!(String::from_utf8_lossy(plain.sample()).contains("To: alice@example.net"));
}

/// Issue 16 item 10 and issue 11 §7: every local part an RFC 5321/5322
/// parser finds is redacted, in the sample and in Original-Mail-From.
#[test]
fn every_local_part_is_redacted_whatever_its_form() {
    let record = forged("1");
    let headers = "Return-Path: <list-bounces+john.smith=mx.test@lists.example>\r\n\
         From: \"John Smith\"@example.com\r\n\
         Sender: john(the real one)@example.com\r\n\
         Reply-To: \"john@example.com\" <reply@example.net>\r\n\
         To: j\u{f6}rg.m\u{fc}ller@example.de, =?utf-8?Q?J=C3=B6rg_<joerg=40example.de>?= <x@example.de>\r\n\
         Cc: bounces+john.smith=example.com@verp.example\r\n\
         Subject: for john.smith@example.org\r\n\
         \r\n";
    let input = FailureInput {
        mail_from: Some("<list-bounces+john.smith=mx.test@lists.example>"),
        ..FailureInput::new(&record, AuthFailure::Dmarc, headers.as_bytes())
    };
    let report = FailureReport::build(&input, &FailureConfig::new("mx.example.net"));
    let feedback = report.feedback_report();
    assert!(
        feedback.contains("Original-Mail-From: <redacted1@lists.example>\r\n"),
        "{feedback}"
    );
    let sample = String::from_utf8(report.sample().to_vec()).unwrap();
    for secret in [
        "john",
        "smith",
        "j\u{f6}rg",
        "joerg",
        "reply@",
        "the real one",
    ] {
        assert!(
            !sample.to_lowercase().contains(secret),
            "{secret}: {sample}"
        );
        assert!(
            !feedback.to_lowercase().contains(secret),
            "{secret}: {feedback}"
        );
    }
    assert!(
        sample.contains("Return-Path: <redacted1@lists.example>"),
        "{sample}"
    );
    assert!(sample.contains("From: redacted2@example.com"), "{sample}");
    assert!(sample.contains("@example.de"), "{sample}");
}

/// Issue 16 item 2: a report is at most 64 KiB whatever the message: a
/// header section of 2 MB of distinct addresses, non-ASCII (base64), is
/// cut to fit; the text part says so.
#[test]
fn reports_never_exceed_their_size_cap() {
    let record = forged("1");
    let mut headers = String::new();
    for n in 0..40_000 {
        headers.push_str(&format!("X-\u{e9}t\u{e9}: u{n}@example.net caf\u{e9}\r\n"));
    }
    headers.push_str("\r\n");
    let long = "x".repeat(10_000);
    let input = FailureInput {
        mail_from: Some(&long),
        envelope_id: Some(&long),
        authentication_results: Some(&long),
        ..FailureInput::new(&record, AuthFailure::Dmarc, headers.as_bytes())
    };
    for config in [
        FailureConfig::new("mx.example.net"),
        FailureConfig {
            include_body: true,
            ..FailureConfig::new("mx.example.net")
        },
        FailureConfig {
            max_size: 8 * 1024,
            ..FailureConfig::new("mx.example.net")
        },
    ] {
        let report = FailureReport::build(
            &FailureInput {
                body: Some(headers.as_bytes()),
                ..input
            },
            &config,
        );
        assert!(report.truncated());
        let long_address = format!("{}@example.com", "a".repeat(300));
        let mail = report.report_mail(&long_address, &long_address, TIME, &long);
        assert!(
            mail.len() <= config.max_size,
            "{} > {}",
            mail.len(),
            config.max_size
        );
        let text = String::from_utf8_lossy(&mail);
        assert!(text.contains("The sample was cut"), "{text}");
    }
}

/// Issue 16 item 8: the rate limits count recipients as they are queued,
/// so they are queued in one form: lower case, whatever the record says
/// (the milter counted `RUF@Example.COM` and `ruf@example.com` as one
/// address, the store as two). A relay-hack address is never queued.
#[test]
fn failure_jobs_queue_recipients_in_lower_case_and_never_relay_hacks() {
    use dmarc_report::failure::FailureJob;
    let record = forged("1");
    let destination = |uri: &str| ReportDestination {
        uri: uri.to_string(),
        max_size: None,
    };
    let job = FailureJob {
        record,
        kinds: vec![AuthFailure::Dmarc],
        destinations: vec![
            destination("mailto:RUF@Example.COM"),
            destination("mailto:victim%third.example@example.com"),
        ],
        headers: HEADERS.to_vec(),
        body: None,
        mail_from: None,
        envelope_id: None,
        authentication_results: None,
        spf_dns: None,
        config: FailureConfig::new("mx.example.net"),
        sender: "dmarc@mx.example.net".to_string(),
        message_id_domain: "mx.example.net".to_string(),
        time: TIME,
    };
    let built = job.build();
    assert_eq!(built.built, 1);
    let recipients: Vec<&str> = built
        .messages
        .iter()
        .map(|m| m.recipient.as_str())
        .collect();
    assert_eq!(recipients, ["ruf@example.com"]);
}
