//! SPF (`dmarc_verifier::spf`): reading records and check_host() over an
//! in-memory zone.
//!
//! Input: the first byte picks the client (IPv4, IPv6, IPv4-mapped) and the
//! sender's local-part; the rest, split at the first 0xff, is the record of
//! `example.com` and the record of `inc.example.com` (which the first may
//! include or redirect to). The zone also holds a few addresses, MX and PTR
//! records, and an explanation.
//!
//! Checks: no panic, no hang (the zone answers at once, so the check ends
//! in one poll); the same input gives the same outcome twice (the second
//! time from the memo of records read); at most 10 terms asked the DNS
//! (11 when that limit decided), at most 3 were void; a record that does
//! not start with `v=spf1` gives `none`; an explanation only with `fail`.
#![no_main]

use dmarc_verifier::{
    dns::zone::{RecordData, Zone, ZoneRecord},
    spf::{check_host, SpfOptions, SpfOutcome, SpfRequest},
    SpfResult,
};
use libfuzzer_sys::fuzz_target;
use std::{
    future::Future,
    net::IpAddr,
    pin::pin,
    task::{Context, Poll, Waker},
};

const ZONE: &str = "\
example.com. A 192.0.2.1
example.com. MX 10 mx.example.com.
mx.example.com. A 192.0.2.2
mx.example.com. AAAA 2001:db8::2
1.2.0.192.in-addr.arpa. PTR mail.example.com.
mail.example.com. A 192.0.2.1
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mx.example.com.
exp.example.com. TXT \"%{i} is not %{d}'s (%{c} %{r} %{p} %{l} %{S})\"
";

fn record(name: &str, text: &[u8]) -> ZoneRecord {
    ZoneRecord {
        name: name.to_string(),
        ttl: 300,
        data: RecordData::Txt(text.chunks(255).map(<[u8]>::to_vec).collect()),
    }
}

/// The outcome of a check whose lookups all answer at once.
fn run(zone: &Zone, request: &SpfRequest<'_>) -> SpfOutcome {
    let options = SpfOptions::default();
    let mut future = pin!(check_host(zone, request, &options));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => panic!("check_host waited on a zone that answers at once"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (top, included) = match rest.iter().position(|&octet| octet == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(mut zone) = Zone::parse(ZONE, None) else {
        return;
    };
    zone.insert(record("example.com", top));
    zone.insert(record("inc.example.com", included));
    let ip: IpAddr = match first & 3 {
        0 => "192.0.2.1".parse(),
        1 => "2001:db8::2".parse(),
        2 => "::ffff:192.0.2.1".parse(),
        _ => "198.51.100.7".parse(),
    }
    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let sender = match first >> 2 & 3 {
        0 => "user@example.com",
        1 => "@example.com",
        2 => "a.b+c-d=e@example.com",
        _ => "",
    };
    let request = SpfRequest::mail_from(ip, "mail.example.com", sender);
    let outcome = run(&zone, &request);
    let again = run(&zone, &request);
    assert_eq!(outcome, again, "not deterministic");
    assert!(outcome.dns_lookups <= 11, "{outcome:?}");
    assert!(outcome.void_lookups <= 3, "{outcome:?}");
    let spf_record = top.len() >= 6
        && top[..6].eq_ignore_ascii_case(b"v=spf1")
        && top.get(6).map_or(true, |&octet| octet == b' ');
    if !spf_record && sender != "" {
        assert_eq!(outcome.result, SpfResult::None, "{outcome:?}");
    }
    if outcome.explanation.is_some() {
        assert_eq!(outcome.result, SpfResult::Fail, "{outcome:?}");
    }
});
