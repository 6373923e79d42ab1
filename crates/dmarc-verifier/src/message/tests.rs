use super::*;

fn domains(value: &str) -> Result<Vec<String>, FromError> {
    author_domains(&[value.as_bytes()], 5)
}

#[test]
fn extracts_the_mailbox_domain_not_the_display_name() {
    let cases: &[(&str, &[&str])] = &[
        ("joe@joe.com", &["joe.com"]),
        ("Joe Johnson <joe@joe.com>", &["joe.com"]),
        ("\"Joe Johnson\" <joe@joe.com>", &["joe.com"]),
        (
            "\"Johnson, Joe <joe@joe.com>\" joe@evil.example",
            &["evil.example"],
        ),
        (
            "\"ceo@bank.example\" <x@attacker.example>",
            &["attacker.example"],
        ),
        (
            "\"quoted \\\" pair <a@b.example>\" <x@attacker.example>",
            &["attacker.example"],
        ),
        ("(Joe Johnson) joe@joe.com", &["joe.com"]),
        ("(,) joe@joe.com", &["joe.com"]),
        ("(nested (comment) <a@b.example>) joe@joe.com", &["joe.com"]),
        ("joe@joe.com (trailing comment)", &["joe.com"]),
        ("\"( bob@bob.com)\" joe@joe.com", &["joe.com"]),
        ("\"Mandel, Bob\" <joe@joe.com>", &["joe.com"]),
        ("=?utf-8?q?J=C3=B6rg?= <jorg@example.de>", &["example.de"]),
        ("=?utf-8?b?SsO2cmc=?= <jorg@example.de>", &["example.de"]),
        // A broken encoded-word followed by white space is ordinary text.
        (
            "=?utf-8?Q?J=C3=B6rg Smith?= <jorg@example.de>",
            &["example.de"],
        ),
        ("User <USER@Example.COM.>", &["example.com"]),
        ("Jörg <jorg@bücher.example>", &["xn--bcher-kva.example"]),
        ("a@x.example, b@y.example", &["x.example", "y.example"]),
        ("a@x.example, b@X.example", &["x.example"]),
        (
            "Team: a@x.example, B <b@y.example>;",
            &["x.example", "y.example"],
        ),
        (
            "Team: a@x.example;, c@z.example",
            &["x.example", "z.example"],
        ),
        ("From: Davide D'Marco <user@blah.com>", &["blah.com"]),
        ("Mail From:<joe@joe.com>", &["joe.com"]),
        ("<@route.example:joe@joe.com>", &["joe.com"]),
        ("<@a.example,@b.example:joe@joe.com>", &["joe.com"]),
        (
            "< , @a.example , , @[192.0.2.1] : joe@joe.com>",
            &["joe.com"],
        ),
        (
            "Joe <@a.example,:joe@joe.com>, b@b.example",
            &["joe.com", "b.example"],
        ),
        ("\"quoted local\"@example.org", &["example.org"]),
        ("<\"a\".\"b\"@example.org>", &["example.org"]),
        ("<\"a\" . b.c@example.org>", &["example.org"]),
        ("<a.\"b\"@example.org>", &["example.org"]),
        ("first.last@sub.example.org\r\n", &["sub.example.org"]),
        ("Joe\r\n <joe@joe.com>\r\n", &["joe.com"]),
        ("Joe\n\t<joe@joe.com>\n", &["joe.com"]),
    ];
    for (value, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(domains(value), Ok(expected), "{value}");
    }
}

#[test]
fn malformed_values_are_errors_not_guesses() {
    let cases: &[&str] = &[
        "Joe Johnson <joe@joe.com",
        "<<<><joe@joe.com>>>",
        "joe",
        "Joe Johnson",
        "joe@",
        "@joe.com",
        "<joe>",
        "joe@[192.0.2.1]",
        "joe@-bad-.example",
        "joe@bad..example",
        "joe@under_score.example",
        "\"unterminated <a@b.example>",
        "(unterminated a@b.example",
        "a@b.example c@d.example",
        "<a@b.example> trailing",
        "joe@joe.com)",
        &format!("a@{}.example", "x".repeat(64)),
        // Invalid encoded-words (RFC 2047 §5(3)) are ordinary tokens.
        "=?utf-8?q?a@evil.example?= <jorg@example.de>",
        "=?x?q?,ceo@victim.example,?= <x@evil.example>",
        "=?x?q?<ceo@victim.example>?= <x@evil.example>",
        // NUL, a bare CR, a line break that is not a fold: readers
        // disagree (found by the differential fuzz target).
        "a@evil.example (x\0) ",
        "a@evil.example (x\r b@victim.example)",
        "a@evil.example (x\ny@victim.example)",
        "a@evil.example\rb@victim.example",
        // An encoded-word cut by a quote or a special: mail-parser decodes
        // it and sees the address inside (found by the differential fuzz
        // target).
        "=?x?q?a\"?= <ceo@victim.example> \"@evil.example",
        "=?utf-8?q?a<?= b@evil.example",
        "=?x?q?a\tb?R\"c <ceo@victim.example> ?= \"@evil.example",
        "=?x?q?a b ?R\"o\t, rj@victim.example, x?=?@oe \"@evil.example",
        // Words of a local-part in angle brackets need a '.' between them
        // (RFC 5322 §4.4 obs-local-part); found by the differential test.
        "<@victim.example.,@victim.example.:\"ceo@victim.example.>, <@victim.example:\"\"quoted local\"@a.b.example>",
        "<\"a\"\"b\"@evil.example>",
        "<\"a\" b@evil.example>",
        "<a \"b\"@evil.example>",
        "Joe <a b@evil.example>",
    ];
    for value in cases {
        assert!(
            matches!(domains(value), Err(FromError::Unparseable(_))),
            "{value:?} gave {:?}",
            domains(value)
        );
    }
}

#[test]
fn empty_group_has_no_mailbox() {
    assert_eq!(
        domains("undisclosed-recipients:;"),
        Err(FromError::NoMailbox)
    );
    assert_eq!(domains(""), Err(FromError::NoMailbox));
    assert_eq!(domains("  (only a comment) "), Err(FromError::NoMailbox));
}

#[test]
fn missing_and_multiple_from_are_distinct_outcomes() {
    assert_eq!(author_domains(&[], 5), Err(FromError::Missing));
    assert_eq!(
        author_domains(&[b"a@x.example".as_slice(), b"b@y.example".as_slice()], 5),
        Err(FromError::Multiple(2))
    );
}

#[test]
fn distinct_domains_over_the_cap_are_refused() {
    let value = "a@a.example, b@b.example, c@c.example";
    assert_eq!(
        author_domains(&[value.as_bytes()], 2),
        Err(FromError::TooManyDomains { count: 3, cap: 2 })
    );
    assert_eq!(
        author_domains(&[value.as_bytes()], 3).map(|d| d.len()),
        Ok(3)
    );
}

#[test]
fn non_utf8_bytes_never_become_a_domain() {
    let value: &[u8] = b"x <a@b\xff.example>";
    assert!(matches!(
        author_domains(&[value], 5),
        Err(FromError::Unparseable(_))
    ));
}

#[test]
fn domain_validity() {
    assert!(is_valid_a_label_domain("example.com"));
    assert!(is_valid_a_label_domain("xn--bcher-kva.example"));
    assert!(is_valid_a_label_domain("localhost"));
    assert!(!is_valid_a_label_domain("Example.com"));
    assert!(!is_valid_a_label_domain("a..b"));
    assert!(!is_valid_a_label_domain(""));
    assert!(!is_valid_a_label_domain(&"a.".repeat(127)));
}

#[test]
fn a_source_route_is_only_at_domains_and_a_colon() {
    // RFC 5322 §4.4 obs-route: anything else between '<' and ':' must not
    // be skipped, or whole mailboxes disappear.
    let cases: &[&str] = &[
        "<@x>, ceo@victim.example, <:y@evil.example>",
        "<@x>, ceo@victim.example, <@z:y@evil.example>",
        "<@x,ceo@victim.example:y@evil.example>",
        "<@x ceo@victim.example:y@evil.example>",
        "<@:y@evil.example>",
        "<@x;y@evil.example>",
        "<,y@evil.example>",
        "<@x",
        "<@x,@",
    ];
    for value in cases {
        assert!(
            matches!(domains(value), Err(FromError::Unparseable(_))),
            "{value:?} gave {:?}",
            domains(value)
        );
    }
}

#[test]
fn text_that_breaks_encoded_word_rules_keeps_its_mailboxes() {
    // Whatever we return for these, it must never be evil.example alone.
    let cases: &[&str] = &[
        "=?x?q?,ceo@victim.example,?= <x@evil.example>",
        "=?x?q?a?= ceo@victim.example, =?x?q?b?= <x@evil.example>",
        "=?utf-8?q?ceo@victim.example?= x@evil.example",
        "=?x?q?\"?= ceo@victim.example, x@evil.example",
        "=?x?q?(?= ceo@victim.example, x@evil.example =?x?q?)?=",
        "=?x?q?;?= ceo@victim.example, x@evil.example",
    ];
    for value in cases {
        match domains(value) {
            Err(_) => {}
            Ok(found) => assert!(
                found.contains(&"victim.example".to_string()),
                "{value:?} hid victim.example: {found:?}"
            ),
        }
    }
    // A valid encoded-word is a display-name word.
    assert_eq!(
        domains("=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <j@example.de>"),
        Ok(vec!["example.de".to_string()])
    );
}

#[test]
fn header_names_follow_obs_optional() {
    for name in [
        "From", "from", "FROM", "From ", "From\t", "From \t ", "Fr om",
    ] {
        assert!(header_name_is(name.as_bytes(), "from"), "{name:?}");
    }
    for name in ["X-From", "Froms", "Fro", "", "Resent-From", "From:"] {
        assert!(!header_name_is(name.as_bytes(), "from"), "{name:?}");
    }
    assert!(header_name_is(b"DKIM-Signature ", "dkim-signature"));
    assert!(header_name_is(
        b"authentication-RESULTS",
        "Authentication-Results"
    ));
}

#[test]
fn line_endings_are_normalised_to_crlf() {
    assert_eq!(&*to_crlf(b"a\r\nb\r\n"), b"a\r\nb\r\n");
    assert!(matches!(to_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
    assert_eq!(&*to_crlf(b"a\nb\n"), b"a\r\nb\r\n");
    assert_eq!(&*to_crlf(b"a\r\nb\nc"), b"a\r\nb\r\nc");
    assert_eq!(&*to_crlf(b"\n"), b"\r\n");
}
