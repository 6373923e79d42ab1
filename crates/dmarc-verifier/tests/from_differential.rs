//! Differential test of Author Domain extraction against mail-parser (see
//! `from_differential/oracle.rs` for the rule and the allow-list), on From
//! values built from the tokens attackers combine: brackets, routes,
//! quotes, comments, groups, encoded-word delimiters and folding. The fuzz
//! target `from_differential` runs the same oracle on arbitrary bytes.

#[path = "from_differential/oracle.rs"]
mod oracle;

use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "<",
    ">",
    "@",
    ",",
    ":",
    ";",
    "\"",
    "(",
    ")",
    "\\",
    " ",
    "\t",
    "\r\n ",
    ".",
    "[",
    "]",
    "=?utf-8?q?",
    "=?x?b?",
    "?=",
    "?",
    "=",
    "victim.com",
    "evil.net",
    "ceo",
    "x",
    "é",
    "From:",
    "@route.example:",
    "<@",
    "@@",
    "..",
    "xn--bcher-kva.example",
    "VICTIM.COM.",
    "_",
    "-",
];

const DOMAINS: &[&str] = &[
    "victim.com",
    "evil.net",
    "VICTIM.COM.",
    "xn--bcher-kva.example",
    "bücher.example",
    "a.b.c",
];
const LOCALS: &[&str] = &["ceo", "a.b", "\"quoted local\"", "x+tag", "=?x?q?ceo?="];
const NAMES: &[&str] = &[
    "",
    "Name",
    "\"Quoted, Name\"",
    "=?utf-8?q?J=C3=B6rg?=",
    "(comment)",
    "\"ceo@victim.com\"",
    "A. B.",
];

/// One address in one of the forms RFC 5322 §3.4 and §4.4 allow.
fn address() -> impl Strategy<Value = String> {
    (
        0..7usize,
        proptest::sample::select(NAMES),
        proptest::sample::select(LOCALS),
        proptest::sample::select(DOMAINS),
        proptest::sample::select(DOMAINS),
    )
        .prop_map(|(form, name, local, domain, other)| match form {
            0 => format!("{local}@{domain}"),
            1 => format!("{name} <{local}@{domain}>"),
            2 => format!("<@{other}:{local}@{domain}>"),
            3 => format!("<@{other},@{other}:{local}@{domain}>"),
            4 => format!("Group: {local}@{domain}, {name} <x@{other}>;"),
            5 => format!("(c) {local}@{domain} (c)"),
            _ => format!("{name}<{local}@{domain}>"),
        })
}

/// A From value: a list of addresses, then a few random tokens inserted.
fn from_value() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(address(), 1..4),
        proptest::collection::vec(
            (
                any::<proptest::sample::Index>(),
                proptest::sample::select(TOKENS),
            ),
            0..4,
        ),
    )
        .prop_map(|(addresses, insertions)| {
            let mut value = addresses.join(", ");
            for (at, token) in insertions {
                let mut at = at.index(value.len() + 1);
                while !value.is_char_boundary(at) {
                    at -= 1;
                }
                value.insert_str(at, token);
            }
            value
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn ours_never_finds_fewer_domains_than_mail_parser(value in from_value()) {
        if let Some(why) = oracle::disagreement(value.as_bytes()) {
            return Err(TestCaseError::fail(why));
        }
    }
}

/// Values found by the fuzzer or the review, kept as regression cases.
#[test]
fn known_tricky_values() {
    let values = [
        "<@x>, ceo@victim.com, <:y@evil.net>",
        "=?x?q?,ceo@victim.com,?= <x@evil.net>",
        "\"a\" <b@evil.net>, ceo@victim.com",
        "undisclosed:;, ceo@victim.com",
        "ceo@victim.com (comment <x@evil.net>)",
        // A route's domains are no mailbox (RFC 5322 §4.4), and two words
        // side by side are no local-part.
        "<@VICTIM.COM:\"ceo@VICTIM.COM.>, <@victim.com:\"@a.b.c>",
        "=?x?q?a\"?= <ceo@victim.com> \"@evil.net",
        "=?x?q?a\tb?R\"c <ceo@victim.com> ?= \"@evil.net",
        "<@VICTIM.COM.,@VICTIM.COM.:\"ceo@VICTIM.COM.>, <@victim.com:\"\"quoted local\"@a.b.c>",
    ];
    for value in values {
        assert_eq!(oracle::disagreement(value.as_bytes()), None, "{value}");
    }
}
