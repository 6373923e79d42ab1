//! check_host() over zones: limits, lookups asked, failures, time, the
//! identities, order independence.

// Tests may panic on what they set up themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::dns::zone::Zone;
use std::{
    future::Future,
    net::{Ipv4Addr, Ipv6Addr},
    pin::pin,
    sync::Mutex,
    task::{Context, Poll, Waker},
};

/// The value of a future that is ready at once (the zone's).
fn now<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the zone answers at once"),
    }
}

/// A zone that logs every question (`"<TYPE> <name>"`), and can fail,
/// never answer, or answer its records in reverse order.
#[derive(Default)]
struct Dns {
    zone: Zone,
    asked: Mutex<Vec<String>>,
    /// Questions answered SERVFAIL.
    fail: Vec<String>,
    /// A question never answered.
    hang: Option<String>,
    /// Answer records in reverse order.
    reverse: bool,
}

impl Dns {
    fn new(zone_text: &str) -> Dns {
        Dns {
            zone: Zone::parse(zone_text, None).unwrap(),
            ..Dns::default()
        }
    }

    fn failing(mut self, question: &str) -> Dns {
        self.fail.push(question.to_string());
        self
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    fn answer<T: Clone + Send + Sync + 'static>(
        &self,
        question: String,
        answer: Result<Answer<T>, LookupError>,
    ) -> impl Future<Output = Result<Answer<T>, LookupError>> + Send {
        let fail = self.fail.contains(&question);
        let hang = self.hang.as_ref() == Some(&question);
        let reverse = self.reverse;
        self.asked.lock().unwrap().push(question);
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if fail {
                return Err(LookupError::new("SERVFAIL"));
            }
            Ok(match answer? {
                Answer::Records(records) if reverse => {
                    let mut records = records.to_vec();
                    records.reverse();
                    Answer::Records(records.into())
                }
                other => other,
            })
        }
    }
}

impl SpfLookup for Dns {
    fn txt(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Box<[u8]>>, LookupError>> + Send {
        self.answer(format!("TXT {name}"), now(self.zone.txt(name)))
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Answer<Ipv4Addr>, LookupError>> + Send {
        self.answer(format!("A {name}"), now(self.zone.a(name)))
    }
    fn aaaa(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Ipv6Addr>, LookupError>> + Send {
        self.answer(format!("AAAA {name}"), now(self.zone.aaaa(name)))
    }
    fn mx(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<(u16, Box<str>)>, LookupError>> + Send {
        self.answer(format!("MX {name}"), now(self.zone.mx(name)))
    }
    fn ptr(
        &self,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Answer<Box<str>>, LookupError>> + Send {
        self.answer(format!("PTR {ip}"), now(self.zone.ptr(ip)))
    }
}

async fn check(dns: &Dns, ip: &str, mail_from: &str) -> SpfOutcome {
    let request = SpfRequest::mail_from(ip.parse().unwrap(), "mail.example.org", mail_from);
    check_host(dns, &request, &SpfOptions::default()).await
}

/// `count` names `<prefix>1.example.com`... each with an A record that
/// does not match 192.0.2.1.
fn hosts(prefix: &str, count: usize) -> String {
    (1..=count)
        .map(|i| format!("{prefix}{i}.example.com. A 198.51.100.{i}\n"))
        .collect()
}

fn terms(mechanism: &str, prefix: &str, count: usize) -> String {
    (1..=count)
        .map(|i| format!(" {mechanism}:{prefix}{i}.example.com"))
        .collect()
}

/// RFC 7208 §4.6.4: 10 terms that ask the DNS are fine, the 11th is a
/// permerror, wherever it is (include, redirect); all, ip4 and ip6 do not
/// count.
#[tokio::test]
async fn dns_lookup_limit() {
    let ips: String = (1..=20)
        .map(|i| format!(" ip4:203.0.113.{i} ip6:2001:db8::{i}"))
        .collect();
    let at_limit = Dns::new(&format!(
        "example.com. TXT \"v=spf1{ips}{} ip4:192.0.2.1 -all\"\n{}",
        terms("a", "h", 10),
        hosts("h", 11)
    ));
    let outcome = check(&at_limit, "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
    assert_eq!(outcome.dns_lookups, 10);

    let over = Dns::new(&format!(
        "example.com. TXT \"v=spf1{} ip4:192.0.2.1 -all\"\n{}",
        terms("a", "h", 11),
        hosts("h", 11)
    ));
    let outcome = check(&over, "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::PermError);
    assert_eq!(
        outcome.reason,
        "DNS lookup limit (10) exceeded at a:h11.example.com of example.com (RFC 7208 §4.6.4)"
    );
    assert_eq!(outcome.dns_lookups, 11);
    // The 11th term was never asked.
    assert!(!over.asked().contains(&"A h11.example.com".to_string()));

    // Across includes and a redirect: 1 + 4 + 1 + 4 = 10, then one more.
    let nested = |extra: &str| {
        Dns::new(&format!(
            "example.com. TXT \"v=spf1 include:i.example.com redirect=r.example.com\"\n\
             i.example.com. TXT \"v=spf1{}\"\n\
             r.example.com. TXT \"v=spf1{}{extra} ip4:192.0.2.1\"\n{}{}",
            terms("a", "h", 4),
            terms("a", "g", 4),
            hosts("h", 5),
            hosts("g", 5)
        ))
    };
    let outcome = check(&nested(""), "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
    assert_eq!(outcome.dns_lookups, 10);
    let outcome = check(&nested(" mx:h5.example.com"), "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::PermError, "{outcome}");
    assert!(
        outcome
            .reason
            .contains("at mx:h5.example.com of r.example.com"),
        "{outcome}"
    );
}

/// RFC 7208 §4.6.4: more than 2 terms answered NXDOMAIN or NODATA is a
/// permerror; an explanation or a `ptr` without PTR records does not
/// count.
#[tokio::test]
async fn void_lookup_limit() {
    let zone = |terms: &str| {
        Dns::new(&format!(
            "example.com. TXT \"v=spf1 {terms} ?all exp=nowhere.example.com\"\n\
             nodata.example.com. TXT \"hello\"\n"
        ))
    };
    // NXDOMAIN for a, NODATA for mx, and three ptr of a client without PTR.
    let outcome = check(
        &zone("a:nx.example.com mx:nodata.example.com ptr ptr ptr"),
        "192.0.2.1",
        "a@example.com",
    )
    .await;
    assert_eq!(outcome.result, SpfResult::Neutral, "{outcome}");
    assert_eq!(outcome.void_lookups, 2);
    let outcome = check(
        &zone("a:nx.example.com mx:nodata.example.com exists:nx2.example.com"),
        "192.0.2.1",
        "a@example.com",
    )
    .await;
    assert_eq!(outcome.result, SpfResult::PermError);
    assert_eq!(
        outcome.reason,
        "void lookup limit (2) exceeded at exists:nx2.example.com of example.com: nothing at \
         nx2.example.com (RFC 7208 §4.6.4)"
    );
    // The explanation of a fail is looked up after the limit counted.
    let fail = Dns::new(
        "example.com. TXT \"v=spf1 a:nx.example.com a:nx2.example.com -all exp=nx3.example.com\"\n",
    );
    let outcome = check(&fail, "192.0.2.1", "a@example.com").await;
    assert_eq!((outcome.result, outcome.void_lookups), (SpfResult::Fail, 2));
    assert!(fail.asked().contains(&"TXT nx3.example.com".to_string()));
}

/// RFC 7208 §4.6.4: an mx that would look up the addresses of an 11th
/// MX name is a permerror; one that matches before is not. Names are tried
/// by preference (then name), so the answer's order does not matter.
#[tokio::test]
async fn mx_name_limit() {
    // `count` MX names, preferences 1..count; the one at `matching`
    // has the client's address.
    let zone = |count: usize, matching: usize| {
        let mut text = String::from("example.com. TXT \"v=spf1 mx -all\"\n");
        for i in 1..=count {
            text.push_str(&format!("example.com. MX {i} mx{i:02}.example.com.\n"));
            let address = if i == matching {
                "192.0.2.1".to_string()
            } else {
                format!("192.0.2.{}", 100 + i)
            };
            text.push_str(&format!("mx{i:02}.example.com. A {address}\n"));
        }
        text
    };
    let tried = |dns: &Dns| -> Vec<String> {
        dns.asked()
            .into_iter()
            .filter(|q| q.starts_with("A "))
            .collect()
    };
    let names = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
        range.map(|i| format!("A mx{i:02}.example.com")).collect()
    };
    for reverse in [false, true] {
        let ten = Dns {
            reverse,
            ..Dns::new(&zone(10, 10))
        };
        let outcome = check(&ten, "192.0.2.1", "a@example.com").await;
        assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
        assert_eq!(
            tried(&ten),
            names(1..=10),
            "tried by preference (reverse {reverse})"
        );

        let eleventh = Dns {
            reverse,
            ..Dns::new(&zone(11, 11))
        };
        let outcome = check(&eleventh, "192.0.2.1", "a@example.com").await;
        assert_eq!(outcome.result, SpfResult::PermError, "{outcome}");
        assert_eq!(
            outcome.reason,
            "mx of example.com: more than 10 MX names to try (RFC 7208 §4.6.4)"
        );
        assert_eq!(tried(&eleventh), names(1..=10));

        let first = Dns {
            reverse,
            ..Dns::new(&zone(12, 3))
        };
        let outcome = check(&first, "192.0.2.1", "a@example.com").await;
        assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
        assert_eq!(tried(&first), names(1..=3));
    }
    // Same preference: by name.
    let tie = Dns {
        reverse: true,
        ..Dns::new(
            "example.com. TXT \"v=spf1 mx -all\"\n\
             example.com. MX 5 b.example.com.\n\
             example.com. MX 5 a.example.com.\n\
             example.com. MX 1 c.example.com.\n",
        )
    };
    check(&tie, "192.0.2.1", "a@example.com").await;
    assert_eq!(
        tried(&tie),
        ["A c.example.com", "A a.example.com", "A b.example.com"]
    );
    // A null MX (RFC 7505) has no address and is not asked.
    let null = Dns::new("example.com. TXT \"v=spf1 mx -all\"\nexample.com. MX 0 .\n");
    let outcome = check(&null, "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::Fail);
    assert_eq!(null.asked(), ["TXT example.com", "MX example.com"]);
}

/// RFC 7208 §4.6.4 and §5.5: of more than 10 PTR names, the first 10 are
/// looked at, the others ignored; "first" is name order, so the answer's
/// order does not matter. Only names at or below the target are
/// validated.
#[tokio::test]
async fn ptr_name_limit() {
    // n00..n10: n10 sorts last and is the one that validates.
    let zone = |valid: &str| {
        let mut text = String::from("example.com. TXT \"v=spf1 ptr -all\"\n");
        for i in 0..=10 {
            text.push_str(&format!(
                "1.2.0.192.in-addr.arpa. PTR n{i:02}.example.com.\n"
            ));
            let address = if format!("n{i:02}") == valid {
                "192.0.2.1"
            } else {
                "198.51.100.1"
            };
            text.push_str(&format!("n{i:02}.example.com. A {address}\n"));
        }
        text.push_str("1.2.0.192.in-addr.arpa. PTR x-elsewhere.example.net.\n");
        text
    };
    for reverse in [false, true] {
        let last = Dns {
            reverse,
            ..Dns::new(&zone("n10"))
        };
        let outcome = check(&last, "192.0.2.1", "a@example.com").await;
        assert_eq!(
            outcome.result,
            SpfResult::Fail,
            "n10 is the 11th name ({reverse})"
        );
        let asked: Vec<String> = last
            .asked()
            .into_iter()
            .filter(|q| q.starts_with("A "))
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("A n{i:02}.example.com")).collect();
        assert_eq!(
            asked, expected,
            "n10 and x-elsewhere.example.net are ignored"
        );

        let tenth = Dns {
            reverse,
            ..Dns::new(&zone("n09"))
        };
        let outcome = check(&tenth, "192.0.2.1", "a@example.com").await;
        assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
    }
}

/// RFC 7208 §5: an IPv4-mapped IPv6 client is an IPv4 client: ip4
/// matches it, ip6 does not, `a` asks A, and macros see the IPv4 address.
#[tokio::test]
async fn ipv4_mapped_clients() {
    let dns = Dns::new(
        "ip6.example.com. TXT \"v=spf1 ip6:::ffff:192.0.2.1/96 ip6:::/0 -all\"\n\
         ip4.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
         a.example.com. TXT \"v=spf1 a:host.example.com -all\"\n\
         host.example.com. A 192.0.2.1\n\
         host.example.com. AAAA ::ffff:192.0.2.1\n\
         macro.example.com. TXT \"v=spf1 exists:%{ir}.%{v}.example.com -all\"\n\
         1.2.0.192.in-addr.example.com. A 127.0.0.2\n",
    );
    for ip in ["::ffff:192.0.2.1", "::FFFF:c000:201"] {
        assert_eq!(
            check(&dns, ip, "x@ip6.example.com").await.result,
            SpfResult::Fail,
            "{ip}"
        );
        assert_eq!(
            check(&dns, ip, "x@ip4.example.com").await.result,
            SpfResult::Pass,
            "{ip}"
        );
        assert_eq!(
            check(&dns, ip, "x@a.example.com").await.result,
            SpfResult::Pass,
            "{ip}"
        );
        assert_eq!(
            check(&dns, ip, "x@macro.example.com").await.result,
            SpfResult::Pass,
            "{ip}"
        );
    }
    assert!(
        !dns.asked().iter().any(|q| q.starts_with("AAAA")),
        "{:?}",
        dns.asked()
    );
    // A real IPv6 client: ip6:::/0 matches, ip4 does not.
    assert_eq!(
        check(&dns, "2001:db8::1", "x@ip6.example.com").await.result,
        SpfResult::Pass
    );
    assert_eq!(
        check(&dns, "2001:db8::1", "x@ip4.example.com").await.result,
        SpfResult::Fail
    );
}

/// Only the types RFC 7208 names are asked, of the family of the client;
/// `exists` asks A even for an IPv6 client (§5.7); names that cannot be
/// asked never are.
#[tokio::test]
async fn asks_only_what_the_rfc_names() {
    let dns = Dns::new(
        "example.com. TXT \"v=spf1 exists:e.example.com a mx ptr:example.com include:i.example.com -all\"\n\
         example.com. MX 10 mx.example.com.\n\
         i.example.com. TXT \"v=spf1 ?all\"\n",
    );
    let outcome = check(&dns, "2001:db8::1", "x@example.com").await;
    assert_eq!(outcome.result, SpfResult::Fail, "{outcome}");
    assert_eq!(
        dns.asked(),
        [
            "TXT example.com",
            "A e.example.com",
            "AAAA example.com",
            "MX example.com",
            "AAAA mx.example.com",
            "PTR 2001:db8::1",
            "TXT i.example.com",
        ]
    );

    let long = "l".repeat(64);
    let dns = Dns::new(
        "example.com. TXT \"v=spf1 a:%{l}.example.com mx:%{l}.example.com exists:%{l}.example.com ptr:%{l}.example.com -all\"\n\
         inc.example.com. TXT \"v=spf1 include:%{l}.example.com\"\n\
         red.example.com. TXT \"v=spf1 redirect=%{l}.example.com\"\n",
    );
    let outcome = check(&dns, "192.0.2.1", &format!("{long}@example.com")).await;
    assert_eq!(
        outcome.result,
        SpfResult::Fail,
        "a name that cannot exist matches nothing"
    );
    assert_eq!((outcome.dns_lookups, outcome.void_lookups), (4, 0));
    for domain in ["inc.example.com", "red.example.com"] {
        let outcome = check(&dns, "192.0.2.1", &format!("{long}@{domain}")).await;
        assert_eq!(outcome.result, SpfResult::PermError, "{outcome}");
        assert!(
            outcome.reason.contains("a label is longer than 63 octets"),
            "{outcome}"
        );
    }
    assert!(
        dns.asked()
            .iter()
            .all(|q| q.starts_with("TXT ") && !q.contains(&long)),
        "{:?}",
        dns.asked()
    );
}

/// RFC 7208 §5: a failed lookup of a term is temperror; §5.5: not for
/// `ptr`, whose failures make it not match or skip a name; §6.2: a failed
/// explanation lookup leaves no explanation.
#[tokio::test]
async fn lookup_failures() {
    let zone = "example.com. TXT \"v=spf1 ptr a:a.example.com mx:m.example.com exists:e.example.com -all exp=x.example.com\"\n\
                m.example.com. MX 1 mx.example.com.\n\
                1.2.0.192.in-addr.arpa. PTR v.example.com.\n\
                x.example.com. TXT \"no\"\n\
                inc.example.com. TXT \"v=spf1 include:down.example.com -all\"\n";
    let no = Some("no");
    let cases = [
        ("TXT example.com", SpfResult::TempError, "DNS lookup of TXT example.com failed: SERVFAIL", None),
        ("PTR 192.0.2.1", SpfResult::Fail, "mechanism -all of example.com matched", no),
        ("A v.example.com", SpfResult::Fail, "mechanism -all of example.com matched", no),
        (
            "A a.example.com",
            SpfResult::TempError,
            "DNS lookup of A a.example.com failed (SERVFAIL) at a:a.example.com of example.com",
            None,
        ),
        (
            "MX m.example.com",
            SpfResult::TempError,
            "DNS lookup of MX m.example.com failed (SERVFAIL) at mx:m.example.com of example.com",
            None,
        ),
        (
            "A mx.example.com",
            SpfResult::TempError,
            "DNS lookup of A mx.example.com failed (SERVFAIL) at mx:m.example.com of example.com",
            None,
        ),
        (
            "A e.example.com",
            SpfResult::TempError,
            "DNS lookup of A e.example.com failed (SERVFAIL) at exists:e.example.com of example.com",
            None,
        ),
        ("TXT x.example.com", SpfResult::Fail, "mechanism -all of example.com matched", None),
    ];
    for (failing, result, reason, explanation) in cases {
        let dns = Dns::new(zone).failing(failing);
        let outcome = check(&dns, "192.0.2.1", "a@example.com").await;
        assert_eq!(
            (outcome.result, outcome.reason.as_str()),
            (result, reason),
            "{failing}"
        );
        assert_eq!(outcome.explanation.as_deref(), explanation, "{failing}");
    }
    let ok = check(&Dns::new(zone), "192.0.2.1", "a@example.com").await;
    assert_eq!(ok.explanation.as_deref(), Some("no"));
    let dns = Dns::new(zone).failing("TXT down.example.com");
    let outcome = check(&dns, "192.0.2.1", "a@inc.example.com").await;
    assert_eq!(outcome.result, SpfResult::TempError, "{outcome}");
}

/// RFC 7208 §4.6.4: the time spent waiting on the DNS is bounded;
/// beyond it, temperror saying what was awaited. An explanation that does
/// not come in time is dropped, the fail stays.
#[tokio::test]
async fn time_budget() {
    let zone = "example.com. TXT \"v=spf1 a:slow.example.com -all exp=x.example.com\"\n\
                fast.example.com. TXT \"v=spf1 -all exp=x.example.com\"\n";
    let options = SpfOptions {
        time_budget: Duration::from_millis(20),
        ..SpfOptions::default()
    };
    let slow = Dns {
        hang: Some("A slow.example.com".to_string()),
        ..Dns::new(zone)
    };
    let request = SpfRequest::mail_from("192.0.2.1".parse().unwrap(), "h.example", "a@example.com");
    let outcome = check_host(&slow, &request, &options).await;
    assert_eq!(outcome.result, SpfResult::TempError);
    assert_eq!(
        outcome.reason,
        "time limit of 20ms exceeded waiting for A slow.example.com (RFC 7208 §4.6.4)"
    );
    assert_eq!(
        outcome.record.as_deref(),
        Some("v=spf1 a:slow.example.com -all exp=x.example.com")
    );

    let slow_exp = Dns {
        hang: Some("TXT x.example.com".to_string()),
        ..Dns::new(zone)
    };
    let request = SpfRequest::mail_from(
        "192.0.2.1".parse().unwrap(),
        "h.example",
        "a@fast.example.com",
    );
    let outcome = check_host(&slow_exp, &request, &options).await;
    assert_eq!(
        (outcome.result, outcome.explanation),
        (SpfResult::Fail, None)
    );
}

/// RFC 7208 §5.2: what an included result makes of the include.
#[tokio::test]
async fn include_results() {
    let cases = [
        ("pass", "+all", SpfResult::SoftFail),
        ("fail", "-all", SpfResult::Neutral),
        ("softfail", "~all", SpfResult::Neutral),
        ("neutral", "?all", SpfResult::Neutral),
        ("default", "", SpfResult::Neutral),
        ("permerror", " bogus", SpfResult::PermError),
        ("temperror", " -all", SpfResult::TempError),
    ];
    let mut zone = String::new();
    for (name, terms, _) in cases {
        zone.push_str(&format!(
            "{name}.example.com. TXT \"v=spf1{}{terms}\"\n\
             top-{name}.example.com. TXT \"v=spf1 ~include:{name}.example.com ?all\"\n",
            if terms.is_empty() || terms.starts_with(' ') {
                ""
            } else {
                " "
            }
        ));
    }
    zone.push_str(
        "none.example.com. TXT \"not spf\"\n\
         top-none.example.com. TXT \"v=spf1 ~include:none.example.com ?all\"\n\
         top-nxdomain.example.com. TXT \"v=spf1 ~include:nxdomain.example.com ?all\"\n",
    );
    let dns = Dns::new(&zone).failing("TXT temperror.example.com");
    for (name, _, expected) in cases {
        let outcome = check(&dns, "192.0.2.1", &format!("a@top-{name}.example.com")).await;
        assert_eq!(outcome.result, expected, "{name}: {outcome}");
    }
    for name in ["none", "nxdomain"] {
        let outcome = check(&dns, "192.0.2.1", &format!("a@top-{name}.example.com")).await;
        assert_eq!(outcome.result, SpfResult::PermError, "{name}: {outcome}");
        assert!(outcome.reason.ends_with("(RFC 7208 §5.2)"), "{outcome}");
    }
}

/// RFC 7208 §2.3, §2.4, §4.3: the identities and `<sender>`.
#[tokio::test]
async fn identities() {
    let dns = Dns::new(
        "example.com. TXT \"v=spf1 exists:%{l}.%{o}.%{d}.s.example.net -all exp=x.example.net\"\n\
         mail.example.org. TXT \"v=spf1 exists:%{l}.%{o}.%{d}.s.example.net -all\"\n\
         x.example.net. TXT \"%{s} %{h}\"\n\
         postmaster.mail.example.org.mail.example.org.s.example.net. A 127.0.0.2\n",
    );
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    // The null reverse-path is postmaster@<HELO>, the HELO identity.
    let request = SpfRequest::mail_from(ip, "Mail.Example.ORG.", "");
    assert_eq!(request, SpfRequest::helo(ip, "Mail.Example.ORG."));
    let outcome = check_host(&dns, &request, &SpfOptions::default()).await;
    assert_eq!(outcome.scope, SpfScope::Helo);
    assert_eq!(outcome.domain, "mail.example.org");
    assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");

    // A sender without local-part is postmaster@ (§4.3).
    let outcome = check(&dns, "192.0.2.1", "@example.com").await;
    assert_eq!(outcome.scope, SpfScope::MailFrom);
    assert_eq!(outcome.result, SpfResult::Fail);
    assert_eq!(
        outcome.explanation.as_deref(),
        Some("postmaster@example.com mail.example.org")
    );
    assert!(dns
        .asked()
        .contains(&"A postmaster.example.com.example.com.s.example.net".to_string()));

    // No domain at all, or a domain SPF cannot check: none, nothing asked.
    let quiet = Dns::new("");
    for mail_from in [
        "no-at-sign",
        "x@",
        "x@[192.0.2.1]",
        "x@localhost",
        "x@a..b.example",
    ] {
        let outcome = check(&quiet, "192.0.2.1", mail_from).await;
        assert_eq!(outcome.result, SpfResult::None, "{mail_from}");
    }
    assert!(quiet.asked().is_empty());
    assert_eq!(
        check(&quiet, "192.0.2.1", "no-at-sign").await.reason,
        "no domain to check"
    );
}

/// The outcome names the record of `<domain>` (not a redirect target's),
/// and the reason follows the include chain to the mechanism that
/// matched.
#[tokio::test]
async fn record_and_reason() {
    let dns = Dns::new(
        "example.com. TXT \"v=spf1 redirect=_spf.example.com\"\n\
         example.com. TXT \"unrelated\"\n\
         _spf.example.com. TXT \"v=spf1 include:_a.example.com -all\"\n\
         _a.example.com. TXT \"v=spf1 include:_b.example.com ~all\"\n\
         _b.example.com. TXT \"v=spf1 ip4:192.0.2.0/24\"\n",
    );
    let outcome = check(&dns, "192.0.2.1", "a@example.com").await;
    assert_eq!(outcome.result, SpfResult::Pass);
    assert_eq!(
        outcome.record.as_deref(),
        Some("v=spf1 redirect=_spf.example.com")
    );
    assert_eq!(
        outcome.reason,
        "mechanism include:_a.example.com of _spf.example.com matched: \
         mechanism include:_b.example.com of _a.example.com matched: \
         mechanism ip4:192.0.2.0/24 of _b.example.com matched"
    );
    assert_eq!(
        outcome.to_string(),
        format!("pass for example.com (mfrom): {}", outcome.reason)
    );
    let outcome = check(&dns, "198.51.100.1", "a@example.com").await;
    assert_eq!(outcome.reason, "mechanism -all of _spf.example.com matched");
}

/// Macro expansion puts any visible character in a name (RFC 7208 §7.1),
/// a backslash or a space included: they are asked as octets.
#[tokio::test]
async fn names_are_asked_as_octets() {
    let dns = Dns::new(
        "example.com. TXT \"v=spf1 a:back\\\\slash.example.com exists:%{l}.example.com -all\"\n\
         back\\\\slash.example.com. A 198.51.100.1\n\
         two\\032words.example.com. A 127.0.0.2\n",
    );
    let outcome = check(&dns, "192.0.2.1", "two words@example.com").await;
    assert_eq!(outcome.result, SpfResult::Pass, "{outcome}");
    assert_eq!(outcome.void_lookups, 0);
    assert_eq!(
        dns.asked(),
        [
            "TXT example.com",
            "A back\\slash.example.com",
            "A two words.example.com"
        ]
    );
}

/// The first 10 names in name order, whatever the order given.
#[test]
fn first_names_in_name_order() {
    let names = |list: &[&str]| -> Vec<Box<str>> { list.iter().map(|n| (*n).into()).collect() };
    let pick = |list: &[Box<str>]| -> Vec<String> {
        let (first, count) = eval::first_names(list);
        first[..count]
            .iter()
            .map(|&i| list[i].to_string())
            .collect()
    };
    let twelve: Vec<String> = (0..12).rev().map(|i| format!("n{i:02}")).collect();
    let twelve: Vec<&str> = twelve.iter().map(String::as_str).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("n{i:02}")).collect();
    assert_eq!(pick(&names(&twelve)), expected);
    assert_eq!(pick(&names(&["b", "a", "b", "a"])), ["a", "a", "b", "b"]);
    assert_eq!(pick(&names(&[])), Vec::<String>::new());
}

/// RFC 7208 §5.6: the client is in `network/cidr` when their first `cidr`
/// bits are equal.
#[test]
fn cidr_matching() {
    let v4 = |ip: &str, network: &str, cidr: u8| {
        eval::in_v4(ip.parse().unwrap(), network.parse().unwrap(), cidr)
    };
    let cases_v4 = [
        ("192.0.2.10", "192.0.2.10", 32, true),
        ("192.0.2.11", "192.0.2.10", 32, false),
        ("192.0.2.10", "192.0.2.0", 24, true),
        ("192.0.3.10", "192.0.2.0", 24, false),
        ("192.0.2.127", "192.0.2.0", 25, true),
        ("192.0.2.128", "192.0.2.0", 25, false),
        ("10.0.0.1", "192.0.2.0", 0, true),
        ("255.255.255.255", "0.0.0.0", 0, true),
        ("127.0.0.1", "0.0.0.0", 1, true),
        ("128.0.0.1", "0.0.0.0", 1, false),
        // The network's host bits do not matter.
        ("192.0.2.10", "192.0.2.99", 24, true),
    ];
    for (ip, network, cidr, expected) in cases_v4 {
        assert_eq!(v4(ip, network, cidr), expected, "{ip} in {network}/{cidr}");
    }
    let v6 = |ip: &str, network: &str, cidr: u8| {
        eval::in_v6(ip.parse().unwrap(), network.parse().unwrap(), cidr)
    };
    let cases_v6 = [
        ("2001:db8::1", "2001:db8::1", 128, true),
        ("2001:db8::2", "2001:db8::1", 128, false),
        ("2001:db8:ffff::1", "2001:db8::", 32, true),
        ("2001:db9::1", "2001:db8::", 32, false),
        ("cafe:babe:8000::", "cafe:babe:8000::", 33, true),
        ("cafe:babe::", "cafe:babe:8000::", 33, false),
        ("::1", "2001:db8::", 0, true),
        ("ffff::", "::", 1, false),
        ("7fff::", "::", 1, true),
        ("2001:db8::ff", "2001:db8::", 120, true),
        ("2001:db8::100", "2001:db8::", 120, false),
    ];
    for (ip, network, cidr, expected) in cases_v6 {
        assert_eq!(v6(ip, network, cidr), expected, "{ip} in {network}/{cidr}");
    }
}
