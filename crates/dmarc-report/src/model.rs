//! What is recorded for each evaluated message: the facts an RFC 9990
//! aggregate report row needs (§3 and the schema of its Appendix A), and
//! nothing of the message itself.

use dmarc_verifier::{
    record::{AlignmentMode, PsdFlag},
    DiscoveryMethod, Disposition, DkimResult, DmarcResult, Envelope, OverrideReason, Policy,
    SpfResult, SpfScope, Verdict,
};
use serde::{Deserialize, Serialize};
use std::{fmt, net::IpAddr, str::FromStr};

/// The value of a word that does not belong to its set, when parsing the
/// text form of one of the enums of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// What was being parsed (`"disposition"`, `"policy"`...).
    pub kind: &'static str,
    /// The word found.
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.word)
    }
}

impl std::error::Error for UnknownWord {}

/// Declares a closed set of words with `as_str`, `Display` and `FromStr`.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// The word as it appears in reports and in the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(word: &str) -> Result<Self, UnknownWord> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { kind: $kind, word: word.to_string() }),
                }
            }
        }
    };
}

words! {
    /// A published policy (RFC 9990 `DispositionType`).
    PolicyWord, "policy" {
        /// `none`
        None = "none",
        /// `quarantine`
        Quarantine = "quarantine",
        /// `reject`
        Reject = "reject",
    }
}

words! {
    /// What was done with the message (RFC 9990 `ActionDispositionType`):
    /// `pass` is "no action, passing DMARC with an enforcing policy", `none`
    /// "no action taken".
    ActionDisposition, "disposition" {
        /// No action taken.
        None = "none",
        /// Passed DMARC under an enforcing policy.
        Pass = "pass",
        /// Quarantined.
        Quarantine = "quarantine",
        /// Rejected.
        Reject = "reject",
    }
}

words! {
    /// Identifier alignment mode (RFC 9990 `AlignmentType`).
    AlignmentWord, "alignment mode" {
        /// Relaxed.
        Relaxed = "r",
        /// Strict.
        Strict = "s",
    }
}

words! {
    /// How the record was found (RFC 9990 `DiscoveryType`).
    DiscoveryWord, "discovery method" {
        /// RFC 7489 with the Public Suffix List.
        Psl = "psl",
        /// RFC 9989 §4.10 DNS tree walk.
        TreeWalk = "treewalk",
    }
}

words! {
    /// The DMARC result of the message (RFC 8601 words).
    DmarcWord, "dmarc result" {
        /// pass
        Pass = "pass",
        /// fail
        Fail = "fail",
        /// none
        None = "none",
        /// temperror
        TempError = "temperror",
        /// permerror
        PermError = "permerror",
    }
}

words! {
    /// A DMARC-aligned authentication result (RFC 9990 `DMARCResultType`).
    AlignedWord, "aligned result" {
        /// An aligned identifier passed.
        Pass = "pass",
        /// No aligned identifier passed.
        Fail = "fail",
    }
}

words! {
    /// Why the disposition differs from the published policy (RFC 9990
    /// `PolicyOverrideType`).
    OverrideWord, "override reason" {
        /// Local policy.
        LocalPolicy = "local_policy",
        /// A mailing list.
        MailingList = "mailing_list",
        /// Anything else (including `pct` sampling, with a comment).
        Other = "other",
        /// `t=y`.
        PolicyTestMode = "policy_test_mode",
        /// A trusted forwarder.
        TrustedForwarder = "trusted_forwarder",
    }
}

words! {
    /// A DKIM result (RFC 9990 `DKIMResultType`, RFC 8601 §2.7.1).
    DkimWord, "dkim result" {
        /// none
        None = "none",
        /// pass
        Pass = "pass",
        /// fail
        Fail = "fail",
        /// policy
        Policy = "policy",
        /// neutral
        Neutral = "neutral",
        /// temperror
        TempError = "temperror",
        /// permerror
        PermError = "permerror",
    }
}

words! {
    /// An SPF result (RFC 9990 `SPFResultType`, RFC 8601 §2.7.2).
    SpfWord, "spf result" {
        /// none
        None = "none",
        /// pass
        Pass = "pass",
        /// fail
        Fail = "fail",
        /// softfail
        SoftFail = "softfail",
        /// policy
        Policy = "policy",
        /// neutral
        Neutral = "neutral",
        /// temperror
        TempError = "temperror",
        /// permerror
        PermError = "permerror",
    }
}

words! {
    /// The identity SPF checked. RFC 9990's schema knows only `mfrom`; a
    /// HELO check is reported without a scope.
    SpfScopeWord, "spf scope" {
        /// MAIL FROM.
        MailFrom = "mfrom",
        /// HELO (null reverse-path).
        Helo = "helo",
    }
}

/// One `rua`/`ruf` URI with its optional size limit (`!10m`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReportDestination {
    /// The URI, e.g. `mailto:dmarc@example.com`.
    pub uri: String,
    /// The size limit in bytes, when the record gave one.
    pub max_size: Option<u64>,
}

impl ReportDestination {
    /// The address of a `mailto:` URI (without `?headers`), or `None`.
    pub fn mailto_address(&self) -> Option<&str> {
        dmarc_verifier::record::mailto_address(&self.uri)
    }
}

/// The DMARC Policy Record applied to the message, as published
/// (RFC 9990 `PolicyPublishedType`, plus what the reporter needs: `pct`,
/// `psd`, `rua`, `ruf`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPolicy {
    /// The domain at which the record was found (the report's policy domain).
    pub domain: String,
    /// How it was found.
    pub discovery_method: DiscoveryWord,
    /// `p` (absent or invalid `p` with a valid `rua` reads as `none`,
    /// RFC 9989 §4.7).
    pub p: PolicyWord,
    /// `sp`, when published.
    pub sp: Option<PolicyWord>,
    /// `np`, when published.
    pub np: Option<PolicyWord>,
    /// `adkim` (default relaxed).
    pub adkim: AlignmentWord,
    /// `aspf` (default relaxed).
    pub aspf: AlignmentWord,
    /// `pct` (historic, RFC 7489 §6.3; 100 when absent).
    pub pct: u8,
    /// `fo` as the record gives it, e.g. `"0"`, `"1:d"`.
    pub fo: String,
    /// `t=y` (or the RFC 7489 reading of `pct` < 100 as test mode is not
    /// this: this is only the record's `t`).
    pub testing: bool,
    /// `psd=y`: never send failure reports for it (RFC 9991 §3).
    pub psd: bool,
    /// `rua` destinations.
    pub rua: Vec<ReportDestination>,
    /// `ruf` destinations.
    pub ruf: Vec<ReportDestination>,
}

/// One override reason with its comment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyOverride {
    /// The RFC 9990 type.
    pub kind: OverrideWord,
    /// A free-text comment (`"sampled out by pct=50"`).
    pub comment: Option<String>,
}

/// One DKIM signature's result (RFC 9990 `DKIMAuthResultType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DkimAuth {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The result.
    pub result: DkimWord,
    /// Extra detail (the A-R reason), when any.
    pub human_result: Option<String>,
}

/// The SPF result (RFC 9990 `SPFAuthResultType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpfAuth {
    /// The domain checked.
    pub domain: String,
    /// The identity checked.
    pub scope: SpfScopeWord,
    /// The result.
    pub result: SpfWord,
    /// Extra detail, when any.
    pub human_result: Option<String>,
}

/// Everything recorded about one evaluated message, for one Author Domain.
///
/// A message with a From of several domains gives one record per domain
/// that has a policy. No content of the message is kept: only the
/// identifiers and results RFC 9990 reports carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    /// When the message was evaluated, seconds since the Unix epoch (UTC).
    pub time: i64,
    /// The SMTP client's address.
    pub source_ip: IpAddr,
    /// The RFC 5322.From domain (the Author Domain).
    pub header_from: String,
    /// The RFC 5321.MailFrom domain (for `<>`, the HELO name), when known.
    pub envelope_from: Option<String>,
    /// The domain of the first envelope recipient, when known.
    pub envelope_to: Option<String>,
    /// The record applied; `None` when no DMARC record was found (such
    /// records are kept only when the configuration asks for them).
    pub policy: Option<PublishedPolicy>,
    /// The DMARC result.
    pub dmarc: DmarcWord,
    /// What was done with the message.
    pub disposition: ActionDisposition,
    /// Whether an aligned DKIM identifier passed.
    pub dkim_aligned: AlignedWord,
    /// Whether an aligned SPF identifier passed.
    pub spf_aligned: AlignedWord,
    /// Why the disposition differs from the published policy.
    pub reasons: Vec<PolicyOverride>,
    /// The SPF result.
    pub spf: Option<SpfAuth>,
    /// Every DKIM signature's result, in header order.
    pub dkim: Vec<DkimAuth>,
}

impl EvaluationRecord {
    /// The records of one verdict: one per evaluated Author Domain that has
    /// a policy (and, when `include_no_policy`, one per domain without).
    ///
    /// A verdict whose disposition is tempfail gives none: the message was
    /// not accepted, and its retry will be recorded.
    pub fn from_verdict(
        verdict: &Verdict,
        envelope: &Envelope,
        time: i64,
        include_no_policy: bool,
    ) -> Vec<EvaluationRecord> {
        let Some(source_ip) = envelope.client_ip else {
            return Vec::new();
        };
        if verdict.disposition == Disposition::Tempfail {
            return Vec::new();
        }
        let envelope_from = envelope
            .mail_from_domain()
            .map(str::to_ascii_lowercase)
            .or_else(|| (!envelope.helo.is_empty()).then(|| envelope.helo.to_ascii_lowercase()));
        let envelope_to = envelope
            .recipients
            .first()
            .and_then(|rcpt| rcpt.rsplit_once('@'))
            .map(|(_, domain)| domain.trim_end_matches('>').to_ascii_lowercase())
            .filter(|domain| !domain.is_empty());
        let spf = (!verdict.spf.domain.is_empty()).then(|| SpfAuth {
            domain: verdict.spf.domain.clone(),
            scope: match verdict.spf.scope {
                SpfScope::MailFrom => SpfScopeWord::MailFrom,
                SpfScope::Helo => SpfScopeWord::Helo,
            },
            result: spf_word(verdict.spf.result),
            human_result: verdict.spf.reason.clone(),
        });
        // A signature without d= (unparseable, or the summary of those set
        // aside by max_dkim_signatures) has nothing a report row can name.
        let dkim: Vec<DkimAuth> = verdict
            .dkim
            .iter()
            .filter(|check| !check.domain.is_empty())
            .map(|check| DkimAuth {
                domain: check.domain.clone(),
                selector: check.selector.clone(),
                result: dkim_word(check.result),
                human_result: check.reason.clone(),
            })
            .collect();

        let mut records = Vec::new();
        for evaluation in &verdict.evaluations {
            let policy = match (&evaluation.record, &evaluation.policy_domain) {
                (Some(record), Some(domain)) => {
                    Some(published(record, domain, evaluation.discovery))
                }
                _ => None,
            };
            if policy.is_none() && !include_no_policy {
                continue;
            }
            let dmarc = dmarc_word(evaluation.result);
            let enforcing = evaluation
                .policy
                .is_some_and(|applied| applied.published != Policy::None);
            let disposition = match evaluation.disposition {
                Disposition::Accept if dmarc == DmarcWord::Pass && enforcing => {
                    ActionDisposition::Pass
                }
                Disposition::Accept | Disposition::Tempfail => ActionDisposition::None,
                Disposition::Quarantine => ActionDisposition::Quarantine,
                Disposition::Reject => ActionDisposition::Reject,
            };
            let reasons = evaluation
                .override_reason
                .map(|reason| vec![override_of(reason, evaluation)])
                .unwrap_or_default();
            records.push(EvaluationRecord {
                time,
                source_ip,
                header_from: evaluation.author_domain.clone(),
                envelope_from: envelope_from.clone(),
                envelope_to: envelope_to.clone(),
                policy,
                dmarc,
                disposition,
                dkim_aligned: aligned(evaluation.dkim_aligned),
                spf_aligned: aligned(evaluation.spf_aligned),
                reasons,
                spf: spf.clone(),
                dkim: dkim.clone(),
            });
        }
        records
    }
}

fn aligned(pass: bool) -> AlignedWord {
    if pass {
        AlignedWord::Pass
    } else {
        AlignedWord::Fail
    }
}

fn override_of(reason: OverrideReason, evaluation: &dmarc_verifier::Evaluation) -> PolicyOverride {
    match reason {
        OverrideReason::SampledOut => PolicyOverride {
            kind: OverrideWord::Other,
            comment: Some(match evaluation.record.as_ref() {
                Some(record) => format!("sampled out by pct={}", record.pct()),
                None => "sampled out by pct".to_string(),
            }),
        },
        OverrideReason::PolicyTestMode => PolicyOverride {
            kind: OverrideWord::PolicyTestMode,
            comment: None,
        },
        // The comment of an override of an indirect mail flow is the one
        // the A-R and the verdict log line show.
        OverrideReason::LocalPolicy => PolicyOverride {
            kind: OverrideWord::LocalPolicy,
            comment: evaluation
                .override_comment
                .clone()
                .or_else(|| evaluation.reason.clone()),
        },
        OverrideReason::TrustedForwarder => PolicyOverride {
            kind: OverrideWord::TrustedForwarder,
            comment: evaluation.override_comment.clone(),
        },
        OverrideReason::MailingList => PolicyOverride {
            kind: OverrideWord::MailingList,
            comment: evaluation.override_comment.clone(),
        },
        OverrideReason::Other => PolicyOverride {
            kind: OverrideWord::Other,
            comment: evaluation.reason.clone(),
        },
    }
}

fn published(
    record: &dmarc_verifier::DmarcRecord,
    domain: &str,
    discovery: DiscoveryMethod,
) -> PublishedPolicy {
    let destinations = |uris: &[dmarc_verifier::record::ReportUri]| {
        uris.iter()
            .map(|uri| ReportDestination {
                uri: uri.uri.clone(),
                max_size: uri.max_size,
            })
            .collect()
    };
    // What the verifier applied under this discovery method (np is no RFC
    // 7489 tag: under PSL discovery it is not reported).
    let policies = record.effective_policies(discovery);
    PublishedPolicy {
        domain: domain.to_ascii_lowercase(),
        discovery_method: match discovery {
            DiscoveryMethod::Psl => DiscoveryWord::Psl,
            DiscoveryMethod::TreeWalk => DiscoveryWord::TreeWalk,
        },
        p: policies.map_or(PolicyWord::None, |p| policy_word(p.p)),
        sp: record.sp().valid().map(policy_word),
        np: match discovery {
            DiscoveryMethod::TreeWalk => record.np().valid().map(policy_word),
            DiscoveryMethod::Psl => None,
        },
        adkim: alignment_word(record.adkim()),
        aspf: alignment_word(record.aspf()),
        pct: record.pct(),
        fo: fo_text(record),
        testing: record.testing(),
        psd: record.psd() == PsdFlag::Yes,
        rua: destinations(record.rua()),
        ruf: destinations(record.ruf()),
    }
}

fn fo_text(record: &dmarc_verifier::DmarcRecord) -> String {
    let fo = record.fo();
    let mut parts = Vec::new();
    if fo.all_fail {
        parts.push("0");
    }
    if fo.any_fail {
        parts.push("1");
    }
    if fo.dkim {
        parts.push("d");
    }
    if fo.spf {
        parts.push("s");
    }
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join(":")
    }
}

fn policy_word(policy: Policy) -> PolicyWord {
    match policy {
        Policy::None => PolicyWord::None,
        Policy::Quarantine => PolicyWord::Quarantine,
        Policy::Reject => PolicyWord::Reject,
    }
}

fn alignment_word(mode: AlignmentMode) -> AlignmentWord {
    match mode {
        AlignmentMode::Relaxed => AlignmentWord::Relaxed,
        AlignmentMode::Strict => AlignmentWord::Strict,
    }
}

fn dmarc_word(result: DmarcResult) -> DmarcWord {
    match result {
        DmarcResult::Pass => DmarcWord::Pass,
        DmarcResult::Fail => DmarcWord::Fail,
        DmarcResult::None => DmarcWord::None,
        DmarcResult::TempError => DmarcWord::TempError,
        DmarcResult::PermError => DmarcWord::PermError,
    }
}

fn spf_word(result: SpfResult) -> SpfWord {
    match result {
        SpfResult::Pass => SpfWord::Pass,
        SpfResult::Fail => SpfWord::Fail,
        SpfResult::SoftFail => SpfWord::SoftFail,
        SpfResult::Neutral => SpfWord::Neutral,
        SpfResult::None => SpfWord::None,
        SpfResult::TempError => SpfWord::TempError,
        SpfResult::PermError => SpfWord::PermError,
    }
}

fn dkim_word(result: DkimResult) -> DkimWord {
    match result {
        DkimResult::Pass => DkimWord::Pass,
        DkimResult::Fail => DkimWord::Fail,
        DkimResult::Neutral => DkimWord::Neutral,
        DkimResult::Policy => DkimWord::Policy,
        DkimResult::TempError => DkimWord::TempError,
        DkimResult::PermError => DkimWord::PermError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_their_text() {
        for word in ["none", "pass", "quarantine", "reject"] {
            assert_eq!(word.parse::<ActionDisposition>().unwrap().as_str(), word);
        }
        assert_eq!(
            "treewalk".parse::<DiscoveryWord>(),
            Ok(DiscoveryWord::TreeWalk)
        );
        assert!("tree-walk".parse::<DiscoveryWord>().is_err());
        assert_eq!(
            serde_json::to_string(&OverrideWord::PolicyTestMode).unwrap(),
            "\"policy_test_mode\""
        );
    }

    #[test]
    fn mailto_address_drops_headers_and_needs_an_at() {
        let dest = |uri: &str| ReportDestination {
            uri: uri.to_string(),
            max_size: None,
        };
        assert_eq!(
            dest("mailto:rua@example.com?subject=x").mailto_address(),
            Some("rua@example.com")
        );
        assert_eq!(
            dest("MAILTO:a@b.example").mailto_address(),
            Some("a@b.example")
        );
        assert_eq!(dest("https://example.com/").mailto_address(), None);
        assert_eq!(dest("mailto:nobody").mailto_address(), None);
    }
}
