//! The RFC 7208 test suite (203 cases) and OpenDMARC's SPF rows, from
//! `$DMARC_CONFORMANCE_DIR`, through our SPF engine (`dmarc_verifier::spf`)
//! over an in-memory [`Zone`] built from each case's DNS entries: every
//! case must give a result the suite allows, and the explanation it gives
//! where it gives one.
//!
//! Each case runs twice: over a zone of records inserted as the case lists
//! them, and over the same records written as zone text (names and strings
//! with RFC 1035 §5.1 escapes) and read back by `Zone::parse`; both must
//! agree.
//!
//! `SPF_CASE_DEBUG=<part of a case id>` prints the outcome of matching
//! cases.

#[path = "spf_suite/mod.rs"]
mod spf_suite;

use dmarc_verifier::{
    dns::zone::{RecordType, Zone},
    spf::{
        check_host, reverse_name, Answer, LookupError, SpfLookup, SpfOptions, SpfOutcome,
        SpfRequest,
    },
};
use serde_json::Value;
use spf_suite::{records_of, str_of, suite, zone_text};
use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// A zone plus the suite's failures: a question for a (name, type) listed
/// here fails as a timeout or SERVFAIL would.
struct CaseDns {
    zone: Zone,
    faults: Vec<(String, RecordType, &'static str)>,
}

impl CaseDns {
    fn fault(&self, name: &str, rtype: RecordType) -> Result<(), LookupError> {
        match self
            .faults
            .iter()
            .find(|(n, t, _)| n == name && *t == rtype)
        {
            Some((_, _, what)) => Err(LookupError::new(*what)),
            None => Ok(()),
        }
    }

    fn ask<T: Send>(
        &self,
        name: &str,
        rtype: RecordType,
        ask: impl Future<Output = Result<Answer<T>, LookupError>> + Send,
    ) -> impl Future<Output = Result<Answer<T>, LookupError>> + Send {
        let fault = self.fault(name, rtype);
        async move {
            fault?;
            ask.await
        }
    }
}

impl SpfLookup for CaseDns {
    fn txt(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Box<[u8]>>, LookupError>> + Send {
        self.ask(name, RecordType::Txt, self.zone.txt(name))
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Answer<Ipv4Addr>, LookupError>> + Send {
        self.ask(name, RecordType::A, self.zone.a(name))
    }
    fn aaaa(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Ipv6Addr>, LookupError>> + Send {
        self.ask(name, RecordType::Aaaa, self.zone.aaaa(name))
    }
    fn mx(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<(u16, Box<str>)>, LookupError>> + Send {
        self.ask(name, RecordType::Mx, self.zone.mx(name))
    }
    fn ptr(
        &self,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Answer<Box<str>>, LookupError>> + Send {
        self.ask(&reverse_name(ip), RecordType::Ptr, self.zone.ptr(ip))
    }
}

/// One case run: what we got, what the suite allows.
struct Run {
    id: String,
    outcome: SpfOutcome,
    acceptable: Vec<String>,
    /// The explanation the suite expects; `Some("DEFAULT")` for none of
    /// the record's.
    explanation: Option<String>,
}

impl Run {
    fn problem(&self) -> Option<String> {
        let got = self.outcome.result.as_str();
        if !self.acceptable.iter().any(|a| a == got) {
            return Some(format!(
                "{}: got {got} ({}), expected one of {:?}",
                self.id, self.outcome.reason, self.acceptable
            ));
        }
        match (&self.explanation, &self.outcome.explanation) {
            (None, _) => None,
            (Some(expected), None) if expected == "DEFAULT" => None,
            // The suite writes the nibbles of v-macro-ip6 in upper case;
            // RFC 7208 §7.4 writes them in lower case, as we do.
            (Some(expected), Some(got)) if expected.eq_ignore_ascii_case(got) => None,
            (expected, got) => Some(format!(
                "{}: explanation {got:?}, expected {expected:?}",
                self.id
            )),
        }
    }
}

async fn run_cases(cases: &[Value]) -> Vec<Run> {
    let debug = std::env::var("SPF_CASE_DEBUG").ok();
    let mut runs = Vec::new();
    for case in cases.iter().filter(|c| str_of(c, "kind") == "spf_check") {
        let id = str_of(case, "id").to_string();
        let dns = case
            .get("dns")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let (records, faults) = records_of(dns);
        let mut inserted = Zone::default();
        for record in &records {
            inserted.insert(record.clone());
        }
        let text = zone_text(&records);
        let parsed = Zone::parse(&text, None).unwrap_or_else(|e| panic!("{id}: {e}\n{text}"));
        let envelope = case.get("envelope").cloned().unwrap_or(Value::Null);
        let ip: IpAddr = str_of(&envelope, "client_ip").parse().expect("client_ip");
        let request = SpfRequest::mail_from(
            ip,
            str_of(&envelope, "helo"),
            str_of(&envelope, "mail_from"),
        );
        let options = SpfOptions {
            receiver: Some("mx.receiver.example".to_string()),
            ..SpfOptions::default()
        };
        let outcome = check_host(
            &CaseDns {
                zone: inserted,
                faults: faults.clone(),
            },
            &request,
            &options,
        )
        .await;
        let from_text = check_host(
            &CaseDns {
                zone: parsed,
                faults,
            },
            &request,
            &options,
        )
        .await;
        assert_eq!(
            (outcome.result, &outcome.explanation),
            (from_text.result, &from_text.explanation),
            "{id}: the zone read from text answers differently\n{text}"
        );
        let expected = case.get("expected").cloned().unwrap_or(Value::Null);
        let mut acceptable: Vec<String> = expected
            .get("spf_acceptable")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let spf = str_of(&expected, "spf").to_string();
        if !acceptable.contains(&spf) {
            acceptable.push(spf);
        }
        if debug.as_deref().is_some_and(|d| id.contains(d)) {
            eprintln!(
                "--- {id}: {outcome} / explanation {:?} / record {:?} / {} lookups, {} void",
                outcome.explanation, outcome.record, outcome.dns_lookups, outcome.void_lookups
            );
        }
        runs.push(Run {
            id,
            outcome,
            acceptable,
            explanation: expected
                .get("explanation")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    runs
}

#[tokio::test]
async fn rfc7208_suite_203_of_203() {
    let Some(cases) = suite("spf_rfc7208_cases.jsonl") else {
        return;
    };
    let runs = run_cases(&cases).await;
    assert_eq!(runs.len(), 203, "the suite has 203 SPF cases");
    let problems: Vec<String> = runs.iter().filter_map(Run::problem).collect();
    let explained = runs.iter().filter(|run| run.explanation.is_some()).count();
    eprintln!(
        "RFC 7208 suite through the SPF engine: {} cases, {} agree ({explained} with an explanation checked)",
        runs.len(),
        runs.len() - problems.len()
    );
    assert!(
        problems.is_empty(),
        "RFC 7208 suite:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn opendmarc_spf_rows() {
    let Some(cases) = suite("opendmarc_libtests.jsonl") else {
        return;
    };
    let runs = run_cases(&cases).await;
    assert_eq!(runs.len(), 5, "OpenDMARC has 5 SPF rows");
    let problems: Vec<String> = runs.iter().filter_map(Run::problem).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}
