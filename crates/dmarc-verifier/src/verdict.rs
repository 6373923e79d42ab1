//! The typed outcome of checking one message.

use crate::{
    alignment::Alignment,
    arc::ArcCheck,
    discovery::DiscoveryMethod,
    dns::DnsFailure,
    message::FromError,
    policy::{AppliedPolicy, Disposition, OverrideReason},
    record::{DmarcRecord, EffectivePolicies},
    trail::Step,
};
use std::sync::Arc;

/// SPF results (RFC 7208 §2.6, RFC 8601 §2.7.2 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// The client is authorized.
    Pass,
    /// The client is not authorized.
    Fail,
    /// Probably not authorized.
    SoftFail,
    /// No assertion.
    Neutral,
    /// No record, no usable identity, or no client IP.
    None,
    /// A transient DNS error.
    TempError,
    /// A record could not be interpreted or a limit was exceeded.
    PermError,
}

impl SpfResult {
    /// The RFC 8601 result word.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// Which identity SPF checked (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfScope {
    /// The MAIL FROM domain.
    MailFrom,
    /// The HELO/EHLO name (for a null reverse-path: `postmaster@<HELO>`).
    Helo,
}

impl SpfScope {
    /// `"mfrom"` or `"helo"` (the RFC 9990 report words).
    pub fn as_str(self) -> &'static str {
        match self {
            SpfScope::MailFrom => "mfrom",
            SpfScope::Helo => "helo",
        }
    }
}

/// The SPF check of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    /// The result.
    pub result: SpfResult,
    /// The domain checked (empty when there was none).
    pub domain: String,
    /// The identity checked.
    pub scope: SpfScope,
    /// Why, when the result needs explaining: no client IP, no identity,
    /// or what made it a `permerror` or `temperror` (two records, a limit,
    /// a syntax error, a lookup that failed). The full reason of every
    /// result is in the decision trail.
    pub reason: Option<String>,
    /// The SPF record of the domain checked, as published (its strings
    /// joined), when one was selected: RFC 9991's `SPF-DNS`.
    pub record: Option<String>,
}

/// DKIM results (RFC 8601 §2.7.1 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DkimResult {
    /// The signature verified.
    Pass,
    /// The signature or the body hash failed verification (or the key is
    /// too short, RFC 8301).
    Fail,
    /// Malformed, expired, or otherwise not able to be processed.
    Neutral,
    /// Verified, but not acceptable to local policy (rsa-sha1, RFC 8301).
    Policy,
    /// A transient DNS error fetching the key.
    TempError,
    /// The signature cannot be verified, ever: From not signed, `i=`
    /// outside `d=`, or the key record is missing, invalid, revoked or
    /// unsuitable for `a=`.
    PermError,
}

impl DkimResult {
    /// The RFC 8601 result word.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::Policy => "policy",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

/// One DKIM signature's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    /// The result.
    pub result: DkimResult,
    /// `d=`, lower case (empty for a header too malformed to read).
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `a=`: `rsa-sha256`, `rsa-sha1`, `ed25519-sha256`, or another name.
    pub algorithm: String,
    /// Key size in bits, for a signature that verified: Ed25519 256; RSA
    /// the modulus size, exact when it was read from the key record, else
    /// from the signature length (which equals the modulus length in octets
    /// for a valid signature, RFC 8017 §8.2.2). `None` for a signature that
    /// did not verify: its `b=` says nothing about the key.
    pub key_bits: Option<u32>,
    /// The first 8 characters of `b=` (RFC 6008 `header.b`).
    pub b_prefix: String,
    /// Why it did not pass, when known.
    pub reason: Option<String>,
    /// Whether the body hash (`bh=`) matched the body: `None` when it was
    /// not computed (a header too malformed to check, an expired or set
    /// aside signature). A `temperror` with `Some(false)` could never have
    /// passed, so it does not make DMARC a temperror.
    pub body_hash: Option<bool>,
}

impl DkimCheck {
    /// True when a successful DNS answer could have made this signature
    /// pass: a `temperror` (the key could not be fetched) whose body hash
    /// was not found wrong.
    pub fn could_pass_with_dns(&self) -> bool {
        self.result == DkimResult::TempError && self.body_hash != Some(false)
    }
}

/// DMARC results (RFC 9989 §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmarcResult {
    /// An aligned identifier passed.
    Pass,
    /// A policy exists and no aligned identifier passed.
    Fail,
    /// No policy applies.
    None,
    /// A transient error (DNS) prevented a conclusion.
    TempError,
    /// An unrecoverable error: unusable record or unusable From.
    PermError,
}

impl DmarcResult {
    /// The RFC 8601 result word.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::None => "none",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

impl DmarcResult {
    /// The overall result of several evaluations: fail if any failed, then
    /// temperror, permerror, pass, none.
    pub(crate) fn overall(evaluations: &[Evaluation]) -> DmarcResult {
        let order = [
            DmarcResult::Fail,
            DmarcResult::TempError,
            DmarcResult::PermError,
            DmarcResult::Pass,
        ];
        order
            .into_iter()
            .find(|r| evaluations.iter().any(|e| e.result == *r))
            .unwrap_or(DmarcResult::None)
    }
}

/// The DMARC evaluation of one Author Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The Author Domain (A-label, lower case).
    pub author_domain: String,
    /// The result.
    pub result: DmarcResult,
    /// How the record was looked for.
    pub discovery: DiscoveryMethod,
    /// Where the applied record was found.
    pub policy_domain: Option<String>,
    /// The Author Domain's Organizational Domain.
    pub org_domain: Option<String>,
    /// The applied record (with its raw text).
    pub record: Option<Arc<DmarcRecord>>,
    /// The policy before and after `pct` and `t`.
    pub policy: Option<AppliedPolicy>,
    /// The SPF domain's alignment, when SPF was checked against a domain.
    pub spf_alignment: Option<Alignment>,
    /// The alignment of each DKIM signature's `d=` (same order as the
    /// verdict's DKIM checks; `None` for a signature without a domain).
    pub dkim_alignments: Vec<Option<Alignment>>,
    /// True when SPF passed for an aligned domain.
    pub spf_aligned: bool,
    /// True when a DKIM signature passed for an aligned domain.
    pub dkim_aligned: bool,
    /// The disposition this evaluation asks for.
    pub disposition: Disposition,
    /// Why the disposition differs from the published policy.
    pub override_reason: Option<OverrideReason>,
    /// What the override of an indirect mail flow saw (`arc=pass i=2
    /// sealer=lists.example.org`): the one text the Authentication-Results
    /// comment, the verdict log line, the trail and the aggregate report's
    /// `<reason><comment>` show. `None` for the other reasons.
    pub override_comment: Option<String>,
    /// A short reason token for errors and special cases.
    pub reason: Option<String>,
    /// For a `temperror` caused by DNS: the first failure that decided it
    /// (name, kind, reason), for logs.
    pub dns_failure: Option<DnsFailure>,
}

impl Evaluation {
    /// The policies of the applied record as this evaluation's discovery
    /// method reads them ([`DmarcRecord::effective_policies`]): what the
    /// verdict applied, and what headers, trails and reports show.
    pub fn effective_policies(&self) -> Option<EffectivePolicies> {
        self.record.as_ref()?.effective_policies(self.discovery)
    }
}

/// Where PSL and tree-walk discovery disagreed for one Author Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDifference {
    /// The Author Domain.
    pub author_domain: String,
    /// The method in force and its policy domain and result.
    pub primary: (DiscoveryMethod, Option<String>, DmarcResult),
    /// The other method and its policy domain and result.
    pub shadow: (DiscoveryMethod, Option<String>, DmarcResult),
}

/// Everything the verifier concluded about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The SPF check.
    pub spf: SpfCheck,
    /// Every DKIM signature, in header order.
    pub dkim: Vec<DkimCheck>,
    /// The Author Domains, or why there are none usable.
    pub author_domains: Result<Vec<String>, FromError>,
    /// One evaluation per Author Domain.
    pub evaluations: Vec<Evaluation>,
    /// The index in `evaluations` of the one that decided the disposition.
    pub decisive: Option<usize>,
    /// The overall DMARC result.
    pub dmarc: DmarcResult,
    /// What to do with the message.
    pub disposition: Disposition,
    /// Why the disposition differs from the published policy.
    pub override_reason: Option<OverrideReason>,
    /// The decisive evaluation's [`Evaluation::override_comment`].
    pub override_comment: Option<String>,
    /// The ARC chain of the message (RFC 8617).
    pub arc: ArcCheck,
    /// The Authentication-Results header value (after the field name and
    /// colon, starting with the authserv-id, folded with LF and a tab).
    pub authentication_results: String,
    /// How the verdict was reached.
    pub trail: Vec<Step>,
    /// Shadow discovery differences (when enabled).
    pub shadow: Vec<ShadowDifference>,
}

impl Verdict {
    /// The evaluation that decided the disposition, if any.
    pub fn decisive_evaluation(&self) -> Option<&Evaluation> {
        self.decisive.and_then(|i| self.evaluations.get(i))
    }

    /// The full header line `Authentication-Results: ...` with the given
    /// line ending (`"\n"` for the milter protocol, `"\r\n"` for SMTP).
    pub fn authentication_results_header(&self, line_ending: &str) -> String {
        format!(
            "Authentication-Results: {}",
            self.authentication_results.replace('\n', line_ending)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_result_of_no_evaluation_is_none() {
        assert_eq!(DmarcResult::overall(&[]), DmarcResult::None);
    }
}
