//! SPF records: selecting the record among the TXT records of a name
//! (RFC 7208 §4.5) and reading its terms exactly as the ABNF of §4.6.1 and
//! §12 says. A term that does not read is a syntax error, which makes
//! check_host() return `permerror` before any term is evaluated (§4.6).
//!
//! ```text
//! record           = version terms *SP
//! version          = "v=spf1"
//! terms            = *( 1*SP ( directive / modifier ) )
//! directive        = [ qualifier ] mechanism
//! qualifier        = "+" / "-" / "?" / "~"
//! mechanism        = ( all / include / a / mx / ptr / ip4 / ip6 / exists )
//! all              = "all"
//! include          = "include"  ":" domain-spec
//! a                = "a"      [ ":" domain-spec ] [ dual-cidr-length ]
//! mx               = "mx"     [ ":" domain-spec ] [ dual-cidr-length ]
//! ptr              = "ptr"    [ ":" domain-spec ]
//! ip4              = "ip4"      ":" ip4-network   [ ip4-cidr-length ]
//! ip6              = "ip6"      ":" ip6-network   [ ip6-cidr-length ]
//! exists           = "exists"   ":" domain-spec
//! modifier         = redirect / explanation / unknown-modifier
//! redirect         = "redirect" "=" domain-spec
//! explanation      = "exp" "=" domain-spec
//! unknown-modifier = name "=" macro-string
//! ip4-cidr-length  = "/" ("0" / %x31-39 0*1DIGIT) ; value range 0-32
//! ip6-cidr-length  = "/" ("0" / %x31-39 0*2DIGIT) ; value range 0-128
//! dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]
//! ip4-network      = qnum "." qnum "." qnum "." qnum
//! domain-spec      = macro-string domain-end
//! domain-end       = ( "." toplabel [ "." ] ) / macro-expand
//! name             = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
//! ```
//!
//! Names of mechanisms and modifiers are case-insensitive (RFC 5234 §2.3).
//! A term is a modifier when it starts with a `name` directly followed by
//! `=`; anything else is a directive, and a directive whose mechanism is
//! not one of the eight is an error (§5: unknown mechanisms are not
//! ignored). `redirect` and `exp` each appear at most once (§6).

use super::{macros, name::is_toplabel};
use crate::verdict::SpfResult;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A range of octets of the record text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The octets of `text` in the span.
    pub(crate) fn of(self, text: &[u8]) -> &[u8] {
        text.get(self.start..self.end).unwrap_or_default()
    }

    /// The span as text. Every span of a record that parsed is ASCII.
    pub(crate) fn str(self, text: &[u8]) -> &str {
        std::str::from_utf8(self.of(text)).unwrap_or_default()
    }

    fn is_empty(self) -> bool {
        self.start >= self.end
    }

    fn first(self, text: &[u8]) -> Option<u8> {
        self.of(text).first().copied()
    }

    /// The span without its first `count` octets.
    fn skip(self, count: usize) -> Span {
        Span::new((self.start + count).min(self.end), self.end)
    }
}

/// What a matching directive makes the result (RFC 7208 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qualifier {
    /// `+`, or no qualifier.
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

impl Qualifier {
    pub(crate) fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

/// A mechanism with its arguments (RFC 7208 §5). Domain-specs are spans
/// of the record text, checked and not yet expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// `all` (§5.1).
    All,
    /// `include:<domain-spec>` (§5.2).
    Include(Span),
    /// `a[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]` (§5.3).
    A {
        target: Option<Span>,
        cidr4: u8,
        cidr6: u8,
    },
    /// `mx[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]` (§5.4).
    Mx {
        target: Option<Span>,
        cidr4: u8,
        cidr6: u8,
    },
    /// `ptr[:<domain-spec>]` (§5.5).
    Ptr(Option<Span>),
    /// `ip4:<network>[/<cidr>]` (§5.6).
    Ip4 { network: Ipv4Addr, cidr: u8 },
    /// `ip6:<network>[/<cidr>]` (§5.6).
    Ip6 { network: Ipv6Addr, cidr: u8 },
    /// `exists:<domain-spec>` (§5.7).
    Exists(Span),
}

/// One directive: a qualifier and a mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
    /// The whole term, for the decision trail.
    pub term: Span,
}

impl Directive {
    /// Whether evaluating the directive asks the DNS, and so counts
    /// against the limit of 10 (RFC 7208 §4.6.4).
    pub(crate) fn asks_dns(&self) -> bool {
        !matches!(
            self.mechanism,
            Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. }
        )
    }
}

/// A record read from its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// The directives, in order.
    pub directives: Vec<Directive>,
    /// The domain-spec of `redirect=`, and the whole term.
    pub redirect: Option<(Span, Span)>,
    /// The domain-spec of `exp=`.
    pub exp: Option<Span>,
}

/// A term that does not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// The term, as written (non-ASCII octets escaped).
    pub term: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl SyntaxError {
    fn new(text: &[u8], term: Span, problem: &'static str) -> SyntaxError {
        SyntaxError {
            term: term.of(text).escape_ascii().to_string(),
            problem,
        }
    }
}

/// The records of a name that are SPF records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// None (§4.5: the result is `none`).
    None,
    /// Exactly one, at this index.
    One(usize),
    /// More than one (§4.5: `permerror`), how many.
    Several(usize),
}

/// Whether a TXT record is an SPF record: it starts with `v=spf1` in any
/// case, followed by a space or the end (RFC 7208 §4.5).
pub(crate) fn is_spf_record(text: &[u8]) -> bool {
    text.get(..6)
        .is_some_and(|version| version.eq_ignore_ascii_case(b"v=spf1"))
        && matches!(text.get(6), None | Some(b' '))
}

/// Picks the SPF record among the TXT records of a name (RFC 7208 §4.5).
pub(crate) fn select(records: &[Box<[u8]>]) -> Selection {
    let mut found = Selection::None;
    for (index, record) in records.iter().enumerate() {
        if is_spf_record(record) {
            found = match found {
                Selection::None => Selection::One(index),
                Selection::One(_) => Selection::Several(2),
                Selection::Several(count) => Selection::Several(count + 1),
            };
        }
    }
    found
}

/// Reads the terms of an SPF record (text for which [`is_spf_record`]
/// holds).
///
/// # Errors
///
/// The first term that does not read, with the reason.
pub(crate) fn parse(text: &[u8]) -> Result<Record, SyntaxError> {
    let mut record = Record::default();
    let mut start = 6;
    while start < text.len() {
        let end = text
            .get(start..)
            .and_then(|rest| rest.iter().position(|&octet| octet == b' '))
            .map_or(text.len(), |offset| start + offset);
        // Terms are separated by one or more spaces (§4.6.1), and the
        // record may end with spaces.
        if end > start {
            parse_term(text, Span::new(start, end), &mut record)?;
        }
        start = end + 1;
    }
    Ok(record)
}

/// Reads one term into `record`.
fn parse_term(text: &[u8], term: Span, record: &mut Record) -> Result<(), SyntaxError> {
    let octets = term.of(text);
    let error = |problem| SyntaxError::new(text, term, problem);
    // modifier = name "=" ...; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
    if octets.first().is_some_and(u8::is_ascii_alphabetic) {
        let name_len = octets
            .iter()
            .position(|&octet| {
                !(octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'_' | b'.'))
            })
            .unwrap_or(octets.len());
        if octets.get(name_len) == Some(&b'=') {
            let name = term.of(text).get(..name_len).unwrap_or_default();
            let value = term.skip(name_len + 1);
            if name.eq_ignore_ascii_case(b"redirect") {
                if record.redirect.is_some() {
                    return Err(error("redirect= appears twice (RFC 7208 §6)"));
                }
                check_domain_spec(text, value).map_err(error)?;
                record.redirect = Some((value, term));
            } else if name.eq_ignore_ascii_case(b"exp") {
                if record.exp.is_some() {
                    return Err(error("exp= appears twice (RFC 7208 §6)"));
                }
                check_domain_spec(text, value).map_err(error)?;
                record.exp = Some(value);
            } else {
                // An unknown modifier is ignored, but its value must be a
                // macro-string (RFC 7208 §6, appendix A).
                macros::check(value.of(text), macros::Context::Record).map_err(error)?;
            }
            return Ok(());
        }
    }
    let (qualifier, skip) = match octets.first() {
        Some(b'+') => (Qualifier::Pass, 1),
        Some(b'-') => (Qualifier::Fail, 1),
        Some(b'~') => (Qualifier::SoftFail, 1),
        Some(b'?') => (Qualifier::Neutral, 1),
        _ => (Qualifier::Pass, 0),
    };
    let after_qualifier = term.skip(skip);
    let name_len = after_qualifier
        .of(text)
        .iter()
        .take_while(|octet| octet.is_ascii_alphanumeric())
        .count();
    let name = after_qualifier.of(text).get(..name_len).unwrap_or_default();
    let rest = after_qualifier.skip(name_len);
    let is = |mechanism: &[u8]| name.eq_ignore_ascii_case(mechanism);
    let mechanism = if is(b"all") {
        if !rest.is_empty() {
            return Err(error("all takes no argument"));
        }
        Mechanism::All
    } else if is(b"include") {
        Mechanism::Include(required_domain_spec(text, rest).map_err(error)?)
    } else if is(b"exists") {
        Mechanism::Exists(required_domain_spec(text, rest).map_err(error)?)
    } else if is(b"a") || is(b"mx") {
        let (target, cidr4, cidr6) = a_arguments(text, rest).map_err(error)?;
        if is(b"a") {
            Mechanism::A {
                target,
                cidr4,
                cidr6,
            }
        } else {
            Mechanism::Mx {
                target,
                cidr4,
                cidr6,
            }
        }
    } else if is(b"ptr") {
        if rest.is_empty() {
            Mechanism::Ptr(None)
        } else {
            Mechanism::Ptr(Some(required_domain_spec(text, rest).map_err(error)?))
        }
    } else if is(b"ip4") {
        let (network, cidr) = network_arguments(text, rest, 32).map_err(error)?;
        Mechanism::Ip4 {
            network: ip4_network(network).ok_or_else(|| error("not an IPv4 network"))?,
            cidr,
        }
    } else if is(b"ip6") {
        let (network, cidr) = network_arguments(text, rest, 128).map_err(error)?;
        // ip6-network = <as per RFC 4291 §2.2>: the text forms of
        // addresses, the IPv4-suffixed one included.
        let network = std::str::from_utf8(network)
            .ok()
            .and_then(|network| network.parse().ok())
            .ok_or_else(|| error("not an IPv6 network"))?;
        Mechanism::Ip6 { network, cidr }
    } else {
        return Err(error("unknown mechanism (RFC 7208 §5)"));
    };
    record.directives.push(Directive {
        qualifier,
        mechanism,
        term,
    });
    Ok(())
}

/// `":" domain-spec`, required.
fn required_domain_spec(text: &[u8], rest: Span) -> Result<Span, &'static str> {
    if rest.first(text) != Some(b':') {
        return Err("a domain-spec after ':' is required");
    }
    let spec = rest.skip(1);
    check_domain_spec(text, spec)?;
    Ok(spec)
}

/// Checks a domain-spec (RFC 7208 §7.1): a non-empty macro-string whose
/// end is a macro-expand or `"." toplabel ["."]`.
fn check_domain_spec(text: &[u8], spec: Span) -> Result<(), &'static str> {
    let octets = spec.of(text);
    if octets.is_empty() {
        return Err("empty domain-spec");
    }
    let syntax = macros::check(octets, macros::Context::Record)?;
    if syntax.ends_with_expand {
        return Ok(());
    }
    let octets = octets.strip_suffix(b".").unwrap_or(octets);
    let toplabel = octets
        .iter()
        .rposition(|&octet| octet == b'.')
        .and_then(|dot| octets.get(dot + 1..));
    match toplabel {
        Some(toplabel) if is_toplabel(toplabel) => Ok(()),
        _ => Err(
            "the domain-spec does not end in '.' and a toplabel, nor in a macro (RFC 7208 §7.1)",
        ),
    }
}

/// The arguments of `a` and `mx`: `[":" domain-spec] [dual-cidr-length]`,
/// the CIDR lengths defaulting to 32 and 128.
///
/// A domain-spec may hold `/` (`a:foo:bar/baz.example.com`), so the CIDR
/// lengths are read from the end: `//<digits>`, then `/<digits>`.
fn a_arguments(text: &[u8], rest: Span) -> Result<(Option<Span>, u8, u8), &'static str> {
    let (spec, rest) = if rest.first(text) == Some(b':') {
        let spec = rest.skip(1);
        (Some(spec), spec)
    } else {
        (None, rest)
    };
    let mut head = rest;
    let mut cidr6 = 128;
    let mut cidr4 = 32;
    if let Some((before, digits, double)) = trailing_cidr(text, head) {
        if double {
            cidr6 = cidr_length(digits.of(text), 128)?;
            head = before;
            if let Some((before, digits, false)) = trailing_cidr(text, head) {
                cidr4 = cidr_length(digits.of(text), 32)?;
                head = before;
            }
        } else {
            cidr4 = cidr_length(digits.of(text), 32)?;
            head = before;
        }
    }
    match spec {
        Some(_) => {
            check_domain_spec(text, head)?;
            Ok((Some(head), cidr4, cidr6))
        }
        None if head.is_empty() => Ok((None, cidr4, cidr6)),
        None => Err("expected ':' and a domain-spec, or a CIDR length"),
    }
}

/// A CIDR length at the end of `span`: the span before it, its digits,
/// and whether it was written `//` (an IPv6 length of a dual-cidr-length).
fn trailing_cidr(text: &[u8], span: Span) -> Option<(Span, Span, bool)> {
    let octets = span.of(text);
    let digits = octets
        .iter()
        .rev()
        .take_while(|octet| octet.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let slash = octets.len().checked_sub(digits + 1)?;
    if octets.get(slash) != Some(&b'/') {
        return None;
    }
    let double = slash > 0 && octets.get(slash - 1) == Some(&b'/');
    let before_end = span.start + slash - usize::from(double);
    Some((
        Span::new(span.start, before_end),
        Span::new(span.start + slash + 1, span.end),
        double,
    ))
}

/// A CIDR length: `"0" / %x31-39 0*1DIGIT` up to 32, or `"0" / %x31-39
/// 0*2DIGIT` up to 128 (RFC 7208 §5.6: no leading zero, in range).
fn cidr_length(digits: &[u8], max: u8) -> Result<u8, &'static str> {
    if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits.first() == Some(&b'0'))
    {
        return Err("a CIDR length is 0 or a number without leading zero");
    }
    let value = digits.iter().fold(0u32, |value, &digit| {
        value * 10 + u32::from(digit.wrapping_sub(b'0'))
    });
    u8::try_from(value)
        .ok()
        .filter(|&value| value <= max)
        .ok_or(if max == 32 {
            "an IPv4 CIDR length is at most 32"
        } else {
            "an IPv6 CIDR length is at most 128"
        })
}

/// The arguments of `ip4` and `ip6`: `":" network ["/" length]`.
fn network_arguments(text: &[u8], rest: Span, max: u8) -> Result<(&[u8], u8), &'static str> {
    if rest.first(text) != Some(b':') {
        return Err("a network after ':' is required");
    }
    let argument = rest.skip(1).of(text);
    match argument.iter().position(|&octet| octet == b'/') {
        None => Ok((argument, max)),
        Some(slash) => {
            let (network, length) = argument.split_at(slash);
            let length = length.get(1..).unwrap_or_default();
            if !length.iter().all(u8::is_ascii_digit) {
                return Err("a CIDR length is 0 or a number without leading zero");
            }
            Ok((network, cidr_length(length, max)?))
        }
    }
}

/// `ip4-network = qnum "." qnum "." qnum "." qnum`, each qnum 0 to 255
/// without leading zero (RFC 7208 §5.6, appendix A).
fn ip4_network(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&octet| octet == b'.');
    for slot in &mut octets {
        let part = parts.next()?;
        if part.is_empty()
            || part.len() > 3
            || !part.iter().all(u8::is_ascii_digit)
            || (part.len() > 1 && part.first() == Some(&b'0'))
        {
            return None;
        }
        let value = part
            .iter()
            .fold(0u32, |value, &digit| value * 10 + u32::from(digit - b'0'));
        *slot = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests;
