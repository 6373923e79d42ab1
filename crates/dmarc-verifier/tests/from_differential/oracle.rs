//! The differential oracle of Author Domain extraction: our parser
//! (`message::author_domains`) against an independent one, the
//! `mail-parser` crate's address-list parser. Shared by the test
//! `from_differential.rs` and the fuzz target `from_differential`.
//!
//! The rule: whenever ours returns domains, every mailbox domain the other
//! parser finds must be among them, or ours must return an error (which the
//! policy turns into the strict outcome). A smaller set of Author Domains
//! than another reader sees is a bypass.
//!
//! Disagreements the RFC decides in our favour (the allow-list):
//!
//! - mail-parser reports an "address" whose domain is not a DNS name (a
//!   domain literal `[192.0.2.1]`, a word holding `<`, `"` or white space):
//!   no DMARC policy can be looked up for it, so it is no Author Domain
//!   (RFC 9989 §3.2.4: an Author Domain is a domain name).
//! - mail-parser takes an `@` inside a quoted-string or a comment for the
//!   separator of an address (`<"@r(x:y"@victim.com>`): RFC 5322 §3.2.4 and
//!   §3.2.2, the text of a quoted-string or a comment is no address. Such a
//!   domain is allowed only when `@domain` appears nowhere else in the
//!   value, outside quoted-strings and comments.
//! - mail-parser takes a domain of an obsolete source route
//!   (`<@route.example:a@b.example>`) for a mailbox: RFC 5322 §4.4, the
//!   route is not part of the address. Such a domain is allowed when it
//!   appears outside quoted-strings and comments only in well-formed routes
//!   (`<` then `@domain` entries separated by commas, ended by `:`).

use dmarc_verifier::message::{author_domains, normalize_domain};

/// Why the two parsers disagree on the From value `value` in a way the
/// allow-list does not cover, or `None`.
pub fn disagreement(value: &[u8]) -> Option<String> {
    let ours = author_domains(&[value], 100).ok()?;
    let parsed = mail_parser::HeaderForm::Addresses.parse(value);
    let list = parsed.value().as_address()?;
    for mailbox in list.mailboxes() {
        let Some(address) = mailbox.address() else {
            continue;
        };
        let Some((_, domain)) = address.rsplit_once('@') else {
            continue;
        };
        // Allow-list: not a DNS name, so no Author Domain.
        let Ok(normalized) = normalize_domain(domain) else {
            continue;
        };
        // Allow-list: only inside a quoted-string or a comment.
        if !ours.contains(&normalized)
            && without_routes(&outside_quotes(value))
                .contains(&format!("@{}", domain.to_lowercase()))
        {
            return Some(format!(
                "{:?}: mail-parser finds {address:?}, ours only {ours:?}",
                String::from_utf8_lossy(value)
            ));
        }
    }
    None
}

/// `value` as lower-case text with every quoted-string and comment (RFC 5322
/// §3.2.4, §3.2.2, quoted-pairs included) blanked out.
fn outside_quotes(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value).to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        let inside = quoted || depth > 0;
        if escaped {
            escaped = false;
            out.push(' ');
            continue;
        }
        match c {
            '\\' if inside => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ => {}
        }
        out.push(if inside || c == '"' || c == '(' || c == ')' {
            ' '
        } else {
            c
        });
    }
    out
}

/// `text` (from [`outside_quotes`]) with every well-formed obsolete source
/// route blanked out: after a `<`, optional white space and commas, then
/// `@domain` entries separated by commas (an entry may be empty), ended by
/// `:` (RFC 5322 §4.4 `obs-route`).
fn without_routes(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let is_domain = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | '_');
    let skip_space = |mut i: usize| {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i
    };
    for start in 0..chars.len() {
        if chars[start] != '<' {
            continue;
        }
        let mut i = start + 1;
        while chars.get(i).is_some_and(|&c| c.is_whitespace() || c == ',') {
            i += 1;
        }
        if chars.get(i) != Some(&'@') {
            continue;
        }
        let end = loop {
            // At '@': one domain.
            i += 1;
            let first = i;
            while chars.get(i).is_some_and(|&c| is_domain(c)) {
                i += 1;
            }
            if i == first {
                break None;
            }
            i = skip_space(i);
            match chars.get(i) {
                Some(':') => break Some(i),
                Some(',') => {
                    // Commas, each optionally followed by an entry.
                    loop {
                        i = skip_space(i + 1);
                        match chars.get(i) {
                            Some(',') => continue,
                            Some('@') | Some(':') => break,
                            _ => break,
                        }
                    }
                    match chars.get(i) {
                        Some('@') => continue,
                        Some(':') => break Some(i),
                        _ => break None,
                    }
                }
                _ => break None,
            }
        };
        if let Some(end) = end {
            for c in out.iter_mut().take(end + 1).skip(start + 1) {
                *c = ' ';
            }
        }
    }
    out.into_iter().collect()
}
