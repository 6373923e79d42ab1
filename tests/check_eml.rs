//! check-eml end to end: the example is run as a process, the way a
//! postmaster runs it, against the offline demo (`--zone
//! examples/data/demo.zone`) or a test-dns server started here
//! (`--nameserver`). Each test is a scenario: the options, the message, the
//! verdict lines or JSON fields expected.
//!
//! `cargo test` builds the example into `<target>/<profile>/examples/`; a
//! run of this test alone (`cargo test --ignore-rust-version --test check_eml`) does not, so the
//! binary is checked to exist and to be newer than its sources.

mod common;

use common::{root, run, run_with_stdin, Run};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use test_dns::TestDns;

const DEMO_ZONE: &str = "examples/data/demo.zone";

/// Runs check-eml on a demo message against the demo zone, plus `args`.
fn demo(message: &str, args: &[&str]) -> Run {
    let message = format!("examples/data/{message}");
    let mut all = vec!["--zone", DEMO_ZONE];
    all.extend_from_slice(args);
    all.push(&message);
    run(&all)
}

fn demo_json(message: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    demo(message, &all).ok().json()
}

/// A file for one test in Cargo's scratch directory.
fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-eml");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path
}

fn demo_zone_text() -> String {
    std::fs::read_to_string(root().join(DEMO_ZONE)).expect("demo zone")
}

fn demo_message(name: &str) -> String {
    std::fs::read_to_string(root().join("examples/data").join(name)).expect("demo message")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

// The four demo messages, as the README shows them.

#[test]
fn forged_ceo_mail_is_rejected() {
    let run = demo("forged.eml", &[]).ok();
    assert_eq!(
        run.stdout,
        "DMARC fail for example.com: p=reject, disposition reject\n\
         SPF fail for example.com: 198.51.100.200 is not authorized\n\
         DKIM none: the message has no DKIM signature\n\
         \n\
         Client IP: 198.51.100.200 (inferred from the topmost Received header)\n\
         HELO:      unknown.example.net (inferred from the topmost Received header)\n\
         MAIL FROM: <ceo@example.com> (inferred from Return-Path)\n\
         \n\
         Authentication-Results: check-eml.local;\n\
         \tspf=fail smtp.mailfrom=example.com;\n\
         \tdkim=none;\n\
         \tarc=none;\n\
         \tdmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com policy.dmarc=reject\n"
    );
}

#[test]
fn forged_ceo_mail_as_json() {
    let out = demo_json("forged.eml", &[]);
    assert_eq!(
        out["spf"],
        json!({"result": "fail", "domain": "example.com", "scope": "mfrom", "reason": null, "record": "v=spf1 ip4:192.0.2.0/28 -all"})
    );
    assert_eq!(out["dkim"], json!([]));
    assert_eq!(
        out["dmarc"],
        json!({
            "result": "fail",
            "header_from": "example.com",
            "policy_domain": "example.com",
            "org_domain": "example.com",
            "record": "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc-reports@example.com; adkim=r; aspf=r",
            "policy": "reject",
            "published_policy": "reject",
            "policy_source": "p",
            "spf_aligned": false,
            "dkim_aligned": false,
            "sampled": true,
            "testing": false,
            "discovery": "psl",
            "disposition": "reject",
            "override_reason": null,
            "override_comment": null,
            "reason": null,
        })
    );
    assert_eq!(
        out["arc"],
        json!({"result": "none", "oldest_pass": null, "chain": []})
    );
    assert_eq!(out["override_comment"], Value::Null);
    assert_eq!(out["disposition"], "reject");
    assert_eq!(out["override_reason"], Value::Null);
    assert_eq!(
        out["inferred"],
        json!({"client_ip": "Received", "helo": "Received", "mail_from": "Return-Path"})
    );
    assert_eq!(
        out["envelope"],
        json!({"client_ip": "198.51.100.200", "helo": "unknown.example.net", "mail_from": "ceo@example.com"})
    );
    assert_eq!(out["notes"], json!([]));
    assert_eq!(out["file"], "examples/data/forged.eml");
    assert_eq!(
        out["authentication_results"],
        "Authentication-Results: check-eml.local;\n\tspf=fail smtp.mailfrom=example.com;\n\tdkim=none;\n\tarc=none;\n\tdmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com policy.dmarc=reject"
    );
    // One evaluation: no `evaluations`; no --explain: no `trail`.
    assert!(out.get("evaluations").is_none());
    assert!(out.get("trail").is_none());
}

#[test]
fn newsletter_passes_by_aligned_dkim() {
    let run = demo("newsletter.eml", &[]).ok();
    assert_eq!(
        run.lines()[..3],
        [
            "DMARC pass for example.com: p=reject, disposition accept",
            "SPF pass for bounce.example.net (192.0.2.10 is authorized), not aligned with example.com (relaxed: organizational domains example.net ≠ example.com)",
            "DKIM pass for d=example.com s=news2048 a=rsa-sha256 (2048-bit key), aligned with example.com (relaxed: example.com = example.com)",
        ]
    );
    assert!(run
        .stdout
        .contains("\tdkim=pass header.d=example.com header.s=news2048 header.b="));

    let out = demo_json("newsletter.eml", &[]);
    assert_eq!(out["spf"]["result"], "pass");
    assert_eq!(out["spf"]["domain"], "bounce.example.net");
    assert_eq!(
        out["dkim"],
        json!([{
            "result": "pass",
            "domain": "example.com",
            "selector": "news2048",
            "algorithm": "rsa-sha256",
            "aligned": true,
            "key_bits": 2048,
            "reason": null,
        }])
    );
    assert_eq!(out["dmarc"]["result"], "pass");
    assert_eq!(out["dmarc"]["spf_aligned"], false);
    assert_eq!(out["dmarc"]["dkim_aligned"], true);
    // policy.dmarc is reported for a passing message too (RFC 9989).
    assert_eq!(out["dmarc"]["policy"], "reject");
    assert_eq!(out["disposition"], "accept");
}

#[test]
fn forwarded_mail_fails_spf_and_passes_by_ed25519_dkim() {
    let run = demo("forwarded.eml", &[]).ok();
    assert_eq!(
        run.lines()[..3],
        [
            "DMARC pass for example.org: p=quarantine, disposition accept",
            "SPF fail for example.org: 203.0.113.5 is not authorized",
            "DKIM pass for d=example.org s=ed1 a=ed25519-sha256 (256-bit key), aligned with example.org (relaxed: example.org = example.org)",
        ]
    );
    // The topmost of the two Received headers: the forwarder.
    assert!(run
        .stdout
        .contains("Client IP: 203.0.113.5 (inferred from the topmost Received header)\n"));
    assert!(run.stdout.contains(
        "HELO:      forwarder.example.net (inferred from the topmost Received header)\n"
    ));

    let out = demo_json("forwarded.eml", &[]);
    assert_eq!(out["spf"]["result"], "fail");
    assert_eq!(out["dkim"][0]["result"], "pass");
    assert_eq!(out["dkim"][0]["algorithm"], "ed25519-sha256");
    assert_eq!(out["dkim"][0]["key_bits"], 256);
    assert_eq!(out["dkim"][0]["aligned"], true);
    assert_eq!(out["dmarc"]["result"], "pass");
    assert_eq!(out["dmarc"]["header_from"], "example.org");
    assert_eq!(out["disposition"], "accept");
}

#[test]
fn subdomain_mail_is_quarantined_by_sp() {
    let run = demo("subdomain.eml", &[]).ok();
    assert_eq!(
        run.lines()[..3],
        [
            "DMARC fail for billing.example.com: sp=quarantine (record at _dmarc.example.com), disposition quarantine",
            "SPF none for billing.example.com: no SPF record",
            "DKIM none: the message has no DKIM signature",
        ]
    );
    let out = demo_json("subdomain.eml", &[]);
    assert_eq!(out["dmarc"]["result"], "fail");
    assert_eq!(out["dmarc"]["header_from"], "billing.example.com");
    assert_eq!(out["dmarc"]["policy_domain"], "example.com");
    assert_eq!(out["dmarc"]["org_domain"], "example.com");
    assert_eq!(out["dmarc"]["policy_source"], "sp");
    assert_eq!(out["dmarc"]["policy"], "quarantine");
    assert_eq!(out["disposition"], "quarantine");
}

// DNS sources.

#[test]
fn nameserver_option_asks_that_server() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dns = runtime
        .block_on(TestDns::start(&demo_zone_text()))
        .expect("test DNS server");
    let server = dns.addr().to_string();
    let out = run(&[
        "--json",
        "--nameserver",
        &server,
        "examples/data/forged.eml",
    ])
    .ok()
    .json();
    assert_eq!(out["dmarc"]["result"], "fail");
    assert_eq!(out["disposition"], "reject");
    assert!(dns.query_count("_dmarc.example.com") >= 1);
    assert!(dns.query_count("example.com") >= 1, "{:?}", dns.queries());

    // Same verdict as offline.
    let offline = demo_json("forged.eml", &[]);
    assert_eq!(out["dmarc"], offline["dmarc"]);
    assert_eq!(
        out["authentication_results"],
        offline["authentication_results"]
    );
}

#[test]
fn zone_and_nameserver_together_are_refused() {
    let error = run(&[
        "--zone",
        DEMO_ZONE,
        "--nameserver",
        "127.0.0.1:53",
        "examples/data/forged.eml",
    ])
    .usage_error();
    assert!(
        error.contains("'--zone <FILE>' cannot be used with '--nameserver"),
        "{error}"
    );
}

// The envelope.

#[test]
fn envelope_options_override_the_headers() {
    let args = [
        "--client-ip",
        "192.0.2.5",
        "--helo",
        "mail.example.com",
        "--mail-from",
        "ceo@example.com",
    ];
    let run = demo("forged.eml", &args).ok();
    assert_eq!(
        run.lines()[..2],
        [
            "DMARC pass for example.com: p=reject, disposition accept",
            "SPF pass for example.com (192.0.2.5 is authorized), aligned with example.com (relaxed: example.com = example.com)",
        ]
    );
    assert!(run
        .stdout
        .contains("Client IP: 192.0.2.5 (given on the command line)\n"));
    assert!(run
        .stdout
        .contains("HELO:      mail.example.com (given on the command line)\n"));
    assert!(run
        .stdout
        .contains("MAIL FROM: <ceo@example.com> (given on the command line)\n"));

    let out = demo_json("forged.eml", &args);
    assert_eq!(out["inferred"], json!({}));
    assert_eq!(out["dmarc"]["spf_aligned"], true);
}

#[test]
fn empty_mail_from_is_the_null_sender_and_checks_helo() {
    let args = ["--mail-from", "", "--helo", "example.net"];
    let run = demo("forwarded.eml", &args).ok();
    assert_eq!(
        run.lines()[1],
        "SPF pass for HELO example.net (null sender: 203.0.113.5 is authorized), not aligned with example.org (relaxed: organizational domains example.net ≠ example.org)"
    );
    assert!(run.stdout.contains("\tspf=pass smtp.helo=example.net;\n"));

    let out = demo_json("forwarded.eml", &args);
    assert_eq!(
        out["spf"],
        json!({"result": "pass", "domain": "example.net", "scope": "helo", "reason": null, "record": "v=spf1 ip4:203.0.113.0/28 -all"})
    );
    assert_eq!(out["envelope"]["mail_from"], "");
    // The client IP still comes from Received; HELO and MAIL FROM do not.
    assert_eq!(out["inferred"], json!({"client_ip": "Received"}));
}

#[test]
fn received_header_forms_are_read() {
    // (Received value, client IP, HELO)
    let cases = [
        (
            "from mx6.example.org (mx6.example.org [IPv6:2001:db8::25])\n\tby mx.example.net (Postfix) with ESMTPS id 4X",
            "2001:db8::25",
            "mx6.example.org",
        ),
        (
            "from unknown.example.net (unknown [198.51.100.200])\n\tby mx.example.net (Postfix) with ESMTP id 4Y",
            "198.51.100.200",
            "unknown.example.net",
        ),
        (
            "from rdns.example.org ([192.0.2.7] helo=helo.example.org)\n\tby mx.example.net with esmtps (Exim 4.97)",
            "192.0.2.7",
            "helo.example.org",
        ),
    ];
    for (received, ip, helo) in cases {
        let message = format!("Received: {received}\nFrom: a@example.org\nSubject: hi\n\nHello.\n");
        let out = run_with_stdin(&["--zone", DEMO_ZONE, "--json", "-"], message.as_bytes())
            .ok()
            .json();
        assert_eq!(out["envelope"]["client_ip"], ip, "{received}");
        assert_eq!(out["envelope"]["helo"], helo, "{received}");
        assert_eq!(
            out["inferred"],
            json!({"client_ip": "Received", "helo": "Received"}),
            "{received}"
        );
        // No Return-Path: the null sender, said in a note.
        assert_eq!(out["spf"]["scope"], "helo");
        assert_eq!(out["notes"].as_array().map(Vec::len), Some(1), "{out}");
    }
}

#[test]
fn loopback_received_headers_of_a_content_filter_are_skipped() {
    let message = demo_message("forged.eml").replacen(
        "Received: ",
        "Received: from localhost (localhost [127.0.0.1])\n\tby mx.example.net (Postfix) with ESMTP id 4Z\nReceived: ",
        1,
    );
    let run = run_with_stdin(&["--zone", DEMO_ZONE, "-"], message.as_bytes()).ok();
    assert!(run
        .stdout
        .contains("Client IP: 198.51.100.200 (inferred from Received header 2 from the top)\n"));
    assert!(run
        .stdout
        .contains("Note: Received header 1 is from 127.0.0.1 (a local re-injection): skipped\n"));
}

#[test]
fn without_a_client_ip_spf_is_none() {
    let message = demo_message("forged.eml")
        .lines()
        .filter(|l| !l.starts_with("Received:") && !l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\n");
    let out = run_with_stdin(&["--zone", DEMO_ZONE, "--json", "-"], message.as_bytes())
        .ok()
        .json();
    assert_eq!(out["spf"]["result"], "none");
    assert_eq!(out["spf"]["reason"], "no client IP");
    assert_eq!(out["envelope"]["client_ip"], Value::Null);
    assert_eq!(out["inferred"], json!({"mail_from": "Return-Path"}));
    assert!(out["notes"][0]
        .as_str()
        .is_some_and(|n| n.starts_with("no Received header")));
    assert_eq!(out["dmarc"]["result"], "fail");
}

// Discovery and the Public Suffix List.

#[test]
fn tree_walk_discovery() {
    let out = demo_json("subdomain.eml", &["--discovery", "tree-walk", "--explain"]);
    assert_eq!(out["dmarc"]["discovery"], "tree-walk");
    assert_eq!(out["dmarc"]["policy_domain"], "example.com");
    assert_eq!(out["disposition"], "quarantine");
    let trail = out["trail"].to_string();
    assert!(trail.contains("by the DNS tree walk"), "{trail}");
    assert!(trail.contains("dns: TXT _dmarc.com: NXDOMAIN"), "{trail}");
}

#[test]
fn psl_file_decides_organizational_domains() {
    // A list where example.com is a public suffix: billing.example.com is
    // its own Organizational Domain, so example.com's record does not apply.
    let psl = scratch(
        "example-com-suffix.dat",
        b"// ===BEGIN ICANN DOMAINS===\ncom\nexample.com\n// ===END ICANN DOMAINS===\n",
    );
    let out = demo_json("subdomain.eml", &["--psl", path_str(&psl)]);
    assert_eq!(out["dmarc"]["result"], "none");
    assert_eq!(out["dmarc"]["org_domain"], "billing.example.com");
    assert_eq!(out["dmarc"]["record"], Value::Null);
    assert_eq!(out["dmarc"]["policy"], Value::Null);
    assert_eq!(out["disposition"], "accept");
    let run = demo("subdomain.eml", &["--psl", path_str(&psl)]).ok();
    assert_eq!(
        run.lines()[0],
        "DMARC none for billing.example.com: no DMARC record, disposition accept"
    );

    // The tree walk does not use the list.
    let out = demo_json(
        "subdomain.eml",
        &["--psl", path_str(&psl), "--discovery", "tree-walk"],
    );
    assert_eq!(out["disposition"], "quarantine");

    let error = demo("subdomain.eml", &["--psl", "no/such/list.dat"]).usage_error();
    assert!(
        error.starts_with("check-eml: no/such/list.dat: cannot load the Public Suffix List: "),
        "{error}"
    );
}

// Zone files.

/// RFC 1035 §5.1 escapes in owner names and in names of the data (a label
/// holding spaces or a dot, an octet written `\DDD`) are read; the verdict
/// is the demo's.
#[test]
fn zone_with_escaped_names_is_read() {
    let zone = format!(
        "{}\n\
         macro%percent\\032\\032space%20url-space.example.com. 300 IN A 192.0.2.1\n\
         a\\.b.example.com. 300 IN TXT \"dotted\\032label\"\n\
         alias.example.com. 300 IN CNAME caf\\195\\169.example.com.\n",
        demo_zone_text()
    );
    let zone = scratch("escaped.zone", zone.as_bytes());
    let escaped = run(&["--zone", path_str(&zone), "examples/data/forged.eml"]).ok();
    let plain = demo("forged.eml", &[]).ok();
    assert_eq!(escaped.lines(), plain.lines());
}

// pct.

#[test]
fn pct_modes_with_a_fixed_draw() {
    let zone = demo_zone_text().replace(
        "\"v=DMARC1; p=reject; sp=quarantine;",
        "\"v=DMARC1; p=reject; sp=quarantine; pct=50;",
    );
    assert!(zone.contains("pct=50"));
    let zone = scratch("pct50.zone", zone.as_bytes());
    // (--pct, --pct-draw, policy, disposition, sampled, testing, override)
    let cases = [
        ("honor", "49", "reject", "reject", true, false, Value::Null),
        (
            "honor",
            "50",
            "quarantine",
            "quarantine",
            false,
            false,
            json!("sampled_out"),
        ),
        ("ignore", "99", "reject", "reject", true, false, Value::Null),
        (
            "as-test-mode",
            "0",
            "quarantine",
            "quarantine",
            true,
            true,
            json!("policy_test_mode"),
        ),
    ];
    for (mode, draw, policy, disposition, sampled, testing, override_reason) in cases {
        let out = run(&[
            "--json",
            "--zone",
            path_str(&zone),
            "--pct",
            mode,
            "--pct-draw",
            draw,
            "examples/data/forged.eml",
        ])
        .ok()
        .json();
        let case = format!("--pct {mode} --pct-draw {draw}");
        assert_eq!(out["dmarc"]["published_policy"], "reject", "{case}");
        assert_eq!(out["dmarc"]["policy"], policy, "{case}");
        assert_eq!(out["dmarc"]["sampled"], sampled, "{case}");
        assert_eq!(out["dmarc"]["testing"], testing, "{case}");
        assert_eq!(out["disposition"], disposition, "{case}");
        assert_eq!(out["override_reason"], override_reason, "{case}");
    }

    let run_text = run(&[
        "--zone",
        path_str(&zone),
        "--pct-draw",
        "50",
        "examples/data/forged.eml",
    ])
    .ok();
    assert_eq!(
        run_text.lines()[0],
        "DMARC fail for example.com: p=reject, quarantine in force (pct=50, not sampled), disposition quarantine (override: sampled_out)"
    );

    // Without --pct-draw the draw is random: either outcome is valid.
    let out = run(&[
        "--json",
        "--zone",
        path_str(&zone),
        "examples/data/forged.eml",
    ])
    .ok()
    .json();
    assert!(
        ["reject", "quarantine"].contains(&out["disposition"].as_str().unwrap_or("")),
        "{out}"
    );
}

// Output options.

#[test]
fn authserv_id_option() {
    let out = demo_json("forged.eml", &["--authserv-id", "mx.example.net"]);
    assert!(out["authentication_results"]
        .as_str()
        .is_some_and(|ar| ar.starts_with("Authentication-Results: mx.example.net;\n\tspf=fail")));
    let error = demo("forged.eml", &["--authserv-id", "mx example"]).usage_error();
    assert_eq!(
        error,
        "check-eml: invalid value \"mx example\" for --authserv-id (expected a host name without spaces or ';')"
    );
}

#[test]
fn explain_prints_the_decision_trail() {
    let run = demo("forged.eml", &["--explain"]).ok();
    let trail: Vec<&str> = run
        .stdout
        .split_once("\nDecision trail:\n")
        .map(|(_, trail)| trail.lines().collect())
        .unwrap_or_else(|| panic!("no trail:\n{}", run.stdout));
    for expected in [
        "  dns: TXT example.com: ",
        "  SPF fail for example.com (mfrom) from 198.51.100.200",
        "  dns: TXT _dmarc.example.com: \"v=DMARC1; p=reject; sp=quarantine;",
        "  record applied: _dmarc.example.com ",
        "  policy: p=reject published; pct=100 (draw ",
        "  DMARC fail: disposition reject",
    ] {
        assert!(
            trail.iter().any(|line| line.starts_with(expected)),
            "{expected:?} not in\n{}",
            trail.join("\n")
        );
    }

    let out = demo_json("newsletter.eml", &["--explain"]);
    let trail: Vec<&str> = out["trail"]
        .as_array()
        .expect("trail is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(trail.contains(
        &"SPF pass for bounce.example.net: not aligned (relaxed: organizational domains example.net ≠ example.com)"
    ));
    assert!(trail
        .contains(&"DKIM pass for d=example.com: aligned (relaxed: example.com = example.com)"));
}

#[test]
fn message_from_stdin() {
    let message = demo_message("forged.eml");
    let run = run_with_stdin(&["--zone", DEMO_ZONE, "-"], message.as_bytes()).ok();
    assert_eq!(
        run.lines()[0],
        "DMARC fail for example.com: p=reject, disposition reject"
    );
    let out = run_with_stdin(&["--zone", DEMO_ZONE, "--json", "-"], message.as_bytes())
        .ok()
        .json();
    assert_eq!(out["file"], "<stdin>");
    assert_eq!(out["disposition"], "reject");
}

// From fields.

#[test]
fn several_author_domains_are_each_evaluated() {
    let message = demo_message("forged.eml").replace(
        "From: \"Example CEO\" <ceo@example.com>",
        "From: ceo@example.com, alice@example.org",
    );
    let run = run_with_stdin(&["--zone", DEMO_ZONE, "-"], message.as_bytes()).ok();
    assert_eq!(
        run.lines()[..3],
        [
            "DMARC fail for example.com, example.org: disposition reject",
            "  fail for example.com: p=reject, disposition reject",
            "  fail for example.org: p=quarantine, disposition quarantine",
        ]
    );
    let out = run_with_stdin(&["--zone", DEMO_ZONE, "--json", "-"], message.as_bytes())
        .ok()
        .json();
    let evaluations = out["evaluations"].as_array().expect("evaluations");
    assert_eq!(evaluations.len(), 2);
    assert_eq!(evaluations[1]["header_from"], "example.org");
    assert_eq!(evaluations[1]["disposition"], "quarantine");
    // The decisive one: the strictest disposition.
    assert_eq!(out["dmarc"], evaluations[0]);
    assert_eq!(out["disposition"], "reject");
}

#[test]
fn an_unusable_from_is_a_permerror() {
    let message = demo_message("forged.eml").replace(
        "From: \"Example CEO\" <ceo@example.com>",
        "From: ceo@example.com\nFrom: alice@example.org",
    );
    let run = run_with_stdin(&["--zone", DEMO_ZONE, "-"], message.as_bytes()).ok();
    assert_eq!(
        run.lines()[0],
        "DMARC permerror: the message has 2 From headers (multiple-from), disposition reject"
    );
    let out = run_with_stdin(&["--zone", DEMO_ZONE, "--json", "-"], message.as_bytes())
        .ok()
        .json();
    assert_eq!(out["dmarc"]["result"], "permerror");
    assert_eq!(out["dmarc"]["header_from"], Value::Null);
    assert_eq!(out["dmarc"]["reason"], "multiple-from");
    assert_eq!(out["dmarc"]["policy"], Value::Null);
    assert_eq!(out["disposition"], "reject");
    assert!(out["authentication_results"]
        .as_str()
        .is_some_and(|ar| ar.ends_with("\tdmarc=permerror reason=multiple-from")));
}

// Bad arguments and input: exit status 2, one line on stderr.

#[test]
fn unusable_input_is_refused_with_one_line() {
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = scratch("garbage.bin", &garbage);
    let no_headers = scratch(
        "no-headers.eml",
        b"Hi Bob,\n\nthis is only a body, without any header field.\n",
    );
    let empty = scratch("empty.eml", b"");
    let (garbage, no_headers, empty) = (
        path_str(&garbage).to_string(),
        path_str(&no_headers).to_string(),
        path_str(&empty).to_string(),
    );
    let cases: [(&str, &str); 4] = [
        (
            "no/such/message.eml",
            "check-eml: no/such/message.eml: cannot read: ",
        ),
        (
            &garbage,
            "not a mail message: binary data in the header section",
        ),
        (
            &no_headers,
            "not a mail message: no header section (line 1 is not a \"Name: value\" header field)",
        ),
        (&empty, "not a mail message: the input is empty"),
    ];
    for (file, expected) in cases {
        let error = run(&["--zone", DEMO_ZONE, file]).usage_error();
        assert!(
            error.starts_with(&format!("check-eml: {file}: ")),
            "{error}"
        );
        assert!(error.contains(expected), "{file}: {error}");
    }

    let error = run_with_stdin(&["--zone", DEMO_ZONE, "-"], b"").usage_error();
    assert_eq!(
        error,
        "check-eml: <stdin>: not a mail message: the input is empty"
    );
}

#[test]
fn zone_syntax_error_names_the_file_and_line() {
    let zone = scratch(
        "broken.zone",
        b"$TTL 300\nexample.com. IN TXT \"v=spf1 -all\"\nexample.com. IN TXTT \"oops\"\n",
    );
    let zone = path_str(&zone);
    let error = run(&["--zone", zone, "examples/data/forged.eml"]).usage_error();
    assert!(
        error.starts_with(&format!("check-eml: {zone} line 3: ")),
        "{error}"
    );

    let error = run(&["--zone", "no/such.zone", "examples/data/forged.eml"]).usage_error();
    assert!(
        error.starts_with("check-eml: no/such.zone: cannot read: "),
        "{error}"
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--client-ip", "192.0.2", "examples/data/forged.eml"],
            "check-eml: invalid value '192.0.2' for '--client-ip <IP>': invalid IP address syntax",
        ),
        (
            &["--pct-draw", "100", "examples/data/forged.eml"],
            "check-eml: invalid value '100' for '--pct-draw <N>': 100 is not in 0..=99",
        ),
        (
            &["--discovery", "dns", "examples/data/forged.eml"],
            "check-eml: invalid value 'dns' for '--discovery <METHOD>'",
        ),
        (
            &["--nameserver", "ns.example.com", "examples/data/forged.eml"],
            "check-eml: invalid value 'ns.example.com' for '--nameserver <IP[:PORT]>'",
        ),
        (
            &["--no-such-option", "examples/data/forged.eml"],
            "check-eml: unexpected argument '--no-such-option' found",
        ),
        (
            &[],
            "check-eml: the following required arguments were not provided: <FILE.eml | ->",
        ),
    ];
    for (args, expected) in cases {
        let error = run(args).usage_error();
        assert!(error.starts_with(expected), "{args:?}: {error}");
    }
}

#[test]
fn help_exits_0() {
    let run = run(&["--help"]).ok();
    assert!(run
        .stdout
        .contains("Usage: check-eml [OPTIONS] <FILE.eml | ->"));
    for option in [
        "--client-ip",
        "--helo",
        "--mail-from",
        "--nameserver",
        "--zone",
        "--discovery",
        "--pct ",
        "--pct-draw",
        "--psl",
        "--authserv-id",
        "--json",
        "--explain",
    ] {
        assert!(run.stdout.contains(option), "{option} not in --help");
    }
}

// Issue 11: the review's reproductions, and variants, as a postmaster runs
// them. The zone: victim.com (p=reject, SPF 192.0.2.0/24) and the
// attacker's evil.net; the envelope is the attacker's unless said.

const VICTIM_ZONE: &str = r#"
victim.com. IN SOA ns.victim.com. hostmaster.victim.com. 1 3600 900 604800 300
victim.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.victim.com. IN TXT "v=DMARC1; p=reject; rua=mailto:d@victim.com"
s1._domainkey.victim.com. IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
evil.net. IN SOA ns.evil.net. hostmaster.evil.net. 1 3600 900 604800 300
evil.net. IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
"#;

/// check-eml --json on `message` (from stdin) with the attacker's envelope
/// (MAIL FROM `mail_from`) and `args`; `test` names the zone file.
fn attacker_run(test: &str, message: &str, mail_from: &str, args: &[&str]) -> Value {
    let zone = scratch(&format!("{test}.zone"), VICTIM_ZONE.as_bytes());
    let mut all = vec![
        "--zone",
        path_str(&zone),
        "--json",
        "--client-ip",
        "203.0.113.5",
        "--helo",
        "mx.evil.net",
        "--mail-from",
        mail_from,
    ];
    all.extend_from_slice(args);
    all.push("-");
    run_with_stdin(&all, message.as_bytes()).ok().json()
}

fn with_from(from_fields: &str) -> String {
    format!("{from_fields}\r\nTo: rcpt@example.org\r\nSubject: s\r\nDate: Mon, 10 Jun 2024 06:13:20 +0000\r\n\r\nHello.\r\n")
}

#[test]
fn malformed_from_grammar_is_refused() {
    for from in [
        "From: <@x>, ceo@victim.com, <:y@evil.net>",
        "From: <@x>,ceo@victim.com,<@z:y@evil.net>",
        "From: =?x?q?,ceo@victim.com,?= <x@evil.net>",
        "From: =?utf-8?q?ceo@victim.com?= <x@evil.net>",
        "From : ceo@victim.com\r\nFrom: a@evil.net",
        "From: a@evil.net\r\nFROM\t: ceo@victim.com",
        "From\t: ceo@victim.com",
    ] {
        let out = attacker_run("grammar", &with_from(from), "a@evil.net", &[]);
        assert_eq!(out["disposition"], "reject", "{from:?}: {out:#}");
        assert_ne!(out["dmarc"]["header_from"], "evil.net", "{from:?}");
    }
    let out = attacker_run(
        "grammar",
        &with_from("From : ceo@victim.com\r\nFrom: a@evil.net"),
        "a@evil.net",
        &[],
    );
    assert_eq!(out["dmarc"]["reason"], "multiple-from", "{out:#}");
}

#[test]
fn a_dkim_key_name_as_the_spf_domain_is_no_temperror() {
    let message = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=victim.com; s=s1; h=from; bh=AAAA; b=AAAA\r\n{}",
        with_from("From: ceo@victim.com")
    );
    let out = attacker_run("keyname", &message, "a@s1._domainkey.victim.com", &[]);
    assert_eq!(out["spf"]["result"], "none", "{out:#}");
    assert_eq!(out["dmarc"]["result"], "fail", "{out:#}");
    assert_eq!(out["disposition"], "reject", "{out:#}");
}

#[test]
fn a_signature_without_from_in_h_never_aligns() {
    // A valid-looking signature over To and Subject only, From written above.
    let message = format!(
        "From: helpdesk@victim.com\r\nDKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=victim.com; s=s1; h=to:subject; bh=AAAA; b=AAAA\r\n{}",
        "To: rcpt@example.org\r\nSubject: s\r\n\r\nHello.\r\n"
    );
    let out = attacker_run("unsigned-from", &message, "a@evil.net", &[]);
    let dkim = &out["dkim"][0];
    assert_eq!(dkim["result"], "permerror", "{out:#}");
    assert_eq!(
        dkim["reason"], "From field not signed (RFC 6376 §6.1.1)",
        "{out:#}"
    );
    assert_eq!(out["disposition"], "reject", "{out:#}");
}

#[test]
fn failures_on_the_attackers_names_do_not_defer_a_forgery() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let zone = format!("{VICTIM_ZONE}\npass.evil.net. IN TXT \"v=spf1 ip4:203.0.113.0/24 -all\"\n");
    let dns = runtime.block_on(TestDns::start(&zone)).expect("test DNS");
    for fault in [test_dns::Fault::ServFail, test_dns::Fault::Timeout] {
        dns.set_fault("_dmarc.evil.net", None, fault);
        dns.set_fault("_dmarc.pass.evil.net", None, fault);
        let server = dns.addr().to_string();
        let out = run_with_stdin(
            &[
                "--nameserver",
                &server,
                "--discovery",
                "tree-walk",
                "--json",
                "--client-ip",
                "203.0.113.5",
                "--helo",
                "mx.evil.net",
                "--mail-from",
                "a@pass.evil.net",
                "-",
            ],
            with_from("From: ceo@victim.com").as_bytes(),
        )
        .ok()
        .json();
        assert_eq!(out["spf"]["result"], "pass", "{out:#}");
        assert_eq!(out["dmarc"]["result"], "fail", "{fault:?}: {out:#}");
        assert_eq!(out["disposition"], "reject", "{fault:?}: {out:#}");
        dns.clear_faults();
    }
}

#[test]
fn a_long_author_domain_gets_the_organizational_domains_policy() {
    let label = "c".repeat(60);
    let author = format!("{label}.{label}.{label}.{}.victim.com", "d".repeat(53));
    for discovery in ["psl", "tree-walk"] {
        let out = attacker_run(
            "long-author",
            &with_from(&format!("From: ceo@{author}")),
            "a@evil.net",
            &["--discovery", discovery],
        );
        assert_eq!(out["dmarc"]["result"], "fail", "{discovery}: {out:#}");
        assert_eq!(out["disposition"], "reject", "{discovery}: {out:#}");
    }
}

#[test]
fn the_comment_shows_what_psl_discovery_applied() {
    let zone = scratch(
        "np.zone",
        format!("{VICTIM_ZONE}\n_dmarc.np.example. IN TXT \"v=DMARC1; p=reject; np=bogus; rua=mailto:d@np.example\"\n").as_bytes(),
    );
    let out = run_with_stdin(
        &[
            "--zone",
            path_str(&zone),
            "--json",
            "--client-ip",
            "203.0.113.5",
            "--helo",
            "mx.evil.net",
            "--mail-from",
            "a@evil.net",
            "-",
        ],
        with_from("From: a@np.example").as_bytes(),
    )
    .ok()
    .json();
    assert_eq!(out["disposition"], "reject", "{out:#}");
    assert!(
        out["authentication_results"]
            .as_str()
            .is_some_and(|ar| ar.contains("dmarc=fail (p=reject sp=reject dis=reject)")),
        "{out:#}"
    );
}

// Indirect mail flows (issue 13): ARC chains made by dkimpy with keys of
// this run (tools/arc_chains.py), the override options and the JSON
// contract.

#[path = "../crates/dmarc-verifier/tests/chains/mod.rs"]
mod chains;

/// Runs check-eml on a chains scenario relayed by the list's host
/// (198.51.100.7, the list's bounce address), plus `args`.
fn relayed(scenario: &str, args: &[&str]) -> Run {
    let chains = chains::Chains::get();
    let zone = chains.zone_path();
    let message = chains.path(scenario);
    let mut all = vec![
        "--zone",
        path_str(&zone),
        "--client-ip",
        "198.51.100.7",
        "--helo",
        "mail.lists.example.org",
        "--mail-from",
        "dev-bounces@lists.example.org",
    ];
    all.extend_from_slice(args);
    all.push(path_str(&message));
    run(&all)
}

fn relayed_json(scenario: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    relayed(scenario, &all).ok().json()
}

#[test]
fn a_trusted_arc_sealer_turns_the_reject_into_accept_in_the_json_contract() {
    if !chains::available() {
        return;
    }
    let out = relayed_json(
        "list-trusted",
        &["--trusted-arc-sealer", "Lists.Example.ORG"],
    );
    assert_eq!(
        out["arc"],
        json!({
            "result": "pass",
            "oldest_pass": 0,
            "chain": [{"instance": 1, "sealer": "lists.example.org", "selector": "arc", "cv": "none", "ams": "pass"}],
        })
    );
    assert_eq!(out["dmarc"]["result"], "fail");
    assert_eq!(out["disposition"], "accept");
    assert_eq!(out["override_reason"], "trusted_forwarder");
    assert_eq!(
        out["override_comment"],
        "arc=pass i=1 sealer=lists.example.org"
    );
    assert_eq!(out["dmarc"]["override_comment"], out["override_comment"]);
    let ar = out["authentication_results"].as_str().unwrap();
    assert!(
        ar.contains("\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=198.51.100.7;\n\tdmarc=fail (p=reject sp=reject dis=none override=trusted_forwarder: arc=pass i=1 sealer=lists.example.org) header.from=example.com"),
        "{ar}"
    );

    // Not trusted: rejected, no override.
    let out = relayed_json("list-trusted", &[]);
    assert_eq!(
        (
            &out["disposition"],
            &out["override_reason"],
            &out["override_comment"]
        ),
        (&json!("reject"), &Value::Null, &Value::Null),
        "{out:#}"
    );
    assert_eq!(out["arc"]["result"], "pass");

    // The text names the override and lists the chain.
    let run = relayed(
        "list-trusted",
        &["--trusted-arc-sealer", "lists.example.org"],
    )
    .ok();
    let lines = run.lines();
    assert_eq!(
        lines[0],
        "DMARC fail for example.com: p=reject, disposition accept (override: trusted_forwarder: arc=pass i=1 sealer=lists.example.org)"
    );
    assert!(
        lines.contains(&"ARC pass: 1 sets, oldest-pass 0"),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"  i=1 sealed by lists.example.org (s=arc, cv=none), AMS pass"),
        "{lines:#?}"
    );
}

#[test]
fn what_the_trusted_hop_saw_must_still_be_the_message() {
    if !chains::available() {
        return;
    }
    let trust = ["--trusted-arc-sealer", "lists.example.org"];
    let out = relayed_json("list-then-forwarded", &trust);
    assert_eq!(out["disposition"], "accept", "{out:#}");
    assert_eq!(out["arc"]["chain"].as_array().unwrap().len(), 2);
    assert_eq!(out["arc"]["chain"][1]["cv"], "pass");
    assert_eq!(out["arc"]["chain"][1]["sealer"], "forwarder.example.net");

    let out = relayed_json("list-then-rewritten", &trust);
    assert_eq!(out["arc"]["result"], "pass");
    assert_eq!(out["arc"]["oldest_pass"], 2);
    assert_eq!(out["arc"]["chain"][0]["ams"], "fail");
    assert_eq!(out["arc"]["chain"][1]["ams"], "pass");
    assert_eq!(out["disposition"], "reject", "{out:#}");
    assert_eq!(out["override_reason"], Value::Null);
}

#[test]
fn forged_broken_and_failed_chains_change_nothing() {
    if !chains::available() {
        return;
    }
    let trust = [
        "--trusted-arc-sealer",
        "lists.example.org",
        "--trusted-arc-sealer",
        "forwarder.example.net",
    ];
    for (scenario, arc) in [
        ("forged-aar", "pass"),
        ("list-aar-fail", "pass"),
        ("list-broken-after-seal", "fail"),
        ("cv-fail", "fail"),
        ("fifty-one", "fail"),
    ] {
        let out = relayed_json(scenario, &trust);
        assert_eq!(out["arc"]["result"], arc, "{scenario}: {out:#}");
        assert_eq!(out["disposition"], "reject", "{scenario}: {out:#}");
        assert_eq!(out["override_reason"], Value::Null, "{scenario}");
        if arc == "fail" {
            assert_eq!(out["arc"]["oldest_pass"], Value::Null, "{scenario}");
        }
    }
    // Malformed sets are not listed; complete ones are, even when failed.
    assert_eq!(relayed_json("fifty-one", &trust)["arc"]["chain"], json!([]));
    let out = relayed_json("cv-fail", &trust);
    assert_eq!(out["arc"]["chain"][1]["cv"], "fail");
    let out = relayed_json("fifty", &["--trusted-arc-sealer", "lists.example.org"]);
    assert_eq!(out["arc"]["chain"].as_array().unwrap().len(), 50);
    assert_eq!(out["disposition"], "accept");
}

#[test]
fn mailing_list_forwarder_and_local_policy_options() {
    if !chains::available() {
        return;
    }
    let out = relayed_json("list-dkim", &[]);
    assert_eq!(
        (
            &out["disposition"],
            &out["override_reason"],
            &out["override_comment"]
        ),
        (
            &json!("quarantine"),
            &json!("mailing_list"),
            &json!("list-id=dev.lists.example.org dkim=pass header.d=lists.example.org")
        ),
        "{out:#}"
    );
    assert_eq!(
        relayed_json("list-dkim", &["--mailing-list-action", "accept"])["disposition"],
        "accept"
    );
    assert_eq!(
        relayed_json("list-dkim", &["--mailing-list-action", "off"])["disposition"],
        "reject"
    );
    assert_eq!(relayed_json("list-id-alone", &[])["disposition"], "reject");

    let out = relayed_json("list-id-alone", &["--trusted-forwarder", "198.51.100.0/24"]);
    assert_eq!(
        (
            &out["disposition"],
            &out["override_reason"],
            &out["override_comment"]
        ),
        (
            &json!("accept"),
            &json!("trusted_forwarder"),
            &json!("client=198.51.100.7 in 198.51.100.0/24")
        )
    );
    let out = relayed_json(
        "forwarder-dkim",
        &["--trusted-forwarder", "dkim:forwarder.example.net"],
    );
    assert_eq!(
        out["override_comment"],
        "dkim=pass header.d=forwarder.example.net"
    );
    assert_eq!(out["disposition"], "accept");

    let out = relayed_json(
        "list-id-alone",
        &["--policy-override", "example.com=quarantine"],
    );
    assert_eq!(
        (
            &out["disposition"],
            &out["override_reason"],
            &out["override_comment"]
        ),
        (
            &json!("quarantine"),
            &json!("local_policy"),
            &json!("policy_override from_domain=example.com action=quarantine")
        )
    );
}

#[test]
fn overrides_are_never_applied_to_pass_or_none() {
    if !chains::available() {
        return;
    }
    let everything = [
        "--trusted-arc-sealer",
        "lists.example.org",
        "--trusted-forwarder",
        "0.0.0.0/0",
        "--mailing-list-action",
        "accept",
        "--policy-override",
        "example.com=accept",
        "--policy-override",
        "nodmarc.example=accept",
    ];
    let out = relayed_json("original", &everything);
    assert_eq!(
        (&out["dmarc"]["result"], &out["override_reason"]),
        (&json!("pass"), &Value::Null)
    );
    let out = relayed_json("nodmarc-forwarded", &everything);
    assert_eq!(
        (
            &out["dmarc"]["result"],
            &out["arc"]["result"],
            &out["override_reason"]
        ),
        (&json!("none"), &json!("pass"), &Value::Null)
    );
}

#[test]
fn explain_shows_every_override_tried() {
    if !chains::available() {
        return;
    }
    let run = relayed("list-id-alone", &["--explain"]).ok();
    let trail = run
        .stdout
        .split("Decision trail:\n")
        .nth(1)
        .expect("a decision trail");
    for tried in [
        "override trusted ARC sealer for example.com: does not apply: no trusted_arc_sealers",
        "override trusted forwarder for example.com: does not apply: no trusted_forwarders",
        "override mailing list for example.com: does not apply: List-Id <dev.lists.example.org> is not authenticated",
        "override local policy for example.com: does not apply: no policy_override",
    ] {
        assert!(trail.contains(tried), "{tried}\n{trail}");
    }
    let out = relayed_json(
        "list-trusted",
        &["--explain", "--trusted-arc-sealer", "lists.example.org"],
    );
    let trail: Vec<&str> = out["trail"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        trail.iter().any(|s| s.starts_with(
            "override trusted ARC sealer for example.com: reject becomes accept (trusted_forwarder: arc=pass i=1 sealer=lists.example.org"
        )),
        "{trail:#?}"
    );
}

#[test]
fn bad_override_options_are_usage_errors() {
    for args in [
        ["--trusted-arc-sealer", "not a domain"],
        ["--trusted-forwarder", "forwarder.example.net"],
        ["--trusted-forwarder", "192.0.2.0/33"],
        ["--mailing-list-action", "reject"],
        ["--policy-override", "example.com=reject"],
        ["--policy-override", "example.com"],
    ] {
        let mut all = args.to_vec();
        all.push("examples/data/forged.eml");
        let line = run(&all).usage_error();
        assert!(line.contains(args[0]), "{args:?}: {line}");
    }
}
