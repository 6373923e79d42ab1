// Tests may panic on what they set up themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use std::sync::{Arc, RwLock};

/// The directives of a record, each as `<qualifier><mechanism>` with its
/// arguments, and the modifiers, so that expectations read like records.
fn show(text: &str) -> Result<Vec<String>, String> {
    let record = parse(text.as_bytes()).map_err(|e| format!("{}: {}", e.term, e.problem))?;
    let bytes = text;
    let mut shown: Vec<String> = record
        .directives
        .iter()
        .map(|d| {
            let q = match d.qualifier {
                Qualifier::Pass => "+",
                Qualifier::Fail => "-",
                Qualifier::SoftFail => "~",
                Qualifier::Neutral => "?",
            };
            let spec =
                |s: Option<DomainSpec>| s.map_or("-".to_string(), |s| s.str(bytes).to_string());
            let m = match d.mechanism {
                Mechanism::All => "all".to_string(),
                Mechanism::Include(s) => format!("include {}", s.str(bytes)),
                Mechanism::Exists(s) => format!("exists {}", s.str(bytes)),
                Mechanism::A {
                    target,
                    cidr4,
                    cidr6,
                } => format!("a {} {cidr4} {cidr6}", spec(target)),
                Mechanism::Mx {
                    target,
                    cidr4,
                    cidr6,
                } => format!("mx {} {cidr4} {cidr6}", spec(target)),
                Mechanism::Ptr(target) => format!("ptr {}", spec(target)),
                Mechanism::Ip4 { network, cidr } => format!("ip4 {network}/{cidr}"),
                Mechanism::Ip6 { network, cidr } => format!("ip6 {network}/{cidr}"),
            };
            format!("{q}{m} [{}]", d.term.str(bytes))
        })
        .collect();
    if let Some((spec, _)) = record.redirect {
        shown.push(format!("redirect {}", spec.str(bytes)));
    }
    if let Some(spec) = record.exp {
        shown.push(format!("exp {}", spec.str(bytes)));
    }
    Ok(shown)
}

#[test]
fn selects_the_one_spf_record() {
    let records =
        |texts: &[&[u8]]| -> Vec<Box<[u8]>> { texts.iter().map(|t| (*t).into()).collect() };
    let cases: [(&[&[u8]], Selection); 10] = [
        (&[], Selection::None),
        (&[b"v=spf1"], Selection::One(0)),
        (&[b"hello", b"V=SpF1 -all"], Selection::One(1)),
        (&[b"v=spf1 -all", b"v=spf1 +all"], Selection::Several(2)),
        (&[b"v=spf1", b"v=spf1", b"V=spf1 a"], Selection::Several(3)),
        // §4.5: the version ends at a space or the end of the record.
        (&[b"v=spf10", b"v=spf1mx", b"v=spf1\tmx"], Selection::None),
        (&[b"v=spf2.0/pra -all", b"v=spf1 -all"], Selection::One(1)),
        (&[b" v=spf1 -all"], Selection::None),
        (&[b"\x96", b"v=spf1 a -all"], Selection::One(1)),
        (&[b""], Selection::None),
    ];
    for (texts, expected) in cases {
        assert_eq!(select(&records(texts)), expected, "{texts:?}");
    }
}

#[test]
fn reads_terms() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("v=spf1", vec![]),
        ("v=spf1   ", vec![]),
        ("v=spf1  a  -all ", vec!["+a - 32 128 [a]", "-all [-all]"]),
        ("v=spf1 ALL", vec!["+all [ALL]"]),
        ("v=spf1 ?All ~all +all", vec!["?all [?All]", "~all [~all]", "+all [+all]"]),
        (
            "v=spf1 include:_spf.Example.com exists:%{ir}.%{l1r+-}._spf.%{d}",
            vec![
                "+include _spf.Example.com [include:_spf.Example.com]",
                "+exists %{ir}.%{l1r+-}._spf.%{d} [exists:%{ir}.%{l1r+-}._spf.%{d}]",
            ],
        ),
        (
            "v=spf1 a/24 a//64 a/24//64 a:mail.example.com/26 mx:mx.example.com//0 MX/0",
            vec![
                "+a - 24 128 [a/24]",
                "+a - 32 64 [a//64]",
                "+a - 24 64 [a/24//64]",
                "+a mail.example.com 26 128 [a:mail.example.com/26]",
                "+mx mx.example.com 32 0 [mx:mx.example.com//0]",
                "+mx - 0 128 [MX/0]",
            ],
        ),
        // ':' and '/' are macro-literals: the domain-spec holds them.
        (
            "v=spf1 a:foo:bar/baz.example.com mx:foo:bar/baz.example.com/24",
            vec![
                "+a foo:bar/baz.example.com 32 128 [a:foo:bar/baz.example.com]",
                "+mx foo:bar/baz.example.com 24 128 [mx:foo:bar/baz.example.com/24]",
            ],
        ),
        (
            "v=spf1 a:museum.example. a:%{d} a:x.%{d}/24 a:.com",
            vec![
                "+a museum.example. 32 128 [a:museum.example.]",
                "+a %{d} 32 128 [a:%{d}]",
                "+a x.%{d} 24 128 [a:x.%{d}/24]",
                "+a .com 32 128 [a:.com]",
            ],
        ),
        (
            "v=spf1 a:foo.example.xn--zckzah a:foo.1-2 ptr ptr:Example.com",
            vec![
                "+a foo.example.xn--zckzah 32 128 [a:foo.example.xn--zckzah]",
                "+a foo.1-2 32 128 [a:foo.1-2]",
                "+ptr - [ptr]",
                "+ptr Example.com [ptr:Example.com]",
            ],
        ),
        (
            "v=spf1 ip4:192.0.2.0/24 ip4:0.0.0.0/0 -ip4:255.255.255.255 ip4:10.0.0.1/32",
            vec![
                "+ip4 192.0.2.0/24 [ip4:192.0.2.0/24]",
                "+ip4 0.0.0.0/0 [ip4:0.0.0.0/0]",
                "-ip4 255.255.255.255/32 [-ip4:255.255.255.255]",
                "+ip4 10.0.0.1/32 [ip4:10.0.0.1/32]",
            ],
        ),
        (
            "v=spf1 ip6:2001:db8::/32 ip6:::FFFF:1.2.3.4 ip6:Cafe:Babe:8000::/33 ip6:::/0 ip6:::1/128",
            vec![
                "+ip6 2001:db8::/32 [ip6:2001:db8::/32]",
                "+ip6 ::ffff:1.2.3.4/128 [ip6:::FFFF:1.2.3.4]",
                "+ip6 cafe:babe:8000::/33 [ip6:Cafe:Babe:8000::/33]",
                "+ip6 ::/0 [ip6:::/0]",
                "+ip6 ::1/128 [ip6:::1/128]",
            ],
        ),
        // Modifiers: known ones kept, unknown ones (any case, '.', '-',
        // '_' in the name, any macro-string value) ignored.
        (
            "v=spf1 moo.cow-far_out=man:dog/cat default=+ v=spf1 x=%{d} REDIRECT=_spf.example.com Exp=explain.%{d}",
            vec!["redirect _spf.example.com", "exp explain.%{d}"],
        ),
        ("v=spf1 redirect=%{d}.d.spf.example.com.", vec!["redirect %{d}.d.spf.example.com."]),
    ];
    for (text, expected) in cases {
        assert_eq!(
            show(text),
            Ok(expected.iter().map(|e| e.to_string()).collect()),
            "{text}"
        );
    }
}

/// Every term the RFC 7208 ABNF does not allow is an error, naming the
/// term.
#[test]
fn rejects_terms_outside_the_abnf() {
    let cases = [
        // Unknown mechanisms and modifier-like directives (§5, §4.6.1).
        ("v=spf1 moo", "moo", "unknown mechanism"),
        ("v=spf1 ip4:1.2.3.4 -all moo", "moo", "unknown mechanism"),
        (
            "v=spf1 moo.cow/far_out=man:dog/cat",
            "moo.cow/far_out=man:dog/cat",
            "unknown mechanism",
        ),
        (
            "v=spf1 moo.cow:far_out=man:dog/cat",
            "moo.cow:far_out=man:dog/cat",
            "unknown mechanism",
        ),
        (
            "v=spf1 redirect:t2.example.com",
            "redirect:t2.example.com",
            "unknown mechanism",
        ),
        ("v=spf1 1up=foo", "1up=foo", "unknown mechanism"),
        ("v=spf1 =all", "=all", "unknown mechanism"),
        (
            "v=spf1 -redirect=x.example",
            "-redirect=x.example",
            "unknown mechanism",
        ),
        ("v=spf1 ip46:::1", "ip46:::1", "unknown mechanism"),
        (
            "v=spf1 \u{80}a:example.net",
            "\\xc2\\x80a:example.net",
            "unknown mechanism",
        ),
        (
            "v=spf1 a:example.net \u{96}all",
            "\\xc2\\x96all",
            "unknown mechanism",
        ),
        ("v=spf1 +", "+", "unknown mechanism"),
        ("v=spf1 \ta", "\\ta", "unknown mechanism"),
        // all (§5.1).
        ("v=spf1 -all.", "-all.", "no argument"),
        ("v=spf1 -all:foobar", "-all:foobar", "no argument"),
        ("v=spf1 -all/8", "-all/8", "no argument"),
        // Domain-specs (§7.1).
        ("v=spf1 include", "include", "domain-spec after ':'"),
        ("v=spf1 include:", "include:", "empty domain-spec"),
        (
            "v=spf1 include:ip5.example.com/24",
            "include:ip5.example.com/24",
            "toplabel",
        ),
        ("v=spf1 exists", "exists", "domain-spec after ':'"),
        (
            "v=spf1 exists:mail.example.com/24",
            "exists:mail.example.com/24",
            "toplabel",
        ),
        ("v=spf1 ptr:", "ptr:", "empty domain-spec"),
        ("v=spf1 ptr/0", "ptr/0", "domain-spec after ':'"),
        ("v=spf1 a:", "a:", "empty domain-spec"),
        ("v=spf1 mx: -all", "mx:", "empty domain-spec"),
        ("v=spf1 a:foo-bar", "a:foo-bar", "toplabel"),
        ("v=spf1 a:museum", "a:museum", "toplabel"),
        ("v=spf1 a:museum.", "a:museum.", "toplabel"),
        ("v=spf1 a:111.222.33.44", "a:111.222.33.44", "toplabel"),
        ("v=spf1 a:abc.123", "a:abc.123", "toplabel"),
        ("v=spf1 a:example.-com", "a:example.-com", "toplabel"),
        ("v=spf1 a:example.com-", "a:example.com-", "toplabel"),
        (
            "v=spf1 a:example.com:8080",
            "a:example.com:8080",
            "toplabel",
        ),
        ("v=spf1 a:%{d}.", "a:%{d}.", "toplabel"),
        (
            "v=spf1 a:foo.example.com\0",
            "a:foo.example.com\\x00",
            "visible ASCII",
        ),
        (
            "v=spf1 a:ctrl.example.com\rptr",
            "a:ctrl.example.com\\rptr",
            "visible ASCII",
        ),
        (
            "v=spf1 a:\u{feff}garbage.example.net",
            "a:\\xef\\xbb\\xbfgarbage.example.net",
            "visible ASCII",
        ),
        (
            "v=spf1 a:%{a}.example.com",
            "a:%{a}.example.com",
            "unknown macro letter",
        ),
        (
            "v=spf1 exists:%(ir).sbl.example.com",
            "exists:%(ir).sbl.example.com",
            "'%' not followed",
        ),
        (
            "v=spf1 exists:foo%.sbl.example.com",
            "exists:foo%.sbl.example.com",
            "'%' not followed",
        ),
        ("v=spf1 a!foo", "a!foo", "CIDR length"),
        // CIDR lengths (§5.6): range, no leading zero, dual only on a/mx.
        ("v=spf1 a/33", "a/33", "at most 32"),
        ("v=spf1 a//129", "a//129", "at most 128"),
        ("v=spf1 mx/33", "mx/33", "at most 32"),
        ("v=spf1 a/24/64", "a/24/64", "at most 32"),
        ("v=spf1 a/24/8", "a/24/8", "CIDR length"),
        ("v=spf1 a:foo.com/24/64", "a:foo.com/24/64", "at most 32"),
        ("v=spf1 a/024", "a/024", "leading zero"),
        ("v=spf1 a//0128", "a//0128", "leading zero"),
        ("v=spf1 a/", "a/", "CIDR length"),
        ("v=spf1 ip4:1.2.3.4/33", "ip4:1.2.3.4/33", "at most 32"),
        ("v=spf1 ip4:1.2.3.4/032", "ip4:1.2.3.4/032", "leading zero"),
        ("v=spf1 ip4:1.2.3.4/", "ip4:1.2.3.4/", "CIDR length"),
        ("v=spf1 ip4:1.2.3.4//32", "ip4:1.2.3.4//32", "CIDR length"),
        ("v=spf1 ip4:1.2.3.4/+8", "ip4:1.2.3.4/+8", "CIDR length"),
        (
            "v=spf1 ip6:::1.1.1.1/129",
            "ip6:::1.1.1.1/129",
            "at most 128",
        ),
        (
            "v=spf1 ip6:::1.1.1.1//33",
            "ip6:::1.1.1.1//33",
            "CIDR length",
        ),
        // Networks (§5.6).
        ("v=spf1 ip4", "ip4", "network after ':'"),
        ("v=spf1 -all ip6", "ip6", "network after ':'"),
        ("v=spf1 ip4:", "ip4:", "not an IPv4 network"),
        ("v=spf1 ip4:1.2.3", "ip4:1.2.3", "not an IPv4 network"),
        (
            "v=spf1 ip4:1.2.3.4.5",
            "ip4:1.2.3.4.5",
            "not an IPv4 network",
        ),
        (
            "v=spf1 ip4:1.2.3.4:8080",
            "ip4:1.2.3.4:8080",
            "not an IPv4 network",
        ),
        ("v=spf1 ip4:01.2.3.4", "ip4:01.2.3.4", "not an IPv4 network"),
        (
            "v=spf1 ip4:1.2.3.256",
            "ip4:1.2.3.256",
            "not an IPv4 network",
        ),
        (
            "v=spf1 ip4:192.0.2.5\n",
            "ip4:192.0.2.5\\n",
            "not an IPv4 network",
        ),
        ("v=spf1 ip4:+1.2.3.4", "ip4:+1.2.3.4", "not an IPv4 network"),
        (
            "v=spf1 ip6::CAFE::BABE",
            "ip6::CAFE::BABE",
            "not an IPv6 network",
        ),
        ("v=spf1 ip6:1.2.3.4", "ip6:1.2.3.4", "not an IPv6 network"),
        (
            "v=spf1 ip6:fe80::1%eth0",
            "ip6:fe80::1%eth0",
            "not an IPv6 network",
        ),
        // Modifiers (§6): once each, a domain-spec as value.
        ("v=spf1 exp= -all", "exp=", "empty domain-spec"),
        ("v=spf1 ?all redirect=", "redirect=", "empty domain-spec"),
        ("v=spf1 exp=-all", "exp=-all", "toplabel"),
        ("v=spf1 redirect=-all ?all", "redirect=-all", "toplabel"),
        (
            "v=spf1 exp=%{r}.example.com",
            "exp=%{r}.example.com",
            "only in explanations",
        ),
        (
            "v=spf1 exp=a.example.com -all exp=b.example.com",
            "exp=b.example.com",
            "twice",
        ),
        (
            "v=spf1 redirect=a.example.com redirect=a.example.com",
            "redirect=a.example.com",
            "twice",
        ),
        (
            "v=spf1 redirect=a.example.com Redirect=b.example.com",
            "Redirect=b.example.com",
            "twice",
        ),
        ("v=spf1 -all foo=%abc", "foo=%abc", "'%' not followed"),
        ("v=spf1 foo=%{c}", "foo=%{c}", "only in explanations"),
        ("v=spf1 foo=a b", "b", "unknown mechanism"),
    ];
    for (text, term, problem) in cases {
        match parse(text.as_bytes()) {
            Ok(record) => panic!("{text:?}: parsed {record:?}"),
            Err(error) => {
                assert_eq!(error.term, term, "{text:?}");
                assert!(
                    error.problem.contains(problem),
                    "{text:?}: {}",
                    error.problem
                );
            }
        }
    }
}

#[test]
fn domain_specs_know_their_macros() {
    let record = parse(
        b"v=spf1 a:mail.example.com exists:%{i}.bl.example ptr:%{p}.x.example a:%%.example.com",
    )
    .unwrap();
    let flags: Vec<(bool, bool)> = record
        .directives
        .iter()
        .map(|d| match d.mechanism {
            Mechanism::A {
                target: Some(s), ..
            }
            | Mechanism::Exists(s)
            | Mechanism::Ptr(Some(s)) => (s.has_macros, s.uses_ptr),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        flags,
        [(false, false), (true, false), (true, true), (true, false)]
    );
}

/// The memo gives what reading gives, the same entry for the same text,
/// never an entry of another text that shares its fingerprint, and stays
/// within its bound.
#[test]
fn memo_of_records() {
    let memo = RwLock::new(Memo::default());
    let text = b"v=spf1 ip4:192.0.2.0/24 include:_spf.example.com -all";
    let first = Memo::read(&memo, text);
    assert_eq!(*first, read_now(text));
    assert!(Arc::ptr_eq(&first, &Memo::read(&memo, text)));
    let bad = b"v=spf1 moo";
    assert_eq!(
        Memo::read(&memo, bad).record.as_ref().unwrap_err().term,
        "moo"
    );

    // Another text stored under this text's fingerprint is not returned.
    let other = Arc::new(read_now(b"v=spf1 +all"));
    memo.write()
        .unwrap()
        .insert(fingerprint(text), Arc::clone(&other));
    let again = Memo::read(&memo, text);
    assert_eq!(*again, read_now(text));
    assert!(!Arc::ptr_eq(&again, &other));

    // Bounded: many distinct records keep it under MEMO_BYTES.
    let memo = RwLock::new(Memo::default());
    for i in 0..20_000 {
        let text = format!(
            "v=spf1 ip4:10.{}.{}.0/24 ~all {}",
            i / 256,
            i % 256,
            "a ".repeat(100)
        );
        Memo::read(&memo, text.as_bytes());
    }
    let memo = memo.read().unwrap();
    assert!(memo.bytes <= MEMO_BYTES, "{}", memo.bytes);
    assert!(memo.entries.len() < 20_000);
    let held: usize = memo.entries.values().map(|p| weight(p)).sum();
    assert_eq!(held, memo.bytes);
    // Too long to remember: read each time, still right.
    let long = format!("v=spf1 {}-all", "a ".repeat(MEMO_MAX_TEXT));
    assert_eq!(
        read(long.as_bytes())
            .record
            .as_ref()
            .unwrap()
            .directives
            .len(),
        MEMO_MAX_TEXT + 1
    );
}

#[test]
fn directives_that_ask_the_dns() {
    let record =
        parse(b"v=spf1 all ip4:192.0.2.1 ip6:::1 a mx ptr exists:%{i}.x.example include:x.example")
            .unwrap();
    let asks: Vec<bool> = record.directives.iter().map(Directive::asks_dns).collect();
    assert_eq!(asks, [false, false, false, true, true, true, true, true]);
}

mod networks {
    use super::super::{ip4_network, ip6_network};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    proptest! {
        /// Our ip6-network reader reads exactly what the standard library
        /// reads (RFC 4291 §2.2 text), on text made of its characters.
        #[test]
        fn ip6_network_reads_what_std_reads(text in "[0-9a-fA-F:.]{0,45}") {
            prop_assert_eq!(ip6_network(text.as_bytes()), text.parse::<Ipv6Addr>().ok(), "{}", text);
        }

        /// Every address in every text form: compressed (RFC 5952), full,
        /// upper case, with leading zeros, with an IPv4 suffix.
        #[test]
        fn ip6_network_reads_every_form(bits: u128, zeros in 0usize..8, upper: bool) {
            let address = Ipv6Addr::from(bits);
            let groups = address.segments();
            let full: Vec<String> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| if i == zeros { format!("{g:04x}") } else { format!("{g:x}") })
                .collect();
            let [a, b, c, d] = [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff];
            let forms = [
                address.to_string(),
                full.join(":"),
                format!("{}:{a}.{b}.{c}.{d}", full[..6].join(":")),
            ];
            for form in forms {
                let form = if upper { form.to_uppercase() } else { form };
                prop_assert_eq!(ip6_network(form.as_bytes()), Some(address), "{}", form);
                prop_assert_eq!(form.parse::<Ipv6Addr>().ok(), Some(address), "{}", form);
            }
        }

        /// ip4-network: what the standard library reads, without leading
        /// zeros (RFC 7208 appendix A: qnum).
        #[test]
        fn ip4_network_is_dotted_quads(text in "[0-9.]{0,17}") {
            let ours = ip4_network(text.as_bytes());
            let leading_zero = text.split('.').any(|part| part.len() > 1 && part.starts_with('0'));
            let std = text.parse::<Ipv4Addr>().ok().filter(|_| !leading_zero);
            prop_assert_eq!(ours, std, "{}", text);
        }
    }

    #[test]
    fn ip6_edge_cases() {
        for text in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "::1.2.3.4",
        ] {
            assert_eq!(ip6_network(text.as_bytes()), text.parse().ok(), "{text}");
            assert!(ip6_network(text.as_bytes()).is_some(), "{text}");
        }
        for text in [
            "",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "12345::",
            "1:2:3:4:5:6:7",
            ":1::",
            "1::2:",
            "::1.2.3",
            "::1.2.3.4:5",
            "::01.2.3.4",
            "1.2.3.4",
            "g::",
        ] {
            assert_eq!(ip6_network(text.as_bytes()), None, "{text}");
        }
    }
}

/// Answers are remembered by identity: the same `Arc` gives the same
/// selection and record, and another answer (whatever slot it takes) its
/// own, never the one remembered before.
#[test]
fn recent_answers_by_identity() {
    let answer = |texts: &[String]| -> TxtRecords {
        texts
            .iter()
            .map(|t| t.as_bytes().into())
            .collect::<Vec<Box<[u8]>>>()
            .into()
    };
    let answers: Vec<(TxtRecords, Option<String>)> = (0..200)
        .map(|i| {
            let spf = format!("v=spf1 ip4:10.0.{}.{}/32 -all", i / 256, i % 256);
            match i % 4 {
                0 => (answer(std::slice::from_ref(&spf)), Some(spf)),
                1 => (answer(&["hello".into(), spf.clone()]), Some(spf)),
                2 => (answer(&["not spf".into()]), None),
                _ => (answer(&[spf.clone(), spf]), None),
            }
        })
        .collect();
    for _ in 0..2 {
        for (i, (answer, expected)) in answers.iter().enumerate() {
            match (select_and_read(answer), expected) {
                (Selected::One(record), Some(text)) => {
                    assert_eq!(&*record.text, text.as_str(), "{i}")
                }
                (Selected::None, None) if i % 4 == 2 => {}
                (Selected::Several(2), None) if i % 4 == 3 => {}
                (other, _) => panic!("{i}: {other:?}"),
            }
        }
    }
    let (first, _) = &answers[0];
    match (select_and_read(first), select_and_read(first)) {
        (Selected::One(a), Selected::One(b)) => assert!(Arc::ptr_eq(&a, &b)),
        other => panic!("{other:?}"),
    }
}
