//! What is recorded for each evaluated message: the facts an RFC 9990
//! aggregate report row needs (§3 and the schema of its Appendix A), and
//! nothing of the message itself.
//!
//! # Bounded and normal
//!
//! Much of a record comes from the sender (DKIM `d=` and `s=`) or from
//! the DNS of the domain the sender claims (the policy and its `rua` and
//! `ruf` lists). [`EvaluationRecord::normalized`] gives every record one
//! form of bounded size, and every record is stored in that form:
//!
//! - domains in lower case; a domain that is not a domain name by length
//!   (a label over 63 octets, or over 253 in all) is dropped: a DKIM
//!   result with such a `d=` is left out, such an envelope domain is
//!   unknown, such an SPF domain leaves no SPF result;
//! - a DKIM selector of that kind (or with white space or control
//!   characters) is not a selector: it is stored empty;
//! - reason texts (`human_result`, override comments) are cut at
//!   [`MAX_TEXT_CHARS`] characters;
//! - DKIM results in report order (RFC 9990 §3.1.3), at most
//!   [`MAX_DKIM_PER_ROW`](crate::aggregate::MAX_DKIM_PER_ROW);
//! - `rua` and `ruf` as [`crate::destination::normalize`] makes them:
//!   usable `mailto:` addresses only, in lower case, each once, at most
//!   [`MAX_STORED_DESTINATIONS`] (the milter caps them lower, see
//!   [`RecordOptions`]);
//! - the client address canonical (an IPv4-mapped IPv6 address is the
//!   IPv4 address).
//!
//! Normal records that report the same facts are equal, so the store can
//! group them into report rows itself.

use crate::destination;
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

/// The longest reason text kept (`human_result`, override comments), in
/// characters.
pub const MAX_TEXT_CHARS: usize = 256;

/// The most `rua` or `ruf` destinations a stored record keeps, whatever
/// the caller asked ([`RecordOptions`] is usually much lower).
pub const MAX_STORED_DESTINATIONS: usize = 100;

/// How [`EvaluationRecord::from_verdict`] makes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Also make a record for an Author Domain without a DMARC record.
    pub include_no_policy: bool,
    /// The most `rua` destinations kept per record (default
    /// [`destination::DEFAULT_MAX_RUA`]).
    pub max_rua: usize,
    /// The most `ruf` destinations kept per record (default
    /// [`destination::DEFAULT_MAX_RUF`]).
    pub max_ruf: usize,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            include_no_policy: false,
            max_rua: destination::DEFAULT_MAX_RUA,
            max_ruf: destination::DEFAULT_MAX_RUF,
        }
    }
}

/// What was done with the message, when it differs from what the verdict
/// asked: the record says what was done (RFC 9990 `policy_evaluated`
/// "disposition": the action applied), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The disposition applied to the message as a whole.
    pub disposition: Disposition,
    /// Why it differs from what an evaluation asked (for example
    /// `local_policy` "dry run"); `None` reads as `local_policy` without a
    /// comment.
    pub reason: Option<PolicyOverride>,
}

/// The records of one message, with what normalising them left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRecords {
    /// One record per evaluated Author Domain (see
    /// [`EvaluationRecord::from_verdict`]).
    pub records: Vec<EvaluationRecord>,
    /// `rua` and `ruf` destinations left out: unusable, repeated or over
    /// the caps of [`RecordOptions`].
    pub destinations_dropped: usize,
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
    /// a policy (and, with [`RecordOptions::include_no_policy`], one per
    /// domain without), each [normalised](EvaluationRecord::normalized),
    /// its `rua` and `ruf` capped at the options' limits.
    ///
    /// With `applied`, each record's disposition is what was done with the
    /// message (dry run, a message too large to verify, the MTA without a
    /// quarantine action, another Author Domain's stricter policy); where
    /// that differs from what the evaluation asked, the reason is added.
    ///
    /// A verdict whose disposition (or `applied`) is tempfail gives none:
    /// the message was not accepted, and its retry will be recorded.
    pub fn from_verdict(
        verdict: &Verdict,
        envelope: &Envelope,
        time: i64,
        options: &RecordOptions,
        applied: Option<&Applied>,
    ) -> MessageRecords {
        let mut out = MessageRecords::default();
        let Some(source_ip) = envelope.client_ip else {
            return out;
        };
        let done = applied.map_or(verdict.disposition, |applied| applied.disposition);
        if verdict.disposition == Disposition::Tempfail || done == Disposition::Tempfail {
            return out;
        }
        let envelope_from = envelope
            .mail_from_domain()
            .map(str::to_string)
            .or_else(|| (!envelope.helo.is_empty()).then(|| envelope.helo.clone()));
        let envelope_to = envelope
            .recipients
            .first()
            .and_then(|rcpt| rcpt.rsplit_once('@'))
            .map(|(_, domain)| domain.trim_end_matches('>').to_string())
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

        for evaluation in &verdict.evaluations {
            let policy = match (&evaluation.record, &evaluation.policy_domain) {
                (Some(record), Some(domain)) => {
                    Some(published(record, domain, evaluation.discovery))
                }
                _ => None,
            };
            if policy.is_none() && !options.include_no_policy {
                continue;
            }
            let policy = policy.map(|mut policy| {
                let (rua, rua_dropped) = destination::normalize(&policy.rua, options.max_rua);
                let (ruf, ruf_dropped) = destination::normalize(&policy.ruf, options.max_ruf);
                out.destinations_dropped += rua_dropped + ruf_dropped;
                policy.rua = rua;
                policy.ruf = ruf;
                policy
            });
            let dmarc = dmarc_word(evaluation.result);
            let enforcing = evaluation
                .policy
                .is_some_and(|applied| applied.published != Policy::None);
            let action = |disposition: Disposition| match disposition {
                Disposition::Accept if dmarc == DmarcWord::Pass && enforcing => {
                    ActionDisposition::Pass
                }
                Disposition::Accept | Disposition::Tempfail => ActionDisposition::None,
                Disposition::Quarantine => ActionDisposition::Quarantine,
                Disposition::Reject => ActionDisposition::Reject,
            };
            let mut reasons: Vec<PolicyOverride> = evaluation
                .override_reason
                .map(|reason| vec![override_of(reason, evaluation)])
                .unwrap_or_default();
            let disposition = match applied {
                Some(applied) if applied.disposition != evaluation.disposition => {
                    reasons.push(applied.reason.clone().unwrap_or(PolicyOverride {
                        kind: OverrideWord::LocalPolicy,
                        comment: None,
                    }));
                    action(applied.disposition)
                }
                _ => action(evaluation.disposition),
            };
            out.records.push(
                EvaluationRecord {
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
                }
                .normalized(),
            );
        }
        out
    }

    /// The record in its one normal, bounded form (see the module
    /// documentation); normalising twice changes nothing.
    pub fn normalized(mut self) -> EvaluationRecord {
        self.source_ip = self.source_ip.to_canonical();
        self.header_from = cap_chars(&self.header_from.to_ascii_lowercase(), 253);
        self.envelope_from = self.envelope_from.as_deref().and_then(domain_name);
        self.envelope_to = self.envelope_to.as_deref().and_then(domain_name);
        if let Some(policy) = self.policy.take() {
            self.policy = Some(policy.normalized());
        }
        for reason in &mut self.reasons {
            reason.comment = reason
                .comment
                .as_deref()
                .map(|c| cap_chars(c, MAX_TEXT_CHARS));
        }
        self.spf = self.spf.take().and_then(|spf| {
            Some(SpfAuth {
                domain: domain_name(&spf.domain)?,
                human_result: spf.human_result.map(|h| cap_chars(&h, MAX_TEXT_CHARS)),
                ..spf
            })
        });
        let mut dkim: Vec<DkimAuth> = std::mem::take(&mut self.dkim)
            .into_iter()
            .filter_map(|dkim| {
                Some(DkimAuth {
                    domain: domain_name(&dkim.domain)?,
                    selector: selector(&dkim.selector),
                    result: dkim.result,
                    human_result: dkim.human_result.map(|h| cap_chars(&h, MAX_TEXT_CHARS)),
                })
            })
            .collect();
        // RFC 9990 §3.1.3: passing signatures of the Author Domain first
        // (exact, then parent or child), then other passes, then the rest;
        // then by content, so the header order of the signatures does not
        // make two records (or two report rows) of the same facts.
        let header_from = self.header_from.clone();
        dkim.sort_by(|a, b| {
            dkim_rank(a, &header_from)
                .cmp(&dkim_rank(b, &header_from))
                .then_with(|| a.cmp(b))
        });
        dkim.truncate(crate::aggregate::MAX_DKIM_PER_ROW);
        self.dkim = dkim;
        self
    }

    /// An estimate of the memory the record holds (its size and the heap
    /// blocks it owns), for queues bounded in bytes.
    pub fn memory_size(&self) -> usize {
        let text = |s: &str| s.len();
        let opt = |s: &Option<String>| s.as_deref().map_or(0, text);
        let policy = self.policy.as_ref().map_or(0, |policy| {
            std::mem::size_of::<PublishedPolicy>()
                + policy.domain.len()
                + policy.fo.len()
                + policy
                    .rua
                    .iter()
                    .chain(&policy.ruf)
                    .map(|d| std::mem::size_of::<ReportDestination>() + d.uri.len())
                    .sum::<usize>()
        });
        std::mem::size_of::<EvaluationRecord>()
            + self.header_from.len()
            + opt(&self.envelope_from)
            + opt(&self.envelope_to)
            + policy
            + self
                .reasons
                .iter()
                .map(|r| std::mem::size_of::<PolicyOverride>() + opt(&r.comment))
                .sum::<usize>()
            + self
                .spf
                .as_ref()
                .map_or(0, |spf| spf.domain.len() + opt(&spf.human_result))
            + self
                .dkim
                .iter()
                .map(|d| {
                    std::mem::size_of::<DkimAuth>()
                        + d.domain.len()
                        + d.selector.len()
                        + opt(&d.human_result)
                })
                .sum::<usize>()
    }
}

impl PublishedPolicy {
    /// The policy in normal form: its domain in lower case (at most 253
    /// characters), `rua` and `ruf` as [`destination::normalize`] makes
    /// them (at most [`MAX_STORED_DESTINATIONS`] each).
    pub fn normalized(mut self) -> PublishedPolicy {
        self.domain = cap_chars(&self.domain.to_ascii_lowercase(), 253);
        self.rua = destination::normalize(&self.rua, MAX_STORED_DESTINATIONS).0;
        self.ruf = destination::normalize(&self.ruf, MAX_STORED_DESTINATIONS).0;
        self
    }
}

/// At most `max` characters of `text`.
fn cap_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text.get(..at).unwrap_or(text).to_string(),
        None => text.to_string(),
    }
}

/// `name` in lower case, without a trailing dot, when it is a domain name
/// by length (RFC 1035 §2.3.4: labels of 1 to 63 octets, at most 253 in
/// all) and has no white space or control character; `None` otherwise.
fn domain_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| (1..=63).contains(&label.len()))
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| name.to_ascii_lowercase())
}

/// A DKIM selector (RFC 6376 §3.1: labels of a domain name) as given, or
/// empty when it is not one by length or holds white space or control
/// characters.
fn selector(selector: &str) -> String {
    let ok = !selector.is_empty()
        && selector.len() <= 253
        && selector
            .split('.')
            .all(|label| (1..=63).contains(&label.len()))
        && !selector
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if ok {
        selector.to_string()
    } else {
        String::new()
    }
}

/// RFC 9990 §3.1.3 preference, lower first. Relaxed alignment proper needs
/// the Organizational Domain; for ordering, a parent or child of the Author
/// Domain stands in for it.
fn dkim_rank(dkim: &DkimAuth, header_from: &str) -> u8 {
    match dkim.result {
        DkimWord::Pass if dkim.domain == header_from => 0,
        DkimWord::Pass if crate::aggregate::related_domains(&dkim.domain, header_from) => 1,
        DkimWord::Pass => 2,
        _ => 3,
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
