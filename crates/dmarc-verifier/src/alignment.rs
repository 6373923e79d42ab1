//! Identifier alignment (RFC 7489 §3.1, RFC 9989 §4.4 and §4.10.2).
//!
//! Strict alignment compares the domains exactly (both are already
//! lower-case A-labels). Relaxed alignment compares their Organizational
//! Domains, found by the discovery method in force ([`crate::discovery`]).

use crate::record::AlignmentMode;

/// The outcome of one alignment check, kept in the verdict so that the
/// decision trail can say why an identifier did or did not align.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alignment {
    /// The authenticated identifier (SPF domain or DKIM `d=`).
    pub identifier: String,
    /// Its Organizational Domain, when relaxed mode needed it.
    pub identifier_org: Option<String>,
    /// The Author Domain.
    pub author: String,
    /// The Author Domain's Organizational Domain, when relaxed mode needed it.
    pub author_org: Option<String>,
    /// The mode of the record (`aspf` or `adkim`).
    pub mode: AlignmentMode,
    /// The verdict.
    pub aligned: bool,
}

impl Alignment {
    /// Strict mode: the domains must be identical (RFC 9989 §3.2.10.2).
    pub fn strict(identifier: &str, author: &str) -> Alignment {
        Alignment {
            identifier: identifier.to_string(),
            identifier_org: None,
            author: author.to_string(),
            author_org: None,
            mode: AlignmentMode::Strict,
            aligned: identifier.eq_ignore_ascii_case(author),
        }
    }

    /// Relaxed mode: identical domains align without lookups; otherwise the
    /// Organizational Domains must be identical (RFC 9989 §3.2.10.1).
    pub fn relaxed(
        identifier: &str,
        identifier_org: &str,
        author: &str,
        author_org: &str,
    ) -> Alignment {
        Alignment {
            identifier: identifier.to_string(),
            identifier_org: Some(identifier_org.to_string()),
            author: author.to_string(),
            author_org: Some(author_org.to_string()),
            mode: AlignmentMode::Relaxed,
            aligned: identifier.eq_ignore_ascii_case(author)
                || identifier_org.eq_ignore_ascii_case(author_org),
        }
    }

    /// An identifier identical to the Author Domain: aligned in either
    /// mode, without knowing any Organizational Domain.
    pub fn identical(identifier: &str, author: &str, mode: AlignmentMode) -> Alignment {
        Alignment {
            mode,
            ..Alignment::strict(identifier, author)
        }
    }

    /// Relaxed mode, for an identifier that is neither the Author Domain's
    /// Organizational Domain nor below it: its own Organizational Domain is
    /// a name at or above it (RFC 9989 §4.10.2), so it cannot be
    /// `author_org`, whatever the DNS says. Not aligned; nothing looked up.
    pub fn outside(identifier: &str, author: &str, author_org: &str) -> Alignment {
        Alignment {
            identifier: identifier.to_string(),
            identifier_org: None,
            author: author.to_string(),
            author_org: Some(author_org.to_string()),
            mode: AlignmentMode::Relaxed,
            aligned: false,
        }
    }

    /// Relaxed mode, for an identifier that shares no parent domain with
    /// the Author Domain: their Organizational Domains cannot be equal,
    /// whatever they are. Not aligned; nothing looked up.
    pub fn unrelated(identifier: &str, author: &str) -> Alignment {
        Alignment {
            identifier: identifier.to_string(),
            identifier_org: None,
            author: author.to_string(),
            author_org: None,
            mode: AlignmentMode::Relaxed,
            aligned: false,
        }
    }

    /// One line saying why: `strict: mail.example.com ≠ example.com` or
    /// `relaxed: organizational domains mailer.net ≠ example.com`.
    pub fn explain(&self) -> String {
        let sign = if self.aligned { "=" } else { "≠" };
        let identical = self.identifier.eq_ignore_ascii_case(&self.author);
        match (&self.identifier_org, &self.author_org, self.mode) {
            (Some(i), Some(a), AlignmentMode::Relaxed) if !identical => {
                format!("relaxed: organizational domains {i} {sign} {a}")
            }
            (None, Some(a), AlignmentMode::Relaxed) if !identical => format!(
                "relaxed: {} is not the organizational domain {a} or below it",
                self.identifier
            ),
            (None, None, AlignmentMode::Relaxed) if !identical => format!(
                "relaxed: {} and {} have no parent domain in common",
                self.identifier, self.author
            ),
            _ => format!(
                "{}: {} {sign} {}",
                self.mode.as_str(),
                self.identifier,
                self.author
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_relaxed_table() {
        let strict: &[(&str, &str, bool)] = &[
            ("example.com", "example.com", true),
            ("EXAMPLE.com", "example.com", true),
            ("mail.example.com", "example.com", false),
            ("example.com", "mail.example.com", false),
            ("example.net", "example.com", false),
        ];
        for &(a, b, expected) in strict {
            assert_eq!(Alignment::strict(a, b).aligned, expected, "{a} {b}");
            // Strict alignment is symmetric.
            assert_eq!(Alignment::strict(b, a).aligned, expected, "{b} {a}");
        }
        let relaxed: &[(&str, &str, &str, &str, bool)] = &[
            (
                "mail.example.com",
                "example.com",
                "example.com",
                "example.com",
                true,
            ),
            (
                "a.example.com",
                "example.com",
                "b.example.com",
                "example.com",
                true,
            ),
            (
                "bounce.mailer.net",
                "mailer.net",
                "example.com",
                "example.com",
                false,
            ),
            (
                "example.co.uk",
                "example.co.uk",
                "other.co.uk",
                "other.co.uk",
                false,
            ),
        ];
        for &(i, io, a, ao, expected) in relaxed {
            assert_eq!(
                Alignment::relaxed(i, io, a, ao).aligned,
                expected,
                "{i} {a}"
            );
            assert_eq!(
                Alignment::relaxed(a, ao, i, io).aligned,
                expected,
                "{a} {i}"
            );
        }
    }

    #[test]
    fn explanations_name_the_domains() {
        let a = Alignment::relaxed(
            "bounce.mailer.net",
            "mailer.net",
            "example.com",
            "example.com",
        );
        assert_eq!(
            a.explain(),
            "relaxed: organizational domains mailer.net ≠ example.com"
        );
        let a = Alignment::strict("mail.example.com", "example.com");
        assert_eq!(a.explain(), "strict: mail.example.com ≠ example.com");
        let a = Alignment::relaxed("example.com", "example.com", "example.com", "example.com");
        assert_eq!(a.explain(), "relaxed: example.com = example.com");
    }
}
