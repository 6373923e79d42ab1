//! Author Domain extraction from RFC5322.From (RFC 7489 §6.6.1, RFC 9989
//! §4.2 and §11.5).
//!
//! The From field is parsed as an RFC 5322 §3.4 `mailbox-list` (with the
//! group syntax and comments tolerated), never by searching for an `@`: a
//! quoted display name such as `"ceo@bank.example" <x@attacker.example>` must
//! yield `attacker.example`. Anything that cannot be read with certainty is an
//! error, so that a malformed header cannot make us evaluate the wrong domain
//! (OpenDMARC CVE-2019-16378 and CVE-2021-34555).
//!
//! # When the grammar is uncertain, fail closed
//!
//! Mail user agents, list managers and other verifiers read a malformed
//! From field in different ways; an attacker picks the field that we read
//! as a harmless domain while the reader's agent shows the victim's. So
//! every reading here either follows the RFC 5322 grammar (including the
//! obsolete syntax of §4, which MUST be accepted) or is an error
//! ([`FromError::Unparseable`]), which the policy turns into the strict
//! outcome (reject by default). A malformed field never yields a *smaller*
//! set of Author Domains than some other reader could find in it:
//!
//! - an `obs-route` (`<@a,@b:user@example.com>`, RFC 5322 §4.4) is read by
//!   its ABNF; anything else between `<` and `:` is an error, never a
//!   reason to skip text;
//! - an RFC 2047 encoded-word is an ordinary atom here: in a phrase it may
//!   only hold letters, digits and `! * + - / = _` besides its `?`
//!   delimiters (RFC 2047 §5(3)), all of them atext, so text that breaks
//!   those rules (a `,`, `@`, `<` or white space inside) is not an
//!   encoded-word and is parsed as the RFC 5322 tokens it is made of;
//! - a header field whose name is `From` followed by white space before the
//!   colon is a From field (RFC 5322 §4.5 `obs-optional`; see
//!   [`header_name_is`]), so two such fields are `multiple-from`.

use std::{borrow::Cow, fmt};

/// Why no Author Domain could be taken from a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FromError {
    /// The message has no From header field.
    Missing,
    /// The message has several From header fields (RFC 5322 §3.6 allows one).
    Multiple(usize),
    /// The From field could not be parsed; the text says where it went wrong.
    Unparseable(String),
    /// The From field parsed but holds no mailbox (an empty group).
    NoMailbox,
    /// The mailboxes carry more distinct domains than the configured cap.
    TooManyDomains {
        /// Distinct domains found.
        count: usize,
        /// The configured maximum.
        cap: usize,
    },
}

impl FromError {
    /// A stable token for logs and the `reason` of Authentication-Results.
    pub fn kind(&self) -> &'static str {
        match self {
            FromError::Missing => "no-from",
            FromError::Multiple(_) => "multiple-from",
            FromError::Unparseable(_) => "unparseable-from",
            FromError::NoMailbox => "no-mailbox-in-from",
            FromError::TooManyDomains { .. } => "too-many-from-domains",
        }
    }
}

impl fmt::Display for FromError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromError::Missing => f.write_str("the message has no From header"),
            FromError::Multiple(n) => write!(f, "the message has {n} From headers"),
            FromError::Unparseable(why) => write!(f, "the From header cannot be parsed: {why}"),
            FromError::NoMailbox => f.write_str("the From header holds no mailbox"),
            FromError::TooManyDomains { count, cap } => write!(
                f,
                "the From header holds {count} distinct domains, more than the limit of {cap}"
            ),
        }
    }
}

impl std::error::Error for FromError {}

/// Returns the distinct Author Domains of a message, in order of first
/// appearance, given the raw values of its From header fields.
///
/// Each domain is an A-label (IDNA), lower case, without a trailing dot.
///
/// # Errors
///
/// [`FromError::Missing`] for no From field, [`FromError::Multiple`] for
/// several, [`FromError::Unparseable`] and [`FromError::NoMailbox`] for a
/// field that does not yield a mailbox, [`FromError::TooManyDomains`] when
/// more than `cap` distinct domains appear.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::message::author_domains;
/// let domains = author_domains(&[b"\"ceo@bank.example\" <x@Attacker.Example.>".as_slice()], 5);
/// assert_eq!(domains.unwrap(), vec!["attacker.example".to_string()]);
/// ```
pub fn author_domains(from_values: &[&[u8]], cap: usize) -> Result<Vec<String>, FromError> {
    let value = match from_values {
        [] => return Err(FromError::Missing),
        [one] => *one,
        many => return Err(FromError::Multiple(many.len())),
    };
    let text = String::from_utf8_lossy(value);
    let mut domains: Vec<String> = Vec::new();
    for domain in parse_mailbox_domains(&text)? {
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    if domains.is_empty() {
        return Err(FromError::NoMailbox);
    }
    if domains.len() > cap {
        return Err(FromError::TooManyDomains {
            count: domains.len(),
            cap,
        });
    }
    Ok(domains)
}

/// True when `name`, a header field name as it appears before the colon,
/// names the field `wanted` (ASCII, compared without regard to case).
///
/// RFC 5322 §4.5 `obs-optional = field-name *WSP ":" unstructured` allows
/// white space between a name and its colon, and §4 says that obsolete
/// syntax MUST be accepted; names are case-insensitive (§1.2.2). White
/// space *inside* a name makes no valid field name, but readers differ on
/// it (mail-auth ignores it, for one), so it is ignored here as well: a
/// field that some reader takes for a From is counted as a From. Every
/// header lookup of the library, the milter and check-eml goes through
/// this function.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::message::header_name_is;
/// assert!(header_name_is(b"From", "from"));
/// assert!(header_name_is(b"FROM \t", "From"));
/// assert!(!header_name_is(b"X-From", "from"));
/// assert!(!header_name_is(b"Fro", "from"));
/// ```
pub fn header_name_is(name: &[u8], wanted: &str) -> bool {
    let mut wanted = wanted.bytes();
    for &b in name {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            continue;
        }
        match wanted.next() {
            Some(w) if w.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom or dot-atom (atext and dots). A valid RFC 2047 encoded-word
    /// in a phrase is one too (see the module documentation).
    Atom(String),
    /// A quoted string, quoted-pairs resolved.
    Quoted,
    /// A domain literal `[...]`.
    Literal,
    /// One of `< > @ , : ;`.
    Special(char),
}

fn unparseable(why: impl Into<String>) -> FromError {
    FromError::Unparseable(why.into())
}

/// Splits a header value into tokens, dropping white space and comments.
///
/// A value holds no NUL and no line break but a fold (CRLF or LF followed
/// by white space, RFC 5322 §2.2, §3.2.2) or one at its very end: readers
/// disagree on the rest (a bare CR ends the line for some, NUL the string
/// for others), so such a value is unparseable, never read one way.
fn tokenize(text: &str) -> Result<Vec<Token>, FromError> {
    if encoded_word_spans_specials(text) {
        return Err(unparseable(
            "an encoded-word holding a special character (RFC 2047 §5(3))",
        ));
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        match b {
            0 => return Err(unparseable("NUL in the field")),
            b'\r' if next != Some(b'\n') => {
                return Err(unparseable("a CR that does not end a line"))
            }
            b'\n' if !matches!(next, None | Some(b' ' | b'\t')) => {
                return Err(unparseable("a line break that is not a fold"))
            }
            _ => {}
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                // RFC 5322 §3.2.2: comments nest and may hold quoted-pairs.
                let mut depth = 0usize;
                loop {
                    match chars.get(i) {
                        None => return Err(unparseable("unterminated comment")),
                        Some('\\') => i += 2,
                        Some('(') => {
                            depth += 1;
                            i += 1;
                        }
                        Some(')') => {
                            depth -= 1;
                            i += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(unparseable("unterminated quoted string")),
                        Some('\\') => i += 2,
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                tokens.push(Token::Quoted);
            }
            '[' => {
                loop {
                    match chars.get(i) {
                        None => return Err(unparseable("unterminated domain literal")),
                        Some('\\') => i += 2,
                        Some(']') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                tokens.push(Token::Literal);
            }
            '<' | '>' | '@' | ',' | ':' | ';' => {
                tokens.push(Token::Special(c));
                i += 1;
            }
            ')' => return Err(unparseable("unbalanced ')'")),
            ']' => return Err(unparseable("unbalanced ']'")),
            _ => {
                let start = i;
                while chars.get(i).is_some_and(|&c| is_atom_char(c)) {
                    i += 1;
                }
                if i == start {
                    return Err(unparseable(format!("unexpected character {c:?}")));
                }
                let atom: String = chars.get(start..i).unwrap_or_default().iter().collect();
                tokens.push(Token::Atom(atom));
            }
        }
    }
    Ok(tokens)
}

/// Whether some `=?charset?encoding?text?=` in `text` holds, between its
/// start and its end, a quote, a bracket, `@`, `,`, `;`, `:`, a
/// parenthesis or a backslash. RFC 2047 §5(3) forbids them in an
/// encoded-word, so by the RFC the text is ordinary words; but readers
/// that decode it anyway (mail-parser, mail clients) read one display
/// name where we read a quoted-string or an address, and see another
/// mailbox (`=?x?q?a"?= <ceo@victim.example> "@evil.example`). The value
/// is then unparseable. The text is searched as such readers do: the
/// charset and encoding end at the next two `?`, the text at the next
/// `?=`, across white space.
fn encoded_word_spans_specials(text: &str) -> bool {
    let mut rest = text;
    while let Some(start) = rest.find("=?") {
        let after = rest.get(start + 2..).unwrap_or_default();
        let mut parts = after.splitn(3, '?');
        let (Some(_charset), Some(_encoding), Some(tail)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Some(end) = tail.find("?=") else {
            return false;
        };
        let inside = after
            .get(..after.len() - tail.len() + end)
            .unwrap_or_default();
        if inside.contains(['"', '<', '>', '@', ',', ';', ':', '(', ')', '[', ']', '\\']) {
            return true;
        }
        rest = after;
    }
    false
}

/// atext (RFC 5322 §3.2.3) plus "." for dot-atoms and obsolete forms, and
/// non-ASCII characters (RFC 6532 §3.2).
fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
}

/// Parses a `mailbox-list` / `address-list` and returns each mailbox's
/// domain, converted with [`normalize_domain`].
fn parse_mailbox_domains(text: &str) -> Result<Vec<String>, FromError> {
    let tokens = tokenize(text)?;
    let mut domains = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    // Words of the current display name or local-part.
    let mut words = 0usize;
    while i < tokens.len() {
        match tokens.get(i) {
            Some(Token::Atom(_)) | Some(Token::Quoted) => {
                words += 1;
                i += 1;
            }
            Some(Token::Special('<')) => {
                // angle-addr = "<" addr-spec ">" (RFC 5322 §3.4). A missing
                // closing bracket is malformed, never guessed.
                let (domain, next) = addr_spec(&tokens, i + 1)?;
                if tokens.get(next) != Some(&Token::Special('>')) {
                    return Err(unparseable("angle-addr without closing '>'"));
                }
                domains.push(domain);
                i = next + 1;
                words = 0;
                expect_separator(&tokens, i, in_group)?;
            }
            Some(Token::Special('@')) => {
                // addr-spec without angle brackets: the words so far were the
                // local-part (lenient about obsolete forms: only the domain
                // matters here).
                if words == 0 {
                    return Err(unparseable("'@' without a local-part"));
                }
                let (domain, next) = domain_part(&tokens, i + 1)?;
                domains.push(domain);
                i = next;
                words = 0;
                expect_separator(&tokens, i, in_group)?;
            }
            Some(Token::Special(':')) => {
                // group = display-name ":" [group-list] ";"
                if in_group {
                    return Err(unparseable("nested group"));
                }
                in_group = true;
                words = 0;
                i += 1;
            }
            Some(Token::Special(';')) => {
                if !in_group || words != 0 {
                    return Err(unparseable("unexpected ';'"));
                }
                in_group = false;
                i += 1;
            }
            Some(Token::Special(',')) => {
                if words != 0 {
                    return Err(unparseable("a word that is not an address"));
                }
                i += 1;
            }
            Some(Token::Special(c)) => return Err(unparseable(format!("unexpected '{c}'"))),
            Some(Token::Literal) => return Err(unparseable("unexpected domain literal")),
            None => break,
        }
    }
    if words != 0 {
        return Err(unparseable("a word that is not an address"));
    }
    // An unterminated group at the very end is tolerated (obsolete syntax);
    // its mailboxes were read like any other.
    Ok(domains)
}

fn expect_separator(tokens: &[Token], i: usize, in_group: bool) -> Result<(), FromError> {
    match tokens.get(i) {
        None | Some(Token::Special(',')) => Ok(()),
        Some(Token::Special(';')) if in_group => Ok(()),
        Some(_) => Err(unparseable("text after an address")),
    }
}

/// `addr-spec` inside angle brackets: local-part "@" domain, after an
/// optional obsolete source route. Returns the domain and the index after it.
///
/// The local-part is read exactly (RFC 5322 §3.4.1, §4.4: `dot-atom /
/// quoted-string / obs-local-part`, `obs-local-part = word *("." word)`):
/// two words side by side without a `.` between them (`"a""b"`, `"a" b`)
/// are malformed, not one local-part. Inside angle brackets nothing else
/// can explain them, and a reader that splits them differently would see
/// another mailbox.
fn addr_spec(tokens: &[Token], i: usize) -> Result<(String, usize), FromError> {
    let mut i = obs_route_end(tokens, i)?;
    let mut previous: Option<&Token> = None;
    while let Some(word @ (Token::Atom(_) | Token::Quoted)) = tokens.get(i) {
        if let Some(previous) = previous {
            let dotted = matches!(previous, Token::Atom(a) if a.ends_with('.'))
                || matches!(word, Token::Atom(a) if a.starts_with('.'));
            if !dotted {
                return Err(unparseable(
                    "words of a local-part without '.' between them",
                ));
            }
        }
        previous = Some(word);
        i += 1;
    }
    if previous.is_none() {
        return Err(unparseable("empty local-part"));
    }
    if tokens.get(i) != Some(&Token::Special('@')) {
        return Err(unparseable("address without '@'"));
    }
    domain_part(tokens, i + 1)
}

/// Skips an `obs-route` starting at `i` (just after `<`), returning the
/// index of the addr-spec; `i` itself when there is none.
///
/// RFC 5322 §4.4:
///
/// ```text
/// obs-angle-addr  = [CFWS] "<" obs-route addr-spec ">" [CFWS]
/// obs-route       = obs-domain-list ":"
/// obs-domain-list = *(CFWS / ",") "@" domain
///                   *("," [CFWS] ["@" domain])
/// ```
///
/// A route is only ever `@domain` entries separated by commas and ended by
/// `:`. Anything else after `<,` or `<@` (a `>`, a local-part, another
/// address) is an error: skipping to the next `:` would hide mailboxes.
fn obs_route_end(tokens: &[Token], start: usize) -> Result<usize, FromError> {
    let mut i = start;
    while tokens.get(i) == Some(&Token::Special(',')) {
        i += 1;
    }
    if tokens.get(i) != Some(&Token::Special('@')) {
        return if i == start {
            Ok(start)
        } else {
            Err(unparseable("',' after '<' without a source route"))
        };
    }
    i = route_domain(tokens, i + 1)?;
    loop {
        match tokens.get(i) {
            Some(Token::Special(':')) => return Ok(i + 1),
            Some(Token::Special(',')) => {
                i += 1;
                if tokens.get(i) == Some(&Token::Special('@')) {
                    i = route_domain(tokens, i + 1)?;
                }
            }
            _ => return Err(unparseable("malformed source route")),
        }
    }
}

/// The `domain` of a source route entry: returns the index after it.
fn route_domain(tokens: &[Token], i: usize) -> Result<usize, FromError> {
    match tokens.get(i) {
        Some(Token::Atom(_) | Token::Literal) => Ok(i + 1),
        _ => Err(unparseable("source route without a domain")),
    }
}

fn domain_part(tokens: &[Token], i: usize) -> Result<(String, usize), FromError> {
    match tokens.get(i) {
        Some(Token::Atom(domain)) => Ok((normalize_domain(domain)?, i + 1)),
        Some(Token::Literal) => Err(unparseable("a domain literal is not a DNS domain")),
        _ => Err(unparseable("missing domain after '@'")),
    }
}

/// Converts a domain to the form DMARC compares: IDNA A-labels (UTS #46),
/// lower case, no trailing dot; checks every label is a valid LDH label.
///
/// # Errors
///
/// [`FromError::Unparseable`] when the domain is empty, fails IDNA
/// conversion, or has a label that is empty, longer than 63 octets, or holds
/// characters other than letters, digits and inner hyphens.
pub fn normalize_domain(domain: &str) -> Result<String, FromError> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    if trimmed.is_empty() {
        return Err(unparseable("empty domain"));
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|_| unparseable(format!("invalid internationalized domain {trimmed:?}")))?
    };
    if !is_valid_a_label_domain(&ascii) {
        return Err(unparseable(format!("invalid domain {ascii:?}")));
    }
    Ok(ascii)
}

/// True for a lower-case LDH domain name: labels of 1-63 letters, digits or
/// inner hyphens, at most 253 octets in all (RFC 1035 §2.3.1, RFC 5890).
pub fn is_valid_a_label_domain(domain: &str) -> bool {
    domain.len() <= 253
        && !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Turns bare LF line endings into CRLF (DKIM signs the CRLF form). A
/// message already in CRLF form is borrowed, not copied.
pub(crate) fn to_crlf(message: &[u8]) -> Cow<'_, [u8]> {
    let is_bare = |i: usize| i == 0 || message.get(i - 1) != Some(&b'\r');
    let Some(first_bare) = memchr::memchr_iter(b'\n', message).find(|&i| is_bare(i)) else {
        return Cow::Borrowed(message);
    };
    let mut out = Vec::with_capacity(message.len() + message.len() / 16);
    out.extend_from_slice(message.get(..first_bare).unwrap_or_default());
    let mut start = first_bare;
    for i in memchr::memchr_iter(b'\n', message).filter(|&i| i >= first_bare) {
        out.extend_from_slice(message.get(start..i).unwrap_or_default());
        if is_bare(i) {
            out.push(b'\r');
        }
        start = i;
    }
    out.extend_from_slice(message.get(start..).unwrap_or_default());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
