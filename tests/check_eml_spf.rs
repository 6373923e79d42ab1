//! The RFC 7208 suite (203 cases) through `check-eml` as a process: each
//! case's records as a zone file (`--zone`), or, for the cases that need a
//! timeout or SERVFAIL (a zone file cannot say that), served by test-dns
//! with those faults (`--nameserver`); the envelope on the command line;
//! the SPF result of `--json` must be one the suite allows. The same check
//! as the library's conformance test, through the program a postmaster
//! runs.

mod common;
#[path = "../crates/dmarc-verifier/tests/spf_suite/mod.rs"]
mod spf_suite;

use common::run_with_stdin;
use dmarc_verifier::dns::zone::{RecordData, Zone, ZoneRecord};
use serde_json::Value;
use spf_suite::{records_of, str_of, suite, zone_text};
use test_dns::{Fault, TestDns};

#[test]
fn rfc7208_suite_through_check_eml() {
    let Some(cases) = suite("spf_rfc7208_cases.jsonl") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-eml-spf");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let message = b"From: conformance@example.invalid\r\n\r\nx\r\n";
    let mut problems = Vec::new();
    let mut through_zone = 0;
    let spf_cases: Vec<&Value> = cases
        .iter()
        .filter(|c| str_of(c, "kind") == "spf_check")
        .collect();
    assert_eq!(spf_cases.len(), 203);
    for (i, case) in spf_cases.into_iter().enumerate() {
        let id = str_of(case, "id");
        let (mut records, faults) = records_of(
            case.get("dns")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        );
        // A zone file needs an origin with an SOA for its negative answers.
        records.push(ZoneRecord {
            name: "invalid".to_string(),
            ttl: 300,
            data: RecordData::Ns("ns.invalid".to_string()),
        });
        let env = case.get("envelope").cloned().unwrap_or(Value::Null);
        let envelope = [
            "--client-ip",
            str_of(&env, "client_ip"),
            "--helo",
            str_of(&env, "helo"),
            "--mail-from",
            str_of(&env, "mail_from"),
        ];
        let text = zone_text(&records);
        let _dns;
        let server;
        let zone_file = dir.join(format!("case-{i}.zone"));
        let mut args: Vec<&str> = vec!["--json"];
        if faults.is_empty() {
            std::fs::write(&zone_file, &text).expect("zone file");
            args.extend(["--zone", zone_file.to_str().expect("UTF-8 path")]);
            through_zone += 1;
        } else {
            let zone = Zone::parse(&text, None).expect("zone text");
            let dns = runtime
                .block_on(TestDns::start_with_zone(zone))
                .expect("test DNS");
            for (name, rtype, what) in &faults {
                let fault = if *what == "timeout" {
                    Fault::Timeout
                } else {
                    Fault::ServFail
                };
                dns.set_fault(name, Some(*rtype), fault);
            }
            server = dns.addr().to_string();
            _dns = dns;
            args.extend(["--nameserver", &server, "--dns-timeout", "1"]);
        }
        args.extend(envelope);
        args.push("-");
        let run = run_with_stdin(&args, message);
        if run.code != Some(0) {
            problems.push(format!("{id}: check-eml failed: {run:?}"));
            continue;
        }
        let out = run.json();
        let got = out["spf"]["result"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let expected = case.get("expected").cloned().unwrap_or(Value::Null);
        let mut acceptable: Vec<String> = expected
            .get("spf_acceptable")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        acceptable.push(str_of(&expected, "spf").to_string());
        if !acceptable.contains(&got) {
            problems.push(format!(
                "{id}: check-eml says spf={got} ({}), expected one of {acceptable:?}",
                out["spf"]["reason"]
            ));
        }
    }
    eprintln!(
        "RFC 7208 suite through check-eml: 203 cases ({through_zone} with --zone), {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
