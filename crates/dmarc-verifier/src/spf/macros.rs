//! SPF macros (RFC 7208 §7): macro-strings are checked when a record is
//! read (a syntax error anywhere is a permerror, §4.6) and expanded when a
//! term is evaluated.
//!
//! ```text
//! macro-string  = *( macro-expand / macro-literal )
//! macro-expand  = ( "%{" macro-letter transformers *delimiter "}" )
//!                 / "%%" / "%_" / "%-"
//! macro-literal = %x21-24 / %x26-7E   ; visible characters except "%"
//! macro-letter  = "s" / "l" / "o" / "d" / "i" / "p" / "h" /
//!                 "c" / "r" / "t" / "v"
//! transformers  = *DIGIT [ "r" ]
//! delimiter     = "." / "-" / "+" / "," / "/" / "_" / "="
//! explain-string = *( macro-string / SP )
//! ```
//!
//! ABNF strings are case-insensitive (RFC 5234 §2.3): `%{S}` and `%{dR}`
//! are macros; an upper-case letter URL-escapes its expansion (§7.3).

use std::{fmt::Write as _, net::IpAddr};

/// Where a macro-string stands, which decides the letters it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A term of a record (a domain-spec, an unknown modifier's value):
    /// RFC 7208 §7.1 allows `c`, `r` and `t` "only in exp text".
    Record,
    /// The explanation string of §6.2 (the TXT record `exp=` names): SP is
    /// allowed between macro-strings, and every letter.
    Explanation,
}

/// What checking a macro-string learnt about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MacroSyntax {
    /// The string ends with a macro-expand: it is a valid domain-end
    /// (§7.1) whatever it expands to.
    pub ends_with_expand: bool,
    /// The string uses `%{p}`, whose value needs DNS lookups (§7.3).
    pub uses_ptr: bool,
}

/// Checks a macro-string (or, in [`Context::Explanation`], an
/// explain-string) against the ABNF of RFC 7208 §7.1.
///
/// # Errors
///
/// What is wrong: a character that is not a macro-literal, a `%` not
/// followed by `{`, `%`, `_` or `-`, an unknown letter, a letter allowed
/// only in explanations, a digit transformer of 0, an unclosed `%{`.
pub(crate) fn check(text: &[u8], context: Context) -> Result<MacroSyntax, &'static str> {
    let mut syntax = MacroSyntax::default();
    let mut rest = text;
    while let Some((&first, after)) = rest.split_first() {
        syntax.ends_with_expand = false;
        rest = after;
        match first {
            b'%' => {
                let Some((&second, after)) = rest.split_first() else {
                    return Err("'%' at the end (write \"%%\" for a percent sign)");
                };
                rest = after;
                match second {
                    b'%' | b'_' | b'-' => {}
                    b'{' => {
                        let close = rest
                            .iter()
                            .position(|&c| c == b'}')
                            .ok_or("'%{' without its '}'")?;
                        let (spec, after) = rest.split_at(close);
                        let spec = parse_expand(spec)?;
                        if context == Context::Record && matches!(spec.letter, b'c' | b'r' | b't') {
                            return Err(
                                "macro letters c, r and t are allowed only in explanations",
                            );
                        }
                        syntax.uses_ptr |= spec.letter == b'p';
                        rest = after.get(1..).unwrap_or_default();
                    }
                    _ => return Err("'%' not followed by '{', '%', '_' or '-'"),
                }
                syntax.ends_with_expand = true;
            }
            0x21..=0x7e => {}
            b' ' if context == Context::Explanation => {}
            _ => return Err("a character that is not a visible ASCII character"),
        }
    }
    Ok(syntax)
}

/// One `%{...}` macro, its braces removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expand<'a> {
    /// The letter, lower case.
    letter: u8,
    /// Whether the letter was upper case: the expansion is URL-escaped.
    escape: bool,
    /// How many right-hand parts to keep; `None` keeps all.
    keep: Option<usize>,
    /// Whether to reverse the parts first.
    reverse: bool,
    /// The delimiters to split on; `.` when empty.
    delimiters: &'a [u8],
}

/// Reads `macro-letter transformers *delimiter` (RFC 7208 §7.1).
fn parse_expand(spec: &[u8]) -> Result<Expand<'_>, &'static str> {
    let Some((&letter, rest)) = spec.split_first() else {
        return Err("'%{}' has no macro letter");
    };
    let lower = letter.to_ascii_lowercase();
    if !matches!(
        lower,
        b's' | b'l' | b'o' | b'd' | b'i' | b'p' | b'h' | b'c' | b'r' | b't' | b'v'
    ) {
        return Err("unknown macro letter");
    }
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let (digits, rest) = rest.split_at(digits);
    let keep = if digits.is_empty() {
        None
    } else {
        let value = digits.iter().fold(0usize, |value, &digit| {
            value
                .saturating_mul(10)
                .saturating_add(usize::from(digit - b'0'))
        });
        // §7.1: "If a DIGIT is specified, the value MUST be nonzero."
        if value == 0 {
            return Err("a macro's digit transformer must not be 0");
        }
        Some(value)
    };
    let (reverse, delimiters) = match rest.split_first() {
        Some((b'r' | b'R', after)) => (true, after),
        _ => (false, rest),
    };
    if !delimiters
        .iter()
        .all(|c| matches!(c, b'.' | b'-' | b'+' | b',' | b'/' | b'_' | b'='))
    {
        return Err("a macro's delimiter is not one of . - + , / _ =");
    }
    Ok(Expand {
        letter: lower,
        escape: letter.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters,
    })
}

/// The values macros expand to (RFC 7208 §7.3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    /// `s`: `<sender>`.
    pub sender: &'a str,
    /// `l`: the local-part of `<sender>`.
    pub local_part: &'a str,
    /// `o`: the domain of `<sender>`.
    pub sender_domain: &'a str,
    /// `d`: `<domain>`, the domain whose record is evaluated.
    pub domain: &'a str,
    /// `i`, `c`, `v`: `<ip>` (an IPv4-mapped address already as IPv4).
    pub ip: IpAddr,
    /// `h`: the HELO/EHLO name.
    pub helo: &'a str,
    /// `p`: the validated domain name of `<ip>`, or `unknown`.
    pub ptr: &'a str,
    /// `r`: the name of the host checking.
    pub receiver: &'a str,
    /// `t`: the time, seconds since the Unix epoch.
    pub now: u64,
}

/// Buffers [`expand`] reuses, so that expanding allocates nothing once
/// they have grown.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// A value computed rather than borrowed (`i`, `c`, `t`).
    value: String,
    /// The parts of a value being transformed: (start, end).
    parts: Vec<(usize, usize)>,
}

/// Appends the expansion of `text` to `out`. `text` must have passed
/// [`check`] (in the context it is expanded in); anything else is copied
/// or skipped, never an error.
pub(crate) fn expand(text: &[u8], vars: &Vars<'_>, out: &mut String, scratch: &mut Scratch) {
    let mut rest = text;
    while let Some((&first, after)) = rest.split_first() {
        rest = after;
        if first != b'%' {
            out.push(char::from(first));
            continue;
        }
        let Some((&second, after)) = rest.split_first() else {
            break;
        };
        rest = after;
        match second {
            b'%' => out.push('%'),
            b'_' => out.push(' '),
            b'-' => out.push_str("%20"),
            b'{' => {
                let close = rest.iter().position(|&c| c == b'}').unwrap_or(rest.len());
                let (spec, after) = rest.split_at(close);
                rest = after.get(1..).unwrap_or_default();
                if let Ok(spec) = parse_expand(spec) {
                    expand_one(&spec, vars, out, scratch);
                }
            }
            _ => {}
        }
    }
}

/// Appends one `%{...}`: its value, transformed (§7.3: split on the
/// delimiters, reversed, the right-hand parts kept, joined with dots),
/// URL-escaped for an upper-case letter.
fn expand_one(spec: &Expand<'_>, vars: &Vars<'_>, out: &mut String, scratch: &mut Scratch) {
    let Scratch { value, parts } = scratch;
    let value: &str = match spec.letter {
        b's' => vars.sender,
        b'l' => vars.local_part,
        b'o' => vars.sender_domain,
        b'd' => vars.domain,
        b'h' => vars.helo,
        b'p' => vars.ptr,
        b'r' => vars.receiver,
        b'v' => match vars.ip {
            IpAddr::V4(_) => "in-addr",
            IpAddr::V6(_) => "ip6",
        },
        b'i' => {
            value.clear();
            match vars.ip {
                IpAddr::V4(ip) => {
                    let _ = write!(value, "{ip}");
                }
                // §7.3: dot-format, 32 nibbles in hexadecimal.
                IpAddr::V6(ip) => {
                    for octet in ip.octets() {
                        for nibble in [octet >> 4, octet & 0x0f] {
                            if !value.is_empty() {
                                value.push('.');
                            }
                            value.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                        }
                    }
                }
            }
            value
        }
        b'c' => {
            value.clear();
            // §7.3: dotted quad, or RFC 5952 text for IPv6.
            let _ = write!(value, "{}", vars.ip);
            value
        }
        b't' => {
            value.clear();
            let _ = write!(value, "{}", vars.now);
            value
        }
        _ => "",
    };
    let plain = spec.keep.is_none()
        && !spec.reverse
        && spec.delimiters.iter().all(|&delimiter| delimiter == b'.');
    if plain {
        push_value(out, value, spec.escape);
        return;
    }
    parts.clear();
    let delimiters: &[u8] = if spec.delimiters.is_empty() {
        b"."
    } else {
        spec.delimiters
    };
    let mut start = 0;
    for (index, octet) in value.bytes().enumerate() {
        if delimiters.contains(&octet) {
            parts.push((start, index));
            start = index + 1;
        }
    }
    parts.push((start, value.len()));
    if spec.reverse {
        parts.reverse();
    }
    let skip = spec.keep.map_or(0, |keep| parts.len().saturating_sub(keep));
    for (index, &(start, end)) in parts.iter().skip(skip).enumerate() {
        if index > 0 {
            out.push('.');
        }
        push_value(out, value.get(start..end).unwrap_or_default(), spec.escape);
    }
}

/// Appends a value, URL-escaped when `escape` (RFC 7208 §7.3: every
/// character outside RFC 3986 `unreserved` as `%XX`, each octet of its
/// UTF-8 form).
fn push_value(out: &mut String, value: &str, escape: bool) {
    if !escape {
        out.push_str(value);
        return;
    }
    for octet in value.bytes() {
        if octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(octet));
        } else {
            let _ = write!(out, "%{octet:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn vars(ip: &str) -> Vars<'static> {
        Vars {
            sender: "strong-bad@email.example.com",
            local_part: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            helo: "mx.example.org",
            ptr: "unknown",
            receiver: "mx.receiver.example",
            now: 1_700_000_000,
        }
    }

    fn expanded(text: &str, vars: &Vars<'_>) -> String {
        check(text.as_bytes(), Context::Explanation).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut out = String::new();
        expand(text.as_bytes(), vars, &mut out, &mut Scratch::default());
        out
    }

    /// RFC 7208 §7.4, every example, exactly.
    #[test]
    fn rfc7208_section_7_4_examples() {
        let v4 = vars("192.0.2.3");
        let cases = [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(expanded(text, &v4), expected, "{text}");
        }
        let v6 = vars("2001:db8::cb01");
        assert_eq!(
            expanded("%{ir}.%{v}._spf.%{d2}", &v6),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn other_letters_escapes_and_transformers() {
        let v4 = vars("192.0.2.3");
        let cases = [
            ("%%%_%-", "% %20"),
            ("%{h}", "mx.example.org"),
            (
                "%{c} %{r} %{t} %{p}",
                "192.0.2.3 mx.receiver.example 1700000000 unknown",
            ),
            ("%{i}", "192.0.2.3"),
            ("%{i1}", "3"),
            ("%{i99999999999999999999999}", "192.0.2.3"),
            ("%{d2R}", "example.email"),
            ("%{L-}", "strong.bad"),
            ("%{S}", "strong-bad%40email.example.com"),
            ("%{l+-}", "strong.bad"),
            ("%{d=}", "email.example.com"),
            ("trailing.", "trailing."),
        ];
        for (text, expected) in cases {
            assert_eq!(expanded(text, &v4), expected, "{text}");
        }
        let v6 = vars("2001:db8::cb01");
        assert_eq!(expanded("%{c}", &v6), "2001:db8::cb01");
        assert_eq!(
            expanded("%{i}", &v6),
            "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1"
        );
        let odd = Vars {
            local_part: "~jack&jill=up-a_b3.c",
            ..vars("192.0.2.3")
        };
        assert_eq!(expanded("%{L}", &odd), "~jack%26jill%3Dup-a_b3.c");
        let empty = Vars {
            local_part: "",
            ..vars("192.0.2.3")
        };
        assert_eq!(expanded("[%{l}][%{l1r}]", &empty), "[][]");
    }

    #[test]
    fn syntax() {
        let good = [
            ("", false, false),
            ("example.com", false, false),
            ("%{d}", true, false),
            ("%{d}.", false, false),
            ("a%%", true, false),
            ("%{p}.x", false, true),
            ("%{l2r+-./,_=}", true, false),
            ("%{D0002}", true, false),
        ];
        for (text, ends_with_expand, uses_ptr) in good {
            assert_eq!(
                check(text.as_bytes(), Context::Record),
                Ok(MacroSyntax {
                    ends_with_expand,
                    uses_ptr
                }),
                "{text}"
            );
        }
        let bad = [
            ("%", "'%' at the end"),
            ("a%b", "'%' not followed"),
            ("%(ir)", "'%' not followed"),
            ("%{d", "without its '}'"),
            ("%{}", "no macro letter"),
            ("%{a}", "unknown macro letter"),
            ("%{x}", "unknown macro letter"),
            ("%{d0}", "must not be 0"),
            ("%{d00}", "must not be 0"),
            ("%{d2r!}", "delimiter"),
            ("%{dr2}", "delimiter"),
            ("%{c}", "only in explanations"),
            ("%{R}", "only in explanations"),
            ("%{t}", "only in explanations"),
            ("a b", "not a visible ASCII"),
            ("a\0", "not a visible ASCII"),
            ("caf\u{e9}", "not a visible ASCII"),
        ];
        for (text, problem) in bad {
            let error = check(text.as_bytes(), Context::Record).unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
        assert!(check(b"%{c} is %{t} %{r}", Context::Explanation).is_ok());
        assert!(check(b"\xef\xbb\xbfExplanation", Context::Explanation).is_err());
    }
}
