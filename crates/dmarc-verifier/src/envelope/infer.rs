//! The SMTP envelope of a saved message, read back from the headers the
//! receiving MTA added: MAIL FROM from `Return-Path` (RFC 5321 §4.4), the
//! client's address and HELO name from the `from` clause of the topmost
//! `Received` field that is not a local re-injection. What the caller
//! knows (the MTA log, the command line) wins over what is inferred.

use super::{saved::SavedMessage, Envelope};
use std::net::IpAddr;

/// The envelope values the caller knows; the others are inferred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownEnvelope {
    /// The SMTP client's address.
    pub client_ip: Option<IpAddr>,
    /// The HELO/EHLO name.
    pub helo: Option<String>,
    /// The MAIL FROM address (angle brackets optional; empty is the null
    /// sender).
    pub mail_from: Option<String>,
}

/// Where an envelope value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Given by the caller ([`KnownEnvelope`]).
    Given,
    /// The `Received` header with this 1-based number, counted from the top.
    Received(usize),
    /// The `Return-Path` header.
    ReturnPath,
    /// Nowhere: the value is missing (no client IP, empty HELO) or, for
    /// MAIL FROM, taken as the null sender.
    Missing,
}

impl Source {
    /// The header name for the JSON `inferred` object, or `None` when the
    /// value was not taken from a header.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Source::Received(_) => Some("Received"),
            Source::ReturnPath => Some("Return-Path"),
            Source::Given | Source::Missing => None,
        }
    }

    /// In words, for a command-line tool's output (a value the caller
    /// knew was given on its command line).
    pub fn describe(self) -> String {
        match self {
            Source::Given => "given on the command line".to_string(),
            Source::Received(1) => "inferred from the topmost Received header".to_string(),
            Source::Received(n) => format!("inferred from Received header {n} from the top"),
            Source::ReturnPath => "inferred from Return-Path".to_string(),
            Source::Missing => "not given, not found in the headers".to_string(),
        }
    }
}

/// The envelope and where each value came from.
#[derive(Debug)]
pub struct Inferred {
    /// The envelope to verify with.
    pub envelope: Envelope,
    /// Where `client_ip` came from.
    pub client_ip: Source,
    /// Where `helo` came from.
    pub helo: Source,
    /// Where `mail_from` came from.
    pub mail_from: Source,
    /// What could not be inferred, and why.
    pub notes: Vec<String>,
}

/// Builds the envelope: each value from `known`, else from the headers.
///
/// The client IP and HELO come from the topmost `Received` header, skipping
/// those written for a loopback client (a content filter such as amavis
/// re-injecting the message); MAIL FROM from the topmost `Return-Path`.
/// What cannot be inferred is left empty (no client IP, empty HELO, the
/// null sender) and explained in [`Inferred::notes`].
///
/// # Examples
///
/// ```
/// use dmarc_verifier::envelope::{infer, KnownEnvelope, SavedMessage, Source};
/// let message = SavedMessage::parse(
///     b"Return-Path: <bounce@example.org>\r\n\
///       Received: from mail.example.org (mail.example.org [192.0.2.7]) by mx.example.net\r\n\
///       From: a@example.org\r\n\r\nHi\r\n".to_vec(),
/// ).unwrap();
/// let inferred = infer(&message, &KnownEnvelope::default());
/// assert_eq!(inferred.envelope.mail_from, "bounce@example.org");
/// assert_eq!(inferred.envelope.helo, "mail.example.org");
/// assert_eq!(inferred.envelope.client_ip, Some("192.0.2.7".parse().unwrap()));
/// assert_eq!(inferred.client_ip, Source::Received(1));
/// ```
pub fn infer(message: &SavedMessage, known: &KnownEnvelope) -> Inferred {
    let mut notes = Vec::new();
    let mut envelope = Envelope::default();

    let (mail_from, mail_from_source) = match &known.mail_from {
        Some(given) => (given.clone(), Source::Given),
        None => match message.header_values("Return-Path").next() {
            Some(value) => (value.to_string(), Source::ReturnPath),
            None => {
                notes.push(
                    "no Return-Path header and no MAIL FROM given: MAIL FROM taken as the null sender <>"
                        .to_string(),
                );
                (String::new(), Source::Missing)
            }
        },
    };
    envelope.mail_from = strip_angle_brackets(&mail_from).to_string();

    let received = if known.client_ip.is_none() || known.helo.is_none() {
        topmost_received(message, &mut notes)
    } else {
        None
    };
    let (client_ip, client_ip_source) = match (known.client_ip, &received) {
        (Some(ip), _) => (Some(ip), Source::Given),
        (None, Some((n, from))) if from.ip.is_some() => (from.ip, Source::Received(*n)),
        (None, Some((n, _))) => {
            notes.push(format!(
                "Received header {n} names no client address: give the client IP (SPF is not checked without it)"
            ));
            (None, Source::Missing)
        }
        (None, None) => (None, Source::Missing),
    };
    envelope.client_ip = client_ip;
    let (helo, helo_source) = match (&known.helo, &received) {
        (Some(helo), _) => (helo.clone(), Source::Given),
        (None, Some((n, from))) => (from.helo.clone(), Source::Received(*n)),
        (None, None) => (String::new(), Source::Missing),
    };
    envelope.helo = helo;

    Inferred {
        envelope,
        client_ip: client_ip_source,
        helo: helo_source,
        mail_from: mail_from_source,
        notes,
    }
}

/// `<a@b>` → `a@b`, `<>` → empty, `<a@b> (comment)` → `a@b`; text without
/// angle brackets is kept (trimmed).
fn strip_angle_brackets(address: &str) -> &str {
    let address = address.trim();
    address
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(address, |(inside, _)| inside.trim())
}

/// The `from` clause of a `Received` header (RFC 5321 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrom {
    /// The HELO name the client gave.
    pub helo: String,
    /// The client's address.
    pub ip: Option<IpAddr>,
}

/// The first `Received` header from the top that can be read and is not
/// from a loopback client, with its 1-based number.
fn topmost_received(
    message: &SavedMessage,
    notes: &mut Vec<String>,
) -> Option<(usize, ReceivedFrom)> {
    let mut count = 0;
    for (index, value) in message.header_values("Received").enumerate() {
        count += 1;
        let number = index + 1;
        let Some(from) = parse_received(value) else {
            notes.push(format!(
                "Received header {number} has no readable \"from HELO (name [IP])\" clause: give the client IP and HELO"
            ));
            return None;
        };
        match from.ip {
            Some(ip) if ip.is_loopback() => notes.push(format!(
                "Received header {number} is from {ip} (a local re-injection): skipped"
            )),
            _ => return Some((number, from)),
        }
    }
    if count == 0 {
        notes.push(
            "no Received header: give the client IP and HELO (SPF is not checked without a client IP)"
                .to_string(),
        );
    } else {
        notes.push("every Received header is from a loopback address".to_string());
    }
    None
}

/// Reads the `from` clause of a Received header value:
///
/// - Postfix and Sendmail: `from HELO (rdns [IP])`, `from HELO (unknown
///   [IP])`, `from HELO (rdns [IPv6:2001:db8::1])`;
/// - Exim: `from rdns ([IP] helo=HELO)`, `from [IP] (helo=HELO)`;
/// - Exchange: `from HELO (IP)`.
pub fn parse_received(value: &str) -> Option<ReceivedFrom> {
    let rest = value.trim_start();
    let keyword = rest.get(..4)?;
    if !keyword.eq_ignore_ascii_case("from") {
        return None;
    }
    let rest = rest.get(4..)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .unwrap_or(rest.len());
    let (mut helo, rest) = rest.split_at(end);
    let comment = comment(rest.trim_start()).unwrap_or_default();

    let mut ip = bracketed_ip(comment).or_else(|| comment.trim().parse().ok());
    if ip.is_none() {
        // Exim without reverse DNS puts the address first: `from [IP]`.
        ip = bracketed_ip(helo);
    }
    // Exim writes the HELO name as `helo=NAME` when it differs from the
    // reverse DNS name it puts first.
    if let Some(given) = comment
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find_map(|word| word.strip_prefix("helo="))
    {
        helo = given;
    }
    if helo.is_empty() {
        return None;
    }
    Some(ReceivedFrom {
        helo: helo.to_string(),
        ip,
    })
}

/// The text of the parenthesised comment `text` starts with, nesting
/// allowed (RFC 5322 §3.2.2), without the outer parentheses.
fn comment(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('(')?;
    let mut depth = 1usize;
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return inner.get(..i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The address in the first `[...]` of `text`: `[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`.
fn bracketed_ip(text: &str) -> Option<IpAddr> {
    let start = text.find('[')?;
    let inside = text.get(start + 1..)?;
    let inside = inside.get(..inside.find(']')?)?;
    let address = match inside.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("ipv6:") => inside.get(5..)?,
        _ => inside,
    };
    address.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_from_clauses() {
        /// A Received value and the HELO and IP expected from it.
        type Case<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>);
        let cases: &[Case] = &[
            (
                "from mail.example.com (mail.example.com [192.0.2.10]) by mx.example.net (Postfix) with ESMTPS id 4XyZ1abc",
                Some(("mail.example.com", Some("192.0.2.10"))),
            ),
            (
                "from unknown.example.net (unknown [198.51.100.200])\tby mx.example.net (Postfix)",
                Some(("unknown.example.net", Some("198.51.100.200"))),
            ),
            (
                "from mx6.example.org (mx6.example.org [IPv6:2001:db8::1]) by mx",
                Some(("mx6.example.org", Some("2001:db8::1"))),
            ),
            (
                "from rdns.example.org ([192.0.2.7] helo=helo.example.org) by mx with esmtps",
                Some(("helo.example.org", Some("192.0.2.7"))),
            ),
            (
                "from [192.0.2.8] (helo=laptop) by mx with esmtp",
                Some(("laptop", Some("192.0.2.8"))),
            ),
            (
                "from EXCH01.example.com (10.0.0.1) by EXCH02.example.com",
                Some(("EXCH01.example.com", Some("10.0.0.1"))),
            ),
            (
                "FROM host.example.com (host [192.0.2.1] (may be forged)) by mx",
                Some(("host.example.com", Some("192.0.2.1"))),
            ),
            (
                "from mail.example.org by mx.example.net; Mon, 10 Jun 2024",
                Some(("mail.example.org", None)),
            ),
            ("by mx.example.net (Postfix, from userid 1000) id 4X", None),
            ("(qmail 1234 invoked by uid 89); 10 Jun 2024", None),
            ("fromage", None),
            ("from", None),
        ];
        for &(value, expected) in cases {
            let got = parse_received(value);
            let expected = expected.map(|(helo, ip)| ReceivedFrom {
                helo: helo.to_string(),
                ip: ip.map(|ip| ip.parse().unwrap()),
            });
            assert_eq!(got, expected, "{value}");
        }
    }

    fn message(text: &str) -> SavedMessage {
        SavedMessage::parse(text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn inference_skips_local_reinjection_and_yields_to_known_values() {
        let saved = message(
            "Return-Path: <b@example.org>\n\
             Received: from localhost (localhost [127.0.0.1]) by mx\n\
             Received: from mail.example.org (mail.example.org [192.0.2.7]) by mx\n\
             From: a@example.org\n\nHi\n",
        );
        let inferred = infer(&saved, &KnownEnvelope::default());
        assert_eq!(inferred.client_ip, Source::Received(2));
        assert_eq!(inferred.helo, Source::Received(2));
        assert_eq!(inferred.mail_from, Source::ReturnPath);
        assert_eq!(inferred.envelope.helo, "mail.example.org");
        assert_eq!(
            inferred.notes,
            ["Received header 1 is from 127.0.0.1 (a local re-injection): skipped"]
        );

        let known = KnownEnvelope {
            client_ip: Some("198.51.100.1".parse().unwrap()),
            helo: Some("given.example".to_string()),
            mail_from: Some("<>".to_string()),
        };
        let inferred = infer(&saved, &known);
        assert_eq!(
            (inferred.client_ip, inferred.helo, inferred.mail_from),
            (Source::Given, Source::Given, Source::Given)
        );
        assert_eq!(inferred.envelope.mail_from, "");
        assert_eq!(inferred.envelope.helo, "given.example");
        assert!(inferred.notes.is_empty(), "{:?}", inferred.notes);
    }

    #[test]
    fn nothing_to_infer_from() {
        let inferred = infer(
            &message("From: a@example.org\n\nHi\n"),
            &KnownEnvelope::default(),
        );
        assert_eq!(inferred.envelope, Envelope::default());
        assert_eq!(
            (inferred.client_ip, inferred.helo, inferred.mail_from),
            (Source::Missing, Source::Missing, Source::Missing)
        );
        assert_eq!(inferred.notes.len(), 2, "{:?}", inferred.notes);
    }

    #[test]
    fn angle_brackets() {
        assert_eq!(strip_angle_brackets("<a@example.com>"), "a@example.com");
        assert_eq!(strip_angle_brackets(" <> "), "");
        assert_eq!(strip_angle_brackets("a@example.com"), "a@example.com");
        assert_eq!(strip_angle_brackets(""), "");
        assert_eq!(
            strip_angle_brackets("<a@example.com> (from the MTA)"),
            "a@example.com"
        );
    }
}
