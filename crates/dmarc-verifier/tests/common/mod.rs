//! Shared set-up of the integration tests: a real DNS server (test-dns) on
//! 127.0.0.1 and a verifier that asks only it.

#![allow(dead_code)]

use dmarc_verifier::{DnsConfig, Envelope, Nameservers, Verdict, Verifier, VerifierConfig};
use std::{path::PathBuf, time::Duration};
use test_dns::TestDns;

/// A fixture file from `tests/data/`.
pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DKIM keys of the signed fixtures plus `extra` zone text.
pub fn zone(extra: &str) -> String {
    let keys = String::from_utf8(data("signed.zone")).expect("utf-8 zone");
    format!(
        "{keys}\nexample.org. IN SOA ns1.example.org. hostmaster.example.org. 1 3600 900 604800 300\n{extra}\n"
    )
}

/// The configuration every test starts from: our test server only, short
/// timeouts, the bundled Public Suffix List, a fixed authserv-id.
pub fn config(dns: &TestDns) -> VerifierConfig {
    VerifierConfig {
        authserv_id: "mx.test".to_string(),
        psl_path: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/public_suffix_list.dat"),
        ),
        dns: DnsConfig {
            nameservers: Nameservers::Explicit(vec![dns.addr()]),
            timeout: Duration::from_millis(400),
            attempts: 1,
            ..DnsConfig::default()
        },
        ..VerifierConfig::default()
    }
}

/// Starts a server for `zone_text` and a verifier configured by `tweak`.
pub async fn setup(
    zone_text: &str,
    tweak: impl FnOnce(&mut VerifierConfig),
) -> (TestDns, Verifier) {
    let dns = TestDns::start(zone_text).await.expect("test DNS server");
    let mut cfg = config(&dns);
    tweak(&mut cfg);
    let verifier = Verifier::new(cfg).expect("verifier");
    (dns, verifier)
}

/// An envelope from `ip` with HELO `mail.example.com`.
pub fn envelope(ip: &str, mail_from: &str) -> Envelope {
    Envelope::new(ip.parse().expect("ip"), "mail.example.com", mail_from)
}

/// A short unsigned message with the given From value.
pub fn message(from: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: rcpt@example.org\r\nSubject: test\r\nDate: Mon, 10 Jun 2024 06:13:20 +0000\r\nMessage-ID: <t@example.org>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Prints the trail when a test fails, so the reason is in the output.
pub fn explain(verdict: &Verdict) -> String {
    verdict
        .trail
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}
