//! Parsing incoming Authentication-Results (RFC 8601 §2.2) to find the ones
//! that claim our authserv-id (RFC 8601 §5: an MTA must delete them).

use std::fmt;

/// One `ptype.property=value` of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// `smtp`, `header`, `body`, `policy`, ...
    pub ptype: String,
    /// `mailfrom`, `d`, `from`, ...
    pub property: String,
    /// The value, quoted-pairs resolved.
    pub value: String,
}

/// One `resinfo`: a method, its result, an optional reason and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResInfo {
    /// The method (`spf`, `dkim`, `dmarc`, ...), lower case.
    pub method: String,
    /// The method version, when given (`dkim/1`).
    pub version: Option<String>,
    /// The result word, lower case.
    pub result: String,
    /// The `reason=` value.
    pub reason: Option<String>,
    /// The properties, in order.
    pub props: Vec<Property>,
}

/// A parsed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthResults {
    /// The authserv-id as written (quoted-pairs resolved).
    pub authserv_id: String,
    /// The version after the authserv-id, when given.
    pub version: Option<String>,
    /// The results; empty for `none`.
    pub results: Vec<ResInfo>,
}

/// Why a header value is not RFC 8601 syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where parsing stopped.
    pub offset: usize,
    /// What was expected.
    pub message: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, message: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            message,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Skips white space, folding and (nested) comments (RFC 5322 §3.2.2).
    fn skip_cfws(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('(') => {
                    let mut depth = 0usize;
                    loop {
                        match self.bump() {
                            None => return Err(self.error("unterminated comment")),
                            Some('\\') => {
                                self.bump();
                            }
                            Some('(') => depth += 1,
                            Some(')') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// A run of characters satisfying `accept`.
    fn run(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// A quoted string, quoted-pairs resolved; the opening quote is next.
    fn quoted(&mut self) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated quoted string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(self.error("unterminated quoted string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// `value = token / quoted-string` (RFC 2045 §5.1).
    fn value(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let token = self.run(is_token_char);
        if token.is_empty() {
            return Err(self.error("expected a value"));
        }
        Ok(token.to_string())
    }

    /// `pvalue`: a value, or `[local-part] "@" domain-name`.
    fn pvalue(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            let quoted = self.quoted()?;
            if self.eat('@') {
                let domain = self.run(is_token_char);
                return Ok(format!("{quoted}@{domain}"));
            }
            return Ok(quoted);
        }
        let text = self.run(|c| is_token_char(c) || c == '@');
        if text.is_empty() {
            return Err(self.error("expected a property value"));
        }
        Ok(text.to_string())
    }

    /// `Keyword` (RFC 5321 §4.1.2): letters, digits and hyphens.
    fn keyword(&mut self) -> Result<String, ParseError> {
        let word = self.run(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if word.is_empty() {
            return Err(self.error("expected a keyword"));
        }
        Ok(word.to_ascii_lowercase())
    }
}

/// RFC 2045 token characters: printable ASCII but space and tspecials.
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Parses an Authentication-Results header value (after the colon).
///
/// Lenient where RFC 8601 readers commonly are: a trailing `;` and folded
/// white space are accepted; an empty value is an error (an authserv-id is
/// required).
///
/// # Errors
///
/// [`ParseError`] with the offset where the text stopped following the
/// grammar.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::auth_results::parse;
/// let parsed = parse("mx.example.org; spf=pass smtp.mailfrom=example.net").unwrap();
/// assert_eq!(parsed.authserv_id, "mx.example.org");
/// assert_eq!(parsed.results[0].props[0].value, "example.net");
/// ```
pub fn parse(value: &str) -> Result<ParsedAuthResults, ParseError> {
    parse_impl(value, false)
}

/// [`parse`] that also accepts a property without a ptype (`dmarc=pass
/// action=none header.from=example.com`, as Microsoft 365 writes its
/// ARC-Authentication-Results), kept with an empty `ptype` so that no
/// reader takes it for a `header.`, `smtp.` or `policy.` property. For the
/// results of other hosts (ARC), never for deciding what a header claims.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_lenient(value: &str) -> Result<ParsedAuthResults, ParseError> {
    parse_impl(value, true)
}

fn parse_impl(value: &str, lenient: bool) -> Result<ParsedAuthResults, ParseError> {
    let mut c = Cursor {
        text: value,
        pos: 0,
    };
    c.skip_cfws()?;
    let authserv_id = c.value()?;
    c.skip_cfws()?;
    let mut version = None;
    if c.peek().is_some_and(|ch| ch.is_ascii_digit()) {
        version = Some(c.run(|ch| ch.is_ascii_digit()).to_string());
        c.skip_cfws()?;
    }
    let mut results = Vec::new();
    loop {
        c.skip_cfws()?;
        if c.at_end() {
            break;
        }
        if !c.eat(';') {
            return Err(c.error("expected ';'"));
        }
        c.skip_cfws()?;
        if c.at_end() {
            // A trailing ";" (lenient).
            break;
        }
        let method = c.keyword()?;
        c.skip_cfws()?;
        if method == "none" && (c.at_end() || c.peek() == Some(';')) {
            continue;
        }
        let mut method_version = None;
        if c.eat('/') {
            c.skip_cfws()?;
            method_version = Some(c.run(|ch| ch.is_ascii_digit()).to_string());
            c.skip_cfws()?;
        }
        if !c.eat('=') {
            return Err(c.error("expected '=' after the method"));
        }
        c.skip_cfws()?;
        let result = c.keyword()?;
        let mut info = ResInfo {
            method,
            version: method_version,
            result,
            reason: None,
            props: Vec::new(),
        };
        loop {
            c.skip_cfws()?;
            if c.at_end() || c.peek() == Some(';') {
                break;
            }
            let word = c.keyword()?;
            c.skip_cfws()?;
            if word == "reason" && c.peek() == Some('=') {
                c.bump();
                c.skip_cfws()?;
                info.reason = Some(c.value()?);
                continue;
            }
            // Not RFC 8601, but written by Microsoft 365 (`dmarc=pass
            // action=none header.from=...`): a property without a ptype,
            // kept with an empty one so that no reader takes it for a
            // `header.`, `smtp.` or `policy.` property.
            if lenient && c.peek() == Some('=') {
                c.bump();
                c.skip_cfws()?;
                let value = c.pvalue()?;
                info.props.push(Property {
                    ptype: String::new(),
                    property: word,
                    value,
                });
                continue;
            }
            if !c.eat('.') {
                return Err(c.error("expected '.' in a property"));
            }
            c.skip_cfws()?;
            let property = c.run(|ch| is_token_char(ch) && ch != '.');
            if property.is_empty() {
                return Err(c.error("expected a property name"));
            }
            let property = property.to_ascii_lowercase();
            c.skip_cfws()?;
            if !c.eat('=') {
                return Err(c.error("expected '=' in a property"));
            }
            c.skip_cfws()?;
            let value = c.pvalue()?;
            info.props.push(Property {
                ptype: word,
                property,
                value,
            });
        }
        results.push(info);
    }
    Ok(ParsedAuthResults {
        authserv_id,
        version,
        results,
    })
}

/// Compares two authserv-ids as host names: case-insensitive, IDNA-aware,
/// trailing dot ignored.
fn same_id(a: &str, b: &str) -> bool {
    fn canonical(id: &str) -> String {
        let id = id.trim().trim_end_matches('.');
        idna::domain_to_ascii(id).unwrap_or_else(|_| id.to_ascii_lowercase())
    }
    canonical(a) == canonical(b)
}

/// True when an incoming Authentication-Results value claims `ours` as its
/// authserv-id, so that it must be deleted (RFC 8601 §5): when it parses
/// with that id, and also when it does not parse but its leading word (up to
/// white space, `;` or a comment, quotes removed) is our id. A forger gains
/// nothing by breaking the syntax.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::auth_results::claims_authserv_id;
/// assert!(claims_authserv_id("MX.Example.NET; dmarc=pass", "mx.example.net"));
/// assert!(claims_authserv_id(" mx.example.net ;;; garbage ((", "mx.example.net"));
/// assert!(!claims_authserv_id("other.example; dmarc=pass", "mx.example.net"));
/// ```
pub fn claims_authserv_id(header_value: &str, ours: &str) -> bool {
    if let Ok(parsed) = parse(header_value) {
        return same_id(&parsed.authserv_id, ours);
    }
    let mut c = Cursor {
        text: header_value,
        pos: 0,
    };
    // Skip leading comments if they are well formed; otherwise read from
    // the first non-space character.
    if c.skip_cfws().is_err() {
        c.pos = 0;
        c.run(char::is_whitespace);
    }
    let rest = c.text.get(c.pos..).unwrap_or_default();
    let word: String = rest
        .chars()
        .take_while(|ch| !ch.is_whitespace() && *ch != ';' && *ch != '(')
        .filter(|ch| *ch != '"' && *ch != '\\')
        .collect();
    !word.is_empty() && same_id(&word, ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results_reasons_properties_and_comments() {
        let parsed = parse(
            "mx.example.org 1; (comment) spf=pass (ok) smtp.mailfrom=user@example.net;\n\tdkim/1=fail reason=\"bad sig\" header.d=example.com header.b=\"ab+/cd\";\n\tdmarc=pass header.from=example.com policy.dmarc=reject",
        )
        .unwrap();
        assert_eq!(parsed.authserv_id, "mx.example.org");
        assert_eq!(parsed.version.as_deref(), Some("1"));
        assert_eq!(parsed.results.len(), 3);
        let dkim = &parsed.results[1];
        assert_eq!(
            (
                dkim.method.as_str(),
                dkim.version.as_deref(),
                dkim.result.as_str()
            ),
            ("dkim", Some("1"), "fail")
        );
        assert_eq!(dkim.reason.as_deref(), Some("bad sig"));
        assert_eq!(dkim.props[1].value, "ab+/cd");
        assert_eq!(parsed.results[0].props[0].value, "user@example.net");
        assert_eq!(parsed.results[2].props[1].ptype, "policy");
    }

    #[test]
    fn microsoft_365_properties_without_a_ptype_are_kept_apart() {
        let value = "mx.microsoft.com 1; spf=pass smtp.mailfrom=contoso.com; dmarc=pass action=none header.from=contoso.com; dkim=pass header.d=contoso.com; arc=none";
        assert!(parse(value).is_err(), "not RFC 8601");
        let parsed = parse_lenient(value).unwrap();
        assert_eq!(parsed.results.len(), 4);
        let dmarc = &parsed.results[1];
        assert_eq!(
            dmarc.props,
            vec![
                Property {
                    ptype: String::new(),
                    property: "action".into(),
                    value: "none".into()
                },
                Property {
                    ptype: "header".into(),
                    property: "from".into(),
                    value: "contoso.com".into()
                },
            ]
        );
    }

    #[test]
    fn none_and_errors() {
        assert_eq!(parse("example.org; none").unwrap().results, vec![]);
        assert!(parse("").is_err());
        assert!(parse("example.org spf=pass").is_err());
        assert!(parse("example.org; spf").is_err());
        assert!(parse("example.org; spf=pass (unterminated").is_err());
        assert!(parse("example.org; spf=pass smtp=x").is_err());
    }

    #[test]
    fn forged_ids_are_recognised_parsed_or_not() {
        let ours = "mx.example.net";
        let cases: &[(&str, bool)] = &[
            ("mx.example.net; dmarc=pass", true),
            ("MX.EXAMPLE.NET.; dmarc=pass", true),
            ("\"mx.example.net\"; dmarc=pass", true),
            ("(c) mx.example.net; dmarc=pass", true),
            ("mx.example.net", true),
            ("mx.example.net; this is not = syntax", true),
            ("mx.example.net;dmarc", true),
            ("mx.example.net(x; dmarc=pass", true),
            (
                "other.example; dmarc=pass header.from=mx.example.net",
                false,
            ),
            ("mx.example.net.evil; dmarc=pass", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(claims_authserv_id(value, ours), *expected, "{value:?}");
        }
        // IDNA: a U-label id matches its A-label.
        assert!(claims_authserv_id(
            "mx.bücher.example; none",
            "mx.xn--bcher-kva.example"
        ));
    }
}
