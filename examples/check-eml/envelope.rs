//! The SMTP envelope of a saved message: from the command line, or inferred
//! from the headers the receiving MTA added (`Return-Path`, `Received`).

use crate::{args::Args, message::Message};
use dmarc_verifier::Envelope;
use std::net::IpAddr;

/// Where an envelope value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Option,
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
            Source::Option | Source::Missing => None,
        }
    }

    /// In words, for the text output.
    pub fn describe(self) -> String {
        match self {
            Source::Option => "given on the command line".to_string(),
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

/// Builds the envelope: each value from its option, else from the headers.
///
/// The client IP and HELO come from the topmost `Received` header, skipping
/// those written for a loopback client (a content filter such as amavis
/// re-injecting the message); MAIL FROM from the topmost `Return-Path`.
pub fn infer(args: &Args, message: &Message) -> Inferred {
    let mut notes = Vec::new();
    let mut envelope = Envelope::default();

    let (mail_from, mail_from_source) = match &args.mail_from {
        Some(given) => (given.clone(), Source::Option),
        None => match message.header_values("Return-Path").next() {
            Some(value) => (value.to_string(), Source::ReturnPath),
            None => {
                notes.push(
                    "no Return-Path header and no --mail-from: MAIL FROM taken as the null sender <>"
                        .to_string(),
                );
                (String::new(), Source::Missing)
            }
        },
    };
    envelope.mail_from = strip_angle_brackets(&mail_from).to_string();

    let received = if args.client_ip.is_none() || args.helo.is_none() {
        topmost_received(message, &mut notes)
    } else {
        None
    };
    let (client_ip, client_ip_source) = match (args.client_ip, &received) {
        (Some(ip), _) => (Some(ip), Source::Option),
        (None, Some((n, from))) if from.ip.is_some() => (from.ip, Source::Received(*n)),
        (None, Some((n, _))) => {
            notes.push(format!(
                "Received header {n} names no client address: pass --client-ip (SPF is not checked without it)"
            ));
            (None, Source::Missing)
        }
        (None, None) => (None, Source::Missing),
    };
    envelope.client_ip = client_ip;
    let (helo, helo_source) = match (&args.helo, &received) {
        (Some(helo), _) => (helo.clone(), Source::Option),
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
fn topmost_received(message: &Message, notes: &mut Vec<String>) -> Option<(usize, ReceivedFrom)> {
    let mut count = 0;
    for (index, value) in message.header_values("Received").enumerate() {
        count += 1;
        let number = index + 1;
        let Some(from) = parse_received(value) else {
            notes.push(format!(
                "Received header {number} has no readable \"from HELO (name [IP])\" clause: pass --client-ip and --helo"
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
            "no Received header: pass --client-ip and --helo (SPF is not checked without a client IP)"
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
        let cases: &[(&str, Option<(&str, Option<&str>)>)] = &[
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
