//! Authentication-Results (RFC 8601): the only place that formats the header,
//! and the parser for incoming ones (to find forged headers, RFC 8601 §5).
//!
//! Result words come from enums (`as_str`), never from input. Property values
//! taken from the message (domains, selectors) are written as RFC 2045 tokens
//! when they are tokens and as quoted strings otherwise, with control
//! characters removed, so a hostile value cannot add a result or a field.

use crate::verdict::{DkimCheck, Evaluation, SpfCheck, SpfScope};
use std::borrow::Cow;

mod parse;
pub use parse::{claims_authserv_id, parse, ParseError, ParsedAuthResults, Property, ResInfo};

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
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
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

/// `dmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com
/// policy.dmarc=reject` (RFC 9989 §9.1 registers `header.from` and
/// `policy.dmarc`). The comment shows the policies as the evaluation's
/// discovery method applied them, with `np` when it differs from `sp`.
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
        out.push_str(&format!(
            " (p={} sp={}{np} dis={})",
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
        ];
        for (input, expected) in cases {
            assert_eq!(quote_value(input), *expected, "{input:?}");
        }
    }
}
