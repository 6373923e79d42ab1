//! Domain names as SPF handles them: the `<domain>` of check_host() (RFC 7208
//! §4.3), the toplabel of a domain-spec (§7.1), and target names after
//! macro expansion (§4.8, §7.3).

/// RFC 1035 §2.3.4: labels are 63 octets or less.
pub(crate) const MAX_LABEL_LEN: usize = 63;
/// RFC 1035 §2.3.4 limits names to 255 octets on the wire, 253 in text
/// without the trailing dot (RFC 7208 §7.3 counts the same 253).
pub(crate) const MAX_NAME_LEN: usize = 253;

/// Whether `label` is a `toplabel` (RFC 7208 §7.1):
///
/// ```text
/// toplabel = ( *alphanum ALPHA *alphanum ) /
///            ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
/// ```
///
/// Letters and digits with at least one letter, or letters, digits and
/// hyphens neither first nor last with at least one hyphen (`xn--zckzah`).
/// An all-numeric label (`a:192.0.2.1`) is not one.
pub(crate) fn is_toplabel(label: &[u8]) -> bool {
    let (Some(first), Some(last)) = (label.first(), label.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && label
            .iter()
            .all(|octet| octet.is_ascii_alphanumeric() || *octet == b'-')
        && label
            .iter()
            .any(|octet| octet.is_ascii_alphabetic() || *octet == b'-')
}

/// What [`check`] found of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameCheck {
    /// Whether the name can be asked of the DNS: not empty, every label 1
    /// to 63 octets, at most 253 octets (RFC 1035 §2.3.4).
    pub queryable: bool,
    /// Why the name cannot be the `<domain>` of check_host(), if it cannot.
    pub problem: Option<NameProblem>,
}

/// Why a name cannot be the `<domain>` of check_host() (RFC 7208 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameProblem {
    Empty,
    TooLong,
    EmptyLabel,
    LabelTooLong,
    SingleLabel,
    NotToplabel,
}

impl NameProblem {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NameProblem::Empty => "it is empty",
            NameProblem::TooLong => "it is longer than 253 octets",
            NameProblem::EmptyLabel => "it has an empty label",
            NameProblem::LabelTooLong => "a label is longer than 63 octets",
            NameProblem::SingleLabel => "it is not a multi-label domain name",
            NameProblem::NotToplabel => "its last label is not a top-level domain label",
        }
    }
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a name (one trailing dot already removed) in one pass.
///
/// A name that cannot be queried matches nothing (RFC 7208 §4.3 and §4.8
/// by analogy; the RFC 7208 test suite allows this or permerror); it is
/// never sent. As the `<domain>` of check_host(), RFC 7208 §4.3 returns
/// `none` for a domain that is "malformed (e.g., label longer than 63
/// characters, zero-length label not at the end, etc.) or is not a
/// multi-label domain name"; a last label that is not a toplabel (§7.1)
/// is malformed too: an address literal (`[192.0.2.1]`) or a number is not
/// a domain.
pub(crate) fn check(name: &str) -> NameCheck {
    let unusable = |problem| NameCheck {
        queryable: false,
        problem: Some(problem),
    };
    let octets = name.as_bytes();
    if octets.is_empty() {
        return unusable(NameProblem::Empty);
    }
    if octets.len() > MAX_NAME_LEN {
        return unusable(NameProblem::TooLong);
    }
    let mut labels = 0;
    let mut label_len = 0;
    let mut last_start = 0;
    for (index, &octet) in octets.iter().enumerate() {
        if octet == b'.' {
            if label_len == 0 {
                return unusable(NameProblem::EmptyLabel);
            }
            labels += 1;
            label_len = 0;
            last_start = index + 1;
        } else {
            label_len += 1;
            if label_len > MAX_LABEL_LEN {
                return unusable(NameProblem::LabelTooLong);
            }
        }
    }
    if label_len == 0 {
        return unusable(NameProblem::EmptyLabel);
    }
    labels += 1;
    let last = octets.get(last_start..).unwrap_or_default();
    let problem = if labels < 2 {
        Some(NameProblem::SingleLabel)
    } else if !is_toplabel(last) {
        Some(NameProblem::NotToplabel)
    } else {
        None
    };
    NameCheck {
        queryable: true,
        problem,
    }
}

/// Why `domain` (one trailing dot already removed) cannot be the `<domain>`
/// of check_host(), as [`check`] says.
pub(crate) fn domain_problem(domain: &str) -> Option<&'static str> {
    check(domain).problem.map(NameProblem::as_str)
}

/// Turns an expanded domain-spec into the name to query, in place:
/// one trailing dot removed (§7.3: "trailing dot is ignored"), labels
/// removed from the left while it is longer than 253 octets (§7.3), ASCII
/// lower case (the [`super::SpfLookup`] contract).
pub(crate) fn finish_target(name: &mut String) {
    if name.ends_with('.') {
        name.pop();
    }
    while name.len() > MAX_NAME_LEN {
        match name.bytes().position(|octet| octet == b'.') {
            Some(dot) => {
                name.drain(..=dot);
            }
            None => name.clear(),
        }
    }
    name.make_ascii_lowercase();
}

/// Whether a finished target can be asked of the DNS, as [`check`] says
/// (without looking at the last label).
pub(crate) fn is_queryable(name: &str) -> bool {
    let octets = name.as_bytes();
    if octets.is_empty() || octets.len() > MAX_NAME_LEN {
        return false;
    }
    let mut label_len = 0;
    for &octet in octets {
        if octet == b'.' {
            if label_len == 0 {
                return false;
            }
            label_len = 0;
        } else {
            label_len += 1;
            if label_len > MAX_LABEL_LEN {
                return false;
            }
        }
    }
    label_len > 0
}

/// Whether `name` is `domain` or a name below it (both lower case, without
/// trailing dots).
pub(crate) fn is_at_or_below(name: &str, domain: &str) -> bool {
    match name.strip_suffix(domain) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn toplabels() {
        for good in ["com", "xn--zckzah", "a1", "1a", "1-2", "a-b-c", "COM"] {
            assert!(is_toplabel(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "123", "-com", "com-", "co_m", "com:8080", "5]", "a.b", "c\u{f6}m",
        ] {
            assert!(!is_toplabel(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn domains_of_check_host() {
        let label_63 = "a".repeat(63);
        let long = format!("{label_63}.{label_63}.{label_63}.{}.com", "b".repeat(58));
        assert_eq!(long.len(), 254);
        for good in [
            "example.com",
            "a.b.c.example",
            &format!("{label_63}.example.com"),
        ] {
            assert_eq!(domain_problem(good), None, "{good}");
        }
        let cases = [
            ("", "empty"),
            ("example", "multi-label"),
            ("a..example.com", "empty label"),
            (".example.com", "empty label"),
            (&format!("{label_63}a.example.com"), "longer than 63"),
            (&long, "longer than 253"),
            ("[192.0.2.1]", "top-level"),
            ("192.0.2.1", "top-level"),
            ("example.com:25", "top-level"),
        ];
        for (domain, problem) in cases {
            let found = domain_problem(domain).unwrap_or_else(|| panic!("{domain}: accepted"));
            assert!(found.contains(problem), "{domain}: {found}");
        }
    }

    #[test]
    fn targets() {
        let finish = |text: &str| {
            let mut name = text.to_string();
            finish_target(&mut name);
            name
        };
        assert_eq!(finish("Mail.Example.COM."), "mail.example.com");
        assert_eq!(finish("museum.."), "museum.");
        // §7.3: left labels go until 253 octets or less remain.
        let part = "somewhat.long.exp.example.com";
        let long = format!("foobar.{}.example.com", [part; 8].join("."));
        let short = finish(&long);
        assert!(short.len() <= 253, "{}", short.len());
        assert!(long.ends_with(&short));
        assert!(long[..long.len() - short.len()].ends_with('.'));
        assert!(short.starts_with("somewhat."), "{short}");
        assert_eq!(finish(&"x".repeat(300)), "");

        assert!(is_queryable("foo:bar/baz.example.com"));
        assert!(is_queryable("macro%percent  space.example.com"));
        assert!(is_queryable("single"));
        assert!(!is_queryable(""));
        assert!(!is_queryable("mail.example...com"));
        assert!(!is_queryable(&format!("{}.bar", "%25".repeat(22))));
        assert!(is_queryable(&format!("{}.bar", "a".repeat(63))));

        assert!(is_at_or_below("example.com", "example.com"));
        assert!(is_at_or_below("mx.example.com", "example.com"));
        assert!(!is_at_or_below("badexample.com", "example.com"));
        assert!(!is_at_or_below("com", "example.com"));
    }
}
