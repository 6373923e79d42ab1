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

use super::{
    macros,
    name::{check as check_name, is_toplabel, NameCheck, MAX_NAME_LEN},
};
use crate::verdict::SpfResult;
use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    mem::size_of,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Arc, LazyLock, PoisonError, RwLock},
};

/// A range of octets of the record text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// A span of a text of at most [`MAX_RECORD_LEN`] octets.
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The octets of `text` in the span.
    pub(crate) fn of(self, text: &[u8]) -> &[u8] {
        text.get(self.range()).unwrap_or_default()
    }

    /// The span of a record's text (every span of a record that parsed is
    /// ASCII).
    pub(crate) fn str(self, text: &str) -> &str {
        text.get(self.range()).unwrap_or_default()
    }

    /// The span of text read as octets, as text (ASCII once checked).
    fn str_of(self, text: &[u8]) -> &str {
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
        let start = (self.start as usize)
            .saturating_add(count)
            .min(self.end as usize);
        Span::new(start, self.end as usize)
    }
}

/// A domain-spec of a record: its span, checked, and what expanding it
/// needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DomainSpec {
    pub span: Span,
    /// Whether it holds a macro: without one it expands to itself.
    pub has_macros: bool,
    /// Whether it uses `%{p}`, whose value needs lookups.
    pub uses_ptr: bool,
    /// For a domain-spec without macros that is already the name to ask
    /// (lower case, no trailing dot, short enough), what checking that
    /// name finds: the same for every check, so found once.
    pub finished: Option<NameCheck>,
}

impl DomainSpec {
    /// The domain-spec as written (ASCII: it was checked).
    pub(crate) fn str(self, text: &str) -> &str {
        self.span.str(text)
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
    Include(DomainSpec),
    /// `a[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]` (§5.3).
    A {
        target: Option<DomainSpec>,
        cidr4: u8,
        cidr6: u8,
    },
    /// `mx[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]` (§5.4).
    Mx {
        target: Option<DomainSpec>,
        cidr4: u8,
        cidr6: u8,
    },
    /// `ptr[:<domain-spec>]` (§5.5).
    Ptr(Option<DomainSpec>),
    /// `ip4:<network>[/<cidr>]` (§5.6).
    Ip4 { network: Ipv4Addr, cidr: u8 },
    /// `ip6:<network>[/<cidr>]` (§5.6).
    Ip6 { network: Ipv6Addr, cidr: u8 },
    /// `exists:<domain-spec>` (§5.7).
    Exists(DomainSpec),
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
    pub redirect: Option<(DomainSpec, Span)>,
    /// The domain-spec of `exp=`.
    pub exp: Option<DomainSpec>,
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

/// A record's text and what reading it gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The text: exactly the record when it reads (it is then ASCII),
    /// with any octet that is not UTF-8 replaced when it does not.
    pub text: Box<str>,
    pub record: Result<Record, SyntaxError>,
}

/// Records read before, by their text: reading a record depends on its
/// text alone, so the result of the same text is the same for every
/// message and every sender; the memo only saves the work. Bounded to
/// [`MEMO_BYTES`]; the oldest entries go first.
#[derive(Default)]
pub(crate) struct Memo {
    /// Keyed by the fingerprint, hashed again with the map's random keys:
    /// fingerprints are not secret, so a sender could choose texts whose
    /// fingerprints share their low bits and make every probe of an
    /// identity-hashed table long.
    entries: HashMap<u64, Arc<Parsed>>,
    /// Insertion order, to evict the oldest: (fingerprint, entry).
    order: VecDeque<(u64, Arc<Parsed>)>,
    bytes: usize,
}

/// The longest record read: spans are 32-bit.
const MAX_RECORD_LEN: usize = u32::MAX as usize;

/// What the memo may hold: texts and their directives, about 4 MiB.
const MEMO_BYTES: usize = 4 << 20;
/// Longer records are read every time (RFC 7208 §3.4 asks records to fit
/// a 512-octet answer; a few KiB covers what is published).
const MEMO_MAX_TEXT: usize = 4096;

static MEMO: LazyLock<RwLock<Memo>> = LazyLock::new(|| RwLock::new(Memo::default()));

impl Memo {
    /// What `text` reads to: from the memo when it holds the same text,
    /// else read now and remembered.
    pub(crate) fn read(memo: &RwLock<Memo>, text: &[u8]) -> Arc<Parsed> {
        if text.len() > MEMO_MAX_TEXT {
            return Arc::new(read_now(text));
        }
        let key = fingerprint(text);
        let hit = memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(&key)
            // The fingerprint picks the entry, the text decides.
            .filter(|parsed| parsed.text.as_bytes() == text)
            .cloned();
        if let Some(parsed) = hit {
            return parsed;
        }
        let parsed = Arc::new(read_now(text));
        memo.write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&parsed));
        parsed
    }

    fn insert(&mut self, key: u64, parsed: Arc<Parsed>) {
        self.bytes += weight(&parsed);
        if let Some(replaced) = self.entries.insert(key, Arc::clone(&parsed)) {
            self.bytes = self.bytes.saturating_sub(weight(&replaced));
        }
        self.order.push_back((key, parsed));
        while self.bytes > MEMO_BYTES {
            let Some((key, oldest)) = self.order.pop_front() else {
                break;
            };
            // Only if the entry is still this one (not replaced since).
            if self
                .entries
                .get(&key)
                .is_some_and(|current| Arc::ptr_eq(current, &oldest))
            {
                self.entries.remove(&key);
                self.bytes = self.bytes.saturating_sub(weight(&oldest));
            }
        }
    }
}

/// About how many bytes an entry holds.
fn weight(parsed: &Parsed) -> usize {
    let directives = parsed
        .record
        .as_ref()
        .map_or(0, |record| record.directives.capacity());
    64 + parsed.text.len() + directives * size_of::<Directive>()
}

/// A cheap 64-bit fingerprint of a text (FNV-style over 8-octet words).
/// Only a hint: entries are compared by their whole text.
fn fingerprint(text: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ text.len() as u64;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(bytes)).wrapping_mul(PRIME);
        hash ^= hash >> 29;
    }
    for &octet in words.remainder() {
        hash = (hash ^ u64::from(octet)).wrapping_mul(PRIME);
    }
    hash ^ (hash >> 32)
}

/// What the TXT records of a name hold for SPF: [`select`], and the record
/// read when there is one.
#[derive(Debug, Clone)]
pub(crate) enum Selected {
    None,
    One(Arc<Parsed>),
    Several(usize),
}

/// How many answers each thread remembers in [`select_and_read`].
const RECENT_ANSWERS: usize = 32;

thread_local! {
    /// The answers this thread selected and read lately, by identity: an
    /// answer is immutable behind its `Arc`, and holding the `Arc` keeps
    /// its address from being reused, so the same `Arc` means the same
    /// records. A small direct-mapped table; no lock.
    static RECENT: RefCell<[Option<(TxtRecords, Selected)>; RECENT_ANSWERS]> =
        const { RefCell::new([const { None }; RECENT_ANSWERS]) };
}

/// The TXT records of a name, as a lookup answers them.
pub(crate) type TxtRecords = Arc<[Box<[u8]>]>;

/// Selects the SPF record among `answer` (RFC 7208 §4.5) and reads it
/// (through [`read`]). An answer met again on this thread (a cache that
/// hands out the same `Arc`) costs a pointer comparison.
pub(crate) fn select_and_read(answer: &TxtRecords) -> Selected {
    let slot = (answer.as_ptr() as usize >> 4) % RECENT_ANSWERS;
    let recent = RECENT.with(|recent| {
        recent.borrow().get(slot).and_then(|entry| match entry {
            Some((seen, selected)) if Arc::ptr_eq(seen, answer) => Some(selected.clone()),
            _ => None,
        })
    });
    if let Some(selected) = recent {
        return selected;
    }
    let selected = match select(answer) {
        Selection::None => Selected::None,
        Selection::Several(count) => Selected::Several(count),
        Selection::One(index) => {
            Selected::One(read(answer.get(index).map_or(&[][..], |text| text)))
        }
    };
    RECENT.with(|recent| {
        if let Some(entry) = recent.borrow_mut().get_mut(slot) {
            *entry = Some((Arc::clone(answer), selected.clone()));
        }
    });
    selected
}

/// Reads an SPF record (text for which [`is_spf_record`] holds), through
/// the process-wide memo of records read before.
pub(crate) fn read(text: &[u8]) -> Arc<Parsed> {
    Memo::read(&MEMO, text)
}

fn read_now(text: &[u8]) -> Parsed {
    let record = parse(text);
    Parsed {
        text: String::from_utf8_lossy(text).into(),
        record,
    }
}

/// Reads the terms of an SPF record (text for which [`is_spf_record`]
/// holds).
///
/// # Errors
///
/// The first term that does not read, with the reason.
pub(crate) fn parse(text: &[u8]) -> Result<Record, SyntaxError> {
    if text.len() > MAX_RECORD_LEN {
        return Err(SyntaxError {
            term: String::new(),
            problem: "the record is longer than 4 GiB",
        });
    }
    // At most one directive per space-separated term: one allocation.
    let terms = memchr::memchr_iter(b' ', text).count();
    let mut record = Record {
        directives: Vec::with_capacity(terms),
        ..Record::default()
    };
    let mut start = 6;
    while start < text.len() {
        let end = text
            .get(start..)
            .and_then(|rest| memchr::memchr(b' ', rest))
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
                let spec = check_domain_spec(text, value).map_err(error)?;
                record.redirect = Some((spec, term));
            } else if name.eq_ignore_ascii_case(b"exp") {
                if record.exp.is_some() {
                    return Err(error("exp= appears twice (RFC 7208 §6)"));
                }
                record.exp = Some(check_domain_spec(text, value).map_err(error)?);
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
        let network = ip6_network(network).ok_or_else(|| error("not an IPv6 network"))?;
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
fn required_domain_spec(text: &[u8], rest: Span) -> Result<DomainSpec, &'static str> {
    if rest.first(text) != Some(b':') {
        return Err("a domain-spec after ':' is required");
    }
    check_domain_spec(text, rest.skip(1))
}

/// Checks a domain-spec (RFC 7208 §7.1): a non-empty macro-string whose
/// end is a macro-expand or `"." toplabel ["."]`.
fn check_domain_spec(text: &[u8], span: Span) -> Result<DomainSpec, &'static str> {
    let octets = span.of(text);
    if octets.is_empty() {
        return Err("empty domain-spec");
    }
    let syntax = macros::check(octets, macros::Context::Record)?;
    let has_macros = memchr::memchr(b'%', octets).is_some();
    let finished = (!has_macros
        && octets.last() != Some(&b'.')
        && octets.len() <= MAX_NAME_LEN
        && !octets.iter().any(u8::is_ascii_uppercase))
    .then(|| check_name(span.str_of(text)));
    let spec = DomainSpec {
        span,
        has_macros,
        uses_ptr: syntax.uses_ptr,
        finished,
    };
    if syntax.ends_with_expand {
        return Ok(spec);
    }
    let octets = octets.strip_suffix(b".").unwrap_or(octets);
    let toplabel = octets
        .iter()
        .rposition(|&octet| octet == b'.')
        .and_then(|dot| octets.get(dot + 1..));
    match toplabel {
        Some(toplabel) if is_toplabel(toplabel) => Ok(spec),
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
fn a_arguments(text: &[u8], rest: Span) -> Result<(Option<DomainSpec>, u8, u8), &'static str> {
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
        Some(_) => Ok((Some(check_domain_spec(text, head)?), cidr4, cidr6)),
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
    let start = span.start as usize;
    let before_end = start + slash - usize::from(double);
    Some((
        Span::new(start, before_end),
        Span::new(start + slash + 1, span.end as usize),
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
    match memchr::memchr(b'/', argument) {
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

/// `ip6-network = <as per RFC 4291 §2.2>`: eight groups of 1 to 4
/// hexadecimal digits separated by `:`, one run of groups written `::`,
/// the last two groups possibly written as an IPv4 address. The same text
/// `Ipv6Addr::from_str` reads (a test holds them equal), at a fraction of
/// its cost.
fn ip6_network(text: &[u8]) -> Option<Ipv6Addr> {
    let mut head = [0u16; 8];
    let mut head_len = 0;
    let mut tail = [0u16; 8];
    let mut tail_len = 0;
    let mut compressed = false;
    let mut rest = text;
    if let Some(after) = rest.strip_prefix(b"::") {
        compressed = true;
        rest = after;
    }
    while !rest.is_empty() {
        let digits = rest
            .iter()
            .take_while(|octet| octet.is_ascii_hexdigit())
            .count();
        let groups = if compressed { &mut tail } else { &mut head };
        let len = if compressed {
            &mut tail_len
        } else {
            &mut head_len
        };
        if rest.get(digits) == Some(&b'.') {
            // The IPv4 form of the last two groups, and nothing after.
            let [a, b, c, d] = ip4_network(rest)?.octets();
            for group in [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])] {
                *groups.get_mut(*len)? = group;
                *len += 1;
            }
            break;
        }
        if digits == 0 || digits > 4 {
            return None;
        }
        let value = rest.get(..digits)?.iter().fold(0u16, |value, &octet| {
            let nibble = match octet {
                b'0'..=b'9' => octet - b'0',
                b'a'..=b'f' => octet - b'a' + 10,
                _ => octet.wrapping_sub(b'A').wrapping_add(10),
            };
            value << 4 | u16::from(nibble)
        });
        *groups.get_mut(*len)? = value;
        *len += 1;
        rest = rest.get(digits..)?;
        match rest {
            [] => break,
            [b':', b':', after @ ..] if !compressed => {
                compressed = true;
                rest = after;
            }
            [b':', after @ ..] if !after.is_empty() && after.first() != Some(&b':') => rest = after,
            _ => return None,
        }
    }
    let total = head_len + tail_len;
    if (compressed && total > 7) || (!compressed && total != 8) {
        return None;
    }
    let mut groups = [0u16; 8];
    for (slot, group) in groups.iter_mut().zip(head.iter().take(head_len)) {
        *slot = *group;
    }
    for (slot, group) in groups
        .iter_mut()
        .skip(8 - tail_len)
        .zip(tail.iter().take(tail_len))
    {
        *slot = *group;
    }
    Some(Ipv6Addr::from(groups))
}

#[cfg(test)]
mod tests;
