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
        (
            "=?utf-8?q?a@evil.example?= <jorg@example.de>",
            &["example.de"],
        ),
        ("=?utf-8?b?SsO2cmc=?= <jorg@example.de>", &["example.de"]),
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
        ("\"quoted local\"@example.org", &["example.org"]),
        ("first.last@sub.example.org\r\n", &["sub.example.org"]),
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
