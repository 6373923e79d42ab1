//! Authentication-Results (RFC 8601): the only place that formats the header,
//! and the parser for incoming ones (to find forged headers, RFC 8601 §5).
//!
//! Result words come from enums (`as_str`), never from input. Property values
//! taken from the message (domains, selectors) are written as RFC 2045 tokens
//! when they are tokens and as quoted strings otherwise, with control
//! characters removed, so a hostile value cannot add a result or a field.
//! The header is ASCII (RFC 5322 §2.2, RFC 8601 §2.2: mail that is not
//! SMTPUTF8): in values and comments `§` is written `section ` and any
//! other non-ASCII character `?`.

use crate::{
    arc::{ArcCheck, ArcResult},
    verdict::{DkimCheck, Evaluation, SpfCheck, SpfScope},
};
use std::{borrow::Cow, net::IpAddr};

mod parse;
pub use parse::{
    claims_authserv_id, parse, parse_lenient, ParseError, ParsedAuthResults, Property, ResInfo,
};

/// Writes `value` as an RFC 8601 `value` (RFC 2045 token or quoted-string).
pub fn quote_value(value: &str) -> Cow<'_, str> {
    let is_token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b));
    if is_token {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => push_ascii(&mut out, c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Pushes `c` as header text: ASCII as it is, controls as a space, `§`
/// (our reasons cite RFC sections) as `section `, anything else as `?`.
fn push_ascii(out: &mut String, c: char) {
    match c {
        c if c.is_control() => out.push(' '),
        c if c.is_ascii() => out.push(c),
        '§' => out.push_str("section "),
        _ => out.push('?'),
    }
}

/// Builds one Authentication-Results header value.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::auth_results::AuthResults;
/// let mut ar = AuthResults::new("mx.example.net");
/// ar.push("spf=pass smtp.mailfrom=example.com".to_string());
/// assert_eq!(ar.value(), "mx.example.net;\n\tspf=pass smtp.mailfrom=example.com");
/// assert_eq!(AuthResults::new("mx.example.net").value(), "mx.example.net; none");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    authserv_id: String,
    results: Vec<String>,
}

impl AuthResults {
    /// An empty header for `authserv_id`.
    pub fn new(authserv_id: &str) -> AuthResults {
        AuthResults {
            authserv_id: quote_value(authserv_id).into_owned(),
            results: Vec::new(),
        }
    }

    /// Adds one `resinfo` (already formatted by the functions below).
    pub fn push(&mut self, resinfo: String) {
        self.results.push(resinfo);
    }

    /// The header value: the authserv-id, then each result on its own line
    /// folded with LF and a tab; `none` when there is no result (RFC 8601
    /// §2.2).
    pub fn value(&self) -> String {
        if self.results.is_empty() {
            return format!("{}; none", self.authserv_id);
        }
        let mut out = self.authserv_id.clone();
        for result in &self.results {
            out.push_str(";\n\t");
            out.push_str(result);
        }
        out
    }
}

/// `spf=pass smtp.mailfrom=example.com` (RFC 8601 §2.7.2).
pub fn spf_resinfo(spf: &SpfCheck) -> String {
    let mut out = format!("spf={}", spf.result.as_str());
    if let Some(reason) = &spf.reason {
        out.push_str(" reason=");
        out.push_str(&quote_value(reason));
    }
    if !spf.domain.is_empty() {
        let property = match spf.scope {
            SpfScope::MailFrom => "smtp.mailfrom",
            SpfScope::Helo => "smtp.helo",
        };
        out.push_str(&format!(" {property}={}", quote_value(&spf.domain)));
    }
    out
}

/// `dkim=pass header.d=example.com header.s=sel header.b=abcdEFGH`
/// (RFC 8601 §2.7.1, RFC 6008 for `header.b`).
pub fn dkim_resinfo(dkim: &DkimCheck) -> String {
    let mut out = format!("dkim={}", dkim.result.as_str());
    if let Some(reason) = &dkim.reason {
        out.push_str(" reason=");
        out.push_str(&quote_value(reason));
    }
    if !dkim.domain.is_empty() {
        out.push_str(&format!(" header.d={}", quote_value(&dkim.domain)));
    }
    if !dkim.selector.is_empty() {
        out.push_str(&format!(" header.s={}", quote_value(&dkim.selector)));
    }
    if !dkim.b_prefix.is_empty() {
        out.push_str(&format!(" header.b={}", quote_value(&dkim.b_prefix)));
    }
    out
}

/// `dkim=none` for a message without signatures.
pub fn dkim_none_resinfo() -> String {
    "dkim=none".to_string()
}

/// `arc=pass header.oldest-pass=0 smtp.remote-ip=192.0.2.1` (RFC 8617
/// §4.4 results; the IANA registration of RFC 8617 §10.1 adds
/// `header.oldest-pass`, given for a chain that passed, and
/// `smtp.remote-ip`, the SMTP client, given when ARC fields were there and
/// the client is known). A failed chain carries its reason.
pub fn arc_resinfo(arc: &ArcCheck, client_ip: Option<IpAddr>) -> String {
    let mut out = format!("arc={}", arc.result.as_str());
    if arc.result == ArcResult::None {
        return out;
    }
    if let Some(reason) = &arc.reason {
        out.push_str(" reason=");
        out.push_str(&quote_value(reason));
    }
    if let Some(oldest) = arc.oldest_pass {
        out.push_str(&format!(" header.oldest-pass={oldest}"));
    }
    if let Some(ip) = client_ip {
        out.push_str(&format!(" smtp.remote-ip={}", quote_value(&ip.to_string())));
    }
    out
}

/// Text for inside an RFC 5322 comment: parentheses and backslashes
/// escaped (`quoted-pair`), control characters made spaces, ASCII only
/// (see the module documentation).
pub fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => push_ascii(&mut out, c),
        }
    }
    out
}

/// `dmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com
/// policy.dmarc=reject` (RFC 9989 §9.1 registers `header.from` and
/// `policy.dmarc`). The comment shows the policies as the evaluation's
/// discovery method applied them, with `np` when it differs from `sp`, and
/// the override of an indirect mail flow with its comment: `(p=reject
/// sp=reject dis=none override=trusted_forwarder: arc=pass i=1
/// sealer=lists.example.org)`.
pub fn dmarc_resinfo(evaluation: &Evaluation) -> String {
    let mut out = format!("dmarc={}", evaluation.result.as_str());
    if let Some(reason) = &evaluation.reason {
        out.push_str(" reason=");
        out.push_str(&quote_value(reason));
    }
    if let Some(policies) = evaluation.effective_policies() {
        // `np` where it can apply: RFC 9989 discovery, and a value of its
        // own.
        let np = if policies.np != policies.sp {
            format!(" np={}", policies.np.as_str())
        } else {
            String::new()
        };
        let override_text = match (evaluation.override_reason, &evaluation.override_comment) {
            (Some(reason), Some(comment)) => {
                format!(" override={reason}: {}", comment_text(comment))
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            " (p={} sp={}{np} dis={}{override_text})",
            policies.p.as_str(),
            policies.sp.as_str(),
            evaluation.disposition.report_token()
        ));
    }
    out.push_str(&format!(
        " header.from={}",
        quote_value(&evaluation.author_domain)
    ));
    if let Some(policy) = &evaluation.policy {
        out.push_str(&format!(" policy.dmarc={}", policy.applied.as_str()));
    }
    out
}

/// `dmarc=permerror reason="multiple-from"` when no Author Domain could be
/// taken from the message.
pub fn dmarc_error_resinfo(result: &str, reason: &str) -> String {
    format!("dmarc={result} reason={}", quote_value(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arc::{ArcCheck, ArcResult};

    #[test]
    fn arc_results_follow_rfc8617() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(arc_resinfo(&ArcCheck::none(), ip("192.0.2.1")), "arc=none");
        let pass = ArcCheck {
            result: ArcResult::Pass,
            reason: None,
            chain: Vec::new(),
            oldest_pass: Some(2),
        };
        assert_eq!(
            arc_resinfo(&pass, ip("192.0.2.1")),
            "arc=pass header.oldest-pass=2 smtp.remote-ip=192.0.2.1"
        );
        assert_eq!(
            arc_resinfo(&pass, ip("2001:db8::1")),
            "arc=pass header.oldest-pass=2 smtp.remote-ip=\"2001:db8::1\""
        );
        assert_eq!(arc_resinfo(&pass, None), "arc=pass header.oldest-pass=2");
        let fail = ArcCheck {
            result: ArcResult::Fail,
            reason: Some("two ARC-Seal fields with i=1; dmarc=pass".into()),
            chain: Vec::new(),
            oldest_pass: None,
        };
        assert_eq!(
            arc_resinfo(&fail, ip("192.0.2.1")),
            "arc=fail reason=\"two ARC-Seal fields with i=1; dmarc=pass\" smtp.remote-ip=192.0.2.1"
        );
        let parsed = parse(&format!("mx; {}", arc_resinfo(&fail, ip("192.0.2.1")))).unwrap();
        assert_eq!(parsed.results.len(), 1, "a reason cannot add a result");
    }

    #[test]
    fn comments_cannot_be_closed_early() {
        assert_eq!(
            comment_text("arc=pass i=1 sealer=x"),
            "arc=pass i=1 sealer=x"
        );
        assert_eq!(comment_text("a) b=c; (d\\"), "a\\) b=c; \\(d\\\\");
        assert_eq!(comment_text("a\r\nX-Injected: 1"), "a  X-Injected: 1");
        assert_eq!(
            comment_text("RFC 6376 §6.1.1, J\u{f6}rg"),
            "RFC 6376 section 6.1.1, J?rg"
        );
        let value = format!(
            "mx; dmarc=fail ({}) header.from=example.com",
            comment_text(") dmarc=pass (")
        );
        let parsed = parse(&value).unwrap();
        assert_eq!(parsed.results.len(), 1);
        assert_eq!(parsed.results[0].result, "fail");
    }

    #[test]
    fn values_are_tokens_or_quoted() {
        let cases: &[(&str, &str)] = &[
            ("example.com", "example.com"),
            ("news2048", "news2048"),
            ("abc+/DEF", "\"abc+/DEF\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("x; dmarc=pass", "\"x; dmarc=pass\""),
            ("q\"uo\\te", "\"q\\\"uo\\\\te\""),
            ("line\r\nX-Injected: 1", "\"line  X-Injected: 1\""),
            ("(comment)", "\"(comment)\""),
            // ASCII only (found by review: reasons citing RFC sections
            // put a raw '§' into the header).
            ("RFC 8617 §5.2", "\"RFC 8617 section 5.2\""),
            ("J\u{f6}rg \u{1F600}", "\"J?rg ?\""),
        ];
        for (input, expected) in cases {
            assert_eq!(quote_value(input), *expected, "{input:?}");
        }
    }
}
