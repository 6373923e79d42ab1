//! Redaction of address local parts in failure reports (RFC 9991 §7,
//! RFC 6590), by parsing the text as RFC 5322 does, never by a character
//! class.
//!
//! # What is a local part
//!
//! The text of a header field (or a body line) is cut into tokens as
//! RFC 5322 §3.2 reads structured fields:
//!
//! - `atom`: a run of `atext` (§3.2.3), with every octet at or above 0x80
//!   counted as `atext` (RFC 6532 §3.2, `UTF8-non-ascii`; an octet that is
//!   not valid UTF-8 counts too, so nothing is half redacted) and a
//!   `quoted-pair` (`\` and the next octet, §3.2.1) glued in;
//! - `quoted-string` (§3.2.4): from `"` to the next unescaped `"`;
//! - `comment` (§3.2.2): from `(` to its matching `)`, nested, with
//!   quoted pairs;
//! - `.`, `@`, white space (FWS, CR and LF included) and every other
//!   special.
//!
//! A quoted string or a comment left open runs to the end of the text.
//!
//! Before every `@` outside quoted strings and comments, the local part is
//! read backwards as RFC 5322 §3.4.1 `local-part` (`dot-atom`,
//! `quoted-string` or the obsolete forms with CFWS around the dots):
//! words (atoms or quoted strings) joined by dots, with comments and white
//! space allowed between them and before the `@`. Two words with nothing
//! between them (`"john"smith@`) are read as one (fail closed). The whole
//! span, comments included, from its first word to the `@` becomes
//! `redactedN`. So `"John Smith"@example.com`, `john(comment)@example.com`,
//! `jöhn@example.com` and the VERP address
//! `list-bounces+john.smith=mx.test@lists.example` lose their whole local
//! part.
//!
//! The content of every quoted string and comment that is not itself a
//! local part (a display name, a Received comment) is read the same way,
//! so `"john@example.com" <x@example.net>` is redacted too; below four
//! levels of nesting, content holding an `@` is replaced whole.
//!
//! RFC 2047 encoded words (`=?charset?B|Q?text?=`) are decoded; when the
//! decoded text holds an `@`, it is redacted the same way and encoded
//! again (base64, same charset); in a charset whose text is not ASCII
//! compatible (UTF-16, UTF-32, UCS-2...) the whole word is replaced.
//!
//! In the tag-value fields (`DKIM-Signature`, `ARC-*`,
//! `Authentication-Results`, `Received-SPF`, `DomainKey-Signature`) a
//! local part that starts with a tag or property name and `=`
//! (`i=`, `smtp.mailfrom=`, `envelope-from=`) keeps that name: only what
//! follows the first `=` is the address (`smtp.mailfrom=a+b=c@x` becomes
//! `smtp.mailfrom=redacted1@x`). Anywhere else `=` is `atext`, part of
//! the local part.
//!
//! # Cost
//!
//! Linear in the input: one pass to cut tokens, one backward walk per `@`
//! that never crosses the previous `@`, content of quoted strings and
//! comments read once more per nesting level (at most four), and a
//! `HashMap` from local part to its token.

use base64::Engine as _;
use std::collections::HashMap;

/// How a piece of text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Address fields, unstructured fields and body lines.
    Text,
    /// Fields made of `tag=value` or `property=value` pairs.
    TagValue,
}

/// Fields read in [`Mode::TagValue`] (names in lower case).
const TAG_VALUE_FIELDS: &[&str] = &[
    "dkim-signature",
    "domainkey-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "authentication-results",
    "received-spf",
];

/// The mode for a header field named `name` (any case).
pub fn mode_of_field(name: &[u8]) -> Mode {
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    if TAG_VALUE_FIELDS.contains(&name.as_str()) {
        Mode::TagValue
    } else {
        Mode::Text
    }
}

/// How deep quoted strings and comments are read inside each other.
const MAX_DEPTH: usize = 4;

/// Replaces local parts with `redactedN`, the same local part with the
/// same token within one report (so the Domain Owner can still tell the
/// addresses apart). Use one per report.
///
/// # Examples
///
/// ```
/// use dmarc_report::redact::{Mode, Redactor};
/// let mut redactor = Redactor::new(true);
/// let out = redactor.redact(b"From: \"John Smith\"@example.com, jane@example.org", Mode::Text);
/// assert_eq!(out, b"From: redacted1@example.com, redacted2@example.org");
/// ```
#[derive(Debug)]
pub struct Redactor {
    enabled: bool,
    tokens: HashMap<Vec<u8>, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Atom,
    /// An RFC 2047 encoded word (a word of its own).
    Encoded,
    Quoted,
    Comment,
    Dot,
    At,
    Space,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// The tokens of `text` (see the module documentation).
fn tokens(text: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let start = i;
        let encoded = (b == b'=')
            .then(|| text.get(i..).and_then(encoded_word).map(|(_, len)| len))
            .flatten();
        let kind = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                while matches!(text.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    i += 1;
                }
                Kind::Space
            }
            b'"' => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => break,
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                Kind::Quoted
            }
            b'(' => {
                let mut depth = 0usize;
                loop {
                    match text.get(i) {
                        None => break,
                        Some(b'\\') => i += 2,
                        Some(b'(') => {
                            depth += 1;
                            i += 1;
                        }
                        Some(b')') => {
                            i += 1;
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                Kind::Comment
            }
            b'.' => {
                i += 1;
                Kind::Dot
            }
            b'@' => {
                i += 1;
                Kind::At
            }
            b'\\' => {
                i += 2;
                while let Some(&next) = text.get(i) {
                    if is_atext(next) {
                        i += 1;
                    } else if next == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
                Kind::Atom
            }
            b'=' if encoded.is_some() => {
                i += encoded.unwrap_or(1);
                Kind::Encoded
            }
            b if is_atext(b) => {
                while let Some(&next) = text.get(i) {
                    if is_atext(next) {
                        i += 1;
                    } else if next == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
                Kind::Atom
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        out.push(Token {
            kind,
            start,
            end: i.min(text.len()),
        });
    }
    out
}

/// The first token of the local part before the `@` token at `at`, or
/// `None` when there is none.
fn local_part_before(tokens: &[Token], at: usize) -> Option<usize> {
    let is_cfws = |kind: Kind| matches!(kind, Kind::Space | Kind::Comment);
    let is_word = |kind: Kind| matches!(kind, Kind::Atom | Kind::Encoded | Kind::Quoted);
    // Skip CFWS between the local part and the "@".
    let mut i = at.checked_sub(1)?;
    loop {
        let token = tokens.get(i)?;
        if !is_cfws(token.kind) {
            break;
        }
        i = i.checked_sub(1)?;
    }
    let token = tokens.get(i)?;
    if !is_word(token.kind) && token.kind != Kind::Dot {
        return None;
    }
    let mut first = i;
    // Walk back: words and dots, CFWS only around dots.
    while let Some(before) = first.checked_sub(1) {
        let current = tokens.get(first).map(|t| t.kind);
        let previous = tokens.get(before).map(|t| t.kind);
        match (current, previous) {
            // Adjacent words, or a word and a dot: one local part.
            (Some(_), Some(kind)) if is_word(kind) || kind == Kind::Dot => first = before,
            // CFWS: part of the local part only when a dot is on one side.
            (Some(current), Some(kind)) if is_cfws(kind) => {
                let mut j = before;
                while tokens.get(j).is_some_and(|t| is_cfws(t.kind)) {
                    match j.checked_sub(1) {
                        Some(k) => j = k,
                        None => break,
                    }
                }
                let beyond = tokens.get(j).map(|t| t.kind);
                let dot_between = current == Kind::Dot || beyond == Some(Kind::Dot);
                if dot_between && beyond.is_some_and(|k| is_word(k) || k == Kind::Dot) {
                    first = j;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    Some(first)
}

/// In tag-value mode, where the address starts in `span`: after the first
/// `=` when everything before it is a tag or property name
/// (`[A-Za-z0-9._-]`).
fn after_tag(span: &[u8]) -> usize {
    let Some(eq) = span.iter().position(|&b| b == b'=') else {
        return 0;
    };
    let name = span.get(..eq).unwrap_or_default();
    let is_name = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if is_name {
        eq + 1
    } else {
        0
    }
}

impl Redactor {
    /// A redactor; when `enabled` is false it returns its input unchanged.
    pub fn new(enabled: bool) -> Redactor {
        Redactor {
            enabled,
            tokens: HashMap::new(),
        }
    }

    /// The token of one local part (its words without CFWS).
    fn token_of(&mut self, local: Vec<u8>) -> Vec<u8> {
        let next = self.tokens.len() + 1;
        let index = *self.tokens.entry(local).or_insert(next);
        format!("redacted{index}").into_bytes()
    }

    /// `text` with every local part replaced (see the module
    /// documentation).
    pub fn redact(&mut self, text: &[u8], mode: Mode) -> Vec<u8> {
        if !self.enabled {
            return text.to_vec();
        }
        self.redact_at(text, mode, 0)
    }

    fn redact_at(&mut self, text: &[u8], mode: Mode, depth: usize) -> Vec<u8> {
        let tokens = tokens(text);
        // Local parts as (first token, the "@" token). A walk never
        // crosses an earlier "@" (it is not a word), so the spans are
        // disjoint and in order.
        let mut local_parts: Vec<(usize, usize)> = Vec::new();
        for (at, token) in tokens.iter().enumerate() {
            if token.kind != Kind::At {
                continue;
            }
            if let Some(first) = local_part_before(&tokens, at) {
                local_parts.push((first, at));
            }
        }
        let mut out = Vec::with_capacity(text.len());
        let mut next_span = local_parts.iter().peekable();
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            if let Some(&&(first, at)) = next_span.peek() {
                if i == first {
                    next_span.next();
                    self.replace_local_part(&tokens, first, at, text, mode, &mut out);
                    i = at;
                    continue;
                }
            }
            let bytes = text.get(token.start..token.end).unwrap_or_default();
            match token.kind {
                Kind::Quoted | Kind::Comment => {
                    self.redact_inside(bytes, token.kind, depth, &mut out)
                }
                Kind::Encoded => self.redact_encoded_word(bytes, &mut out),
                _ => out.extend_from_slice(bytes),
            }
            i += 1;
        }
        out
    }

    /// Writes the token for the local part made of `tokens[first..at]`
    /// (comments and white space before the `@` included).
    fn replace_local_part(
        &mut self,
        tokens: &[Token],
        first: usize,
        at: usize,
        text: &[u8],
        mode: Mode,
        out: &mut Vec<u8>,
    ) {
        let (Some(start), Some(end)) = (tokens.get(first), tokens.get(at)) else {
            return;
        };
        let span = text.get(start.start..end.start).unwrap_or_default();
        let keep = if mode == Mode::TagValue {
            after_tag(span)
        } else {
            0
        };
        out.extend_from_slice(span.get(..keep).unwrap_or_default());
        let mut local = Vec::new();
        for token in tokens.get(first..at).unwrap_or_default() {
            if matches!(
                token.kind,
                Kind::Atom | Kind::Encoded | Kind::Quoted | Kind::Dot
            ) {
                local.extend_from_slice(text.get(token.start..token.end).unwrap_or_default());
            }
        }
        let local = local
            .get(keep.min(local.len())..)
            .unwrap_or_default()
            .to_vec();
        if !local.is_empty() || keep < span.len() {
            let token = self.token_of(local);
            out.extend_from_slice(&token);
        }
    }

    /// A quoted string or a comment that is not a local part: its content
    /// is read as text of its own.
    fn redact_inside(&mut self, bytes: &[u8], kind: Kind, depth: usize, out: &mut Vec<u8>) {
        let (open, close) = match kind {
            Kind::Quoted => (b'"', b'"'),
            _ => (b'(', b')'),
        };
        let Some(inner) = bytes.strip_prefix(&[open]) else {
            out.extend_from_slice(bytes);
            return;
        };
        let (inner, closed) = match inner.strip_suffix(&[close]) {
            // An escaped closing character does not close.
            Some(content) if !content.ends_with(b"\\") || content.ends_with(b"\\\\") => {
                (content, true)
            }
            _ => (inner, false),
        };
        out.push(open);
        if !inner.contains(&b'@') {
            out.extend_from_slice(inner);
        } else if depth + 1 >= MAX_DEPTH {
            // Too deep to read: the whole content goes (fail closed).
            let token = self.token_of(inner.to_vec());
            out.extend_from_slice(&token);
        } else {
            let redacted = self.redact_at(inner, Mode::Text, depth + 1);
            out.extend_from_slice(&redacted);
        }
        if closed {
            out.push(close);
        }
    }

    /// One RFC 2047 encoded word: when its decoded text holds an `@`, it
    /// is redacted and encoded again (or replaced whole, see the module
    /// documentation); one that does not decode is replaced whole (it
    /// could hide anything).
    fn redact_encoded_word(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let Some((word, _)) = encoded_word(bytes) else {
            out.extend_from_slice(bytes);
            return;
        };
        match word.decoded() {
            Some(decoded) if !decoded.contains(&b'@') => out.extend_from_slice(bytes),
            Some(decoded) if word.ascii_compatible() => {
                let redacted = self.redact_at(&decoded, Mode::Text, MAX_DEPTH - 1);
                out.extend_from_slice(b"=?");
                out.extend_from_slice(word.charset);
                out.extend_from_slice(b"?B?");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(&redacted)
                        .as_bytes(),
                );
                out.extend_from_slice(b"?=");
            }
            _ => {
                let token = self.token_of(bytes.to_vec());
                out.extend_from_slice(&token);
            }
        }
    }
}

/// One RFC 2047 §2 encoded word: `=?charset?encoding?encoded-text?=`.
struct EncodedWord<'a> {
    charset: &'a [u8],
    encoding: u8,
    text: &'a [u8],
}

/// The encoded word at the start of `bytes` and its length.
fn encoded_word(bytes: &[u8]) -> Option<(EncodedWord<'_>, usize)> {
    let body = bytes.strip_prefix(b"=?")?;
    let q1 = body.iter().position(|&b| b == b'?')?;
    let charset = body.get(..q1)?;
    let encoding = *body.get(q1 + 1)?;
    if body.get(q1 + 2) != Some(&b'?') || charset.is_empty() {
        return None;
    }
    let after = body.get(q1 + 3..)?;
    let end = after.windows(2).position(|w| w == b"?=")?;
    let text = after.get(..end)?;
    if text.iter().any(|&b| b == b'?' || b.is_ascii_whitespace()) {
        return None;
    }
    Some((
        EncodedWord {
            charset,
            encoding: encoding.to_ascii_uppercase(),
            text,
        },
        2 + q1 + 3 + end + 2,
    ))
}

impl EncodedWord<'_> {
    /// The decoded octets, or `None` when the text does not decode.
    fn decoded(&self) -> Option<Vec<u8>> {
        match self.encoding {
            b'B' => base64::engine::general_purpose::STANDARD
                .decode(self.text)
                .ok(),
            b'Q' => {
                let mut out = Vec::with_capacity(self.text.len());
                let mut i = 0;
                while let Some(&b) = self.text.get(i) {
                    match b {
                        b'_' => out.push(b' '),
                        b'=' => {
                            let hex = self.text.get(i + 1..i + 3)?;
                            let hex = std::str::from_utf8(hex).ok()?;
                            out.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 2;
                        }
                        b => out.push(b),
                    }
                    i += 1;
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// Charsets in which ASCII octets stand for ASCII characters, so that
    /// redacting the decoded octets and encoding them again is sound.
    fn ascii_compatible(&self) -> bool {
        let charset = String::from_utf8_lossy(self.charset).to_ascii_lowercase();
        // RFC 2231 §5: a language may follow a "*".
        let charset = charset.split('*').next().unwrap_or_default();
        !(charset.starts_with("utf-16")
            || charset.starts_with("utf-32")
            || charset.starts_with("ucs-")
            || charset.starts_with("utf-7")
            || charset.starts_with("unicode"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str, mode: Mode) -> String {
        String::from_utf8(Redactor::new(true).redact(text.as_bytes(), mode)).unwrap()
    }

    #[test]
    fn every_form_of_local_part_is_redacted() {
        let cases = [
            (
                "From: Bob <bob.smith@example.com>",
                "From: Bob <redacted1@example.com>",
            ),
            (
                "john@example.com, jane@example.org",
                "redacted1@example.com, redacted2@example.org",
            ),
            ("\"John Smith\"@example.com", "redacted1@example.com"),
            ("\"john\\\"q\"@example.com", "redacted1@example.com"),
            ("john(comment)@example.com", "redacted1@example.com"),
            ("john (comment) @example.com", "redacted1@example.com"),
            ("john . smith@example.com", "redacted1@example.com"),
            ("jöhn.smïth@example.com", "redacted1@example.com"),
            ("用户@例子.广告", "redacted1@例子.广告"),
            (
                "list-bounces+john.smith=mx.test@lists.example",
                "redacted1@lists.example",
            ),
            (
                "<bounce+john.smith=example.com@verp.example>",
                "<redacted1@verp.example>",
            ),
            ("\"john\"smith@example.com", "redacted1@example.com"),
            ("a\\@b@example.com", "redacted1@example.com"),
            (
                "user%other.example@relay.example",
                "redacted1@relay.example",
            ),
            (
                "mailto:unsub-john@lists.example",
                "mailto:redacted1@lists.example",
            ),
            ("@example.com", "@example.com"),
            (
                "<@relay.example:john@example.com>",
                "<@relay.example:redacted1@example.com>",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redacted(text, Mode::Text), expected, "{text}");
        }
    }

    #[test]
    fn addresses_inside_display_names_and_comments_are_redacted() {
        let cases = [
            (
                "From: \"john@example.com\" <x@example.net>",
                "From: \"redacted1@example.com\" <redacted2@example.net>",
            ),
            (
                "Received: from a (helo=b) (envelope-from <john@example.com>)",
                "Received: from a (helo=b) (envelope-from <redacted1@example.com>)",
            ),
            (
                "(see \"John Smith\"@example.com)",
                "(see redacted1@example.com)",
            ),
            ("((((deep john@example.com))))", "((((redacted1))))"),
            (
                "\"unclosed john@example.com",
                "\"unclosed redacted1@example.com",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redacted(text, Mode::Text), expected, "{text}");
        }
    }

    #[test]
    fn tag_value_fields_keep_their_tag_names() {
        let cases = [
            (
                "v=1; d=example.com; i=bob.smith@example.com;",
                "v=1; d=example.com; i=redacted1@example.com;",
            ),
            ("i=@example.com", "i=@example.com"),
            (
                "mx; spf=pass smtp.mailfrom=list-bounces+john.smith=mx.test@lists.example",
                "mx; spf=pass smtp.mailfrom=redacted1@lists.example",
            ),
            (
                "envelope-from=\"john@example.com\";",
                "envelope-from=\"redacted1@example.com\";",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redacted(text, Mode::TagValue), expected, "{text}");
        }
        // Outside tag-value fields a "name=" is part of the local part.
        assert_eq!(
            redacted("john.smith=example.com@verp.example", Mode::Text),
            "redacted1@verp.example"
        );
    }

    #[test]
    fn encoded_words_holding_addresses_are_redacted() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "From: =?utf-8?B?{}?= <x@example.net>",
            b64("John <john@example.com>")
        );
        let expected = format!(
            "From: =?utf-8?B?{}?= <redacted2@example.net>",
            b64("John <redacted1@example.com>")
        );
        assert_eq!(redacted(&text, Mode::Text), expected);
        assert_eq!(
            redacted("=?iso-8859-1?Q?john=40example.com?=", Mode::Text),
            format!("=?iso-8859-1?B?{}?=", b64("redacted1@example.com"))
        );
        assert_eq!(redacted("=?utf-16?B?AGoAQAB4?=", Mode::Text), "redacted1");
        assert_eq!(
            redacted("=?utf-8?Q?no_address?=", Mode::Text),
            "=?utf-8?Q?no_address?="
        );
    }

    #[test]
    fn the_same_local_part_gets_the_same_token() {
        let mut redactor = Redactor::new(true);
        let first = redactor.redact(b"From: bob@example.com, alice@example.org", Mode::Text);
        let second = redactor.redact(b"i=bob@example.com; x@", Mode::TagValue);
        assert_eq!(
            first,
            b"From: redacted1@example.com, redacted2@example.org".to_vec()
        );
        assert_eq!(second, b"i=redacted1@example.com; redacted3@".to_vec());
        assert_eq!(
            Redactor::new(false).redact(b"bob@x", Mode::Text),
            b"bob@x".to_vec()
        );
    }

    #[test]
    fn redaction_is_linear() {
        // 20,000 distinct local parts, 200,000 "@" in a row, deeply nested
        // comments: each would be quadratic with a linear search of the
        // local parts seen, a rescan per "@" or a rescan per level.
        let mut text = Vec::new();
        for n in 0..20_000 {
            text.extend_from_slice(format!("u{n}@example.com ").as_bytes());
        }
        let mut redactor = Redactor::new(true);
        let out = redactor.redact(&text, Mode::Text);
        assert_eq!(redactor.tokens.len(), 20_000);
        assert!(out.starts_with(b"redacted1@example.com redacted2@"));
        assert!(out.ends_with(b"redacted20000@example.com "));

        let ats = vec![b'@'; 200_000];
        assert_eq!(Redactor::new(true).redact(&ats, Mode::Text), ats);

        let mut nested = vec![b'('; 100_000];
        nested.extend_from_slice(b"john@example.com");
        let out = Redactor::new(true).redact(&nested, Mode::Text);
        assert!(!out.windows(4).any(|w| w == b"john"));
    }
}
