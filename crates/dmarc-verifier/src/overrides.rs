//! Local overrides for indirect mail flows (RFC 9989 §5.4: "apply other
//! knowledge and analysis to avoid ... rejection of legitimate messages";
//! RFC 9990's override types): what turns the reject of a message that
//! failed DMARC into something milder, and why.
//!
//! They apply only to an Author Domain whose DMARC result is `fail` (never
//! to `pass`, `none`, `temperror` or `permerror`), are tried in this order,
//! and the first whose condition holds wins:
//!
//! 1. **Trusted ARC sealer** (`trusted_forwarder`): the ARC chain passed,
//!    the newest set sealed by a domain of `trusted_arc_sealers` recorded,
//!    in its ARC-Authentication-Results, `dmarc=pass` for this Author Domain
//!    (or, without any `dmarc` result for it, an aligned `dkim=pass` or
//!    `spf=pass`) and no other DMARC result for it, its
//!    ARC-Message-Signature was made by the sealer's own domain and still
//!    verifies over the message as received, unexpired (a later hop may
//!    have changed the message: the chain still validates, but what the
//!    trusted hop vouched for is no longer this message), and the message
//!    holds no more of the fields a reader sees than it signed
//!    ([`crate::arc::ArcInstance::ams_added`]). Comment:
//!    `arc=pass i=<n> sealer=<domain>`.
//! 2. **Trusted forwarder** (`trusted_forwarder`): the SMTP client is in a
//!    network of `trusted_forwarders`, or a DKIM signature of a domain
//!    listed there as `dkim:<domain>` passed.
//! 3. **Mailing list** (`mailing_list`): exactly one `List-Id` field
//!    (RFC 2919) whose list identifier is a domain name, **and** a passing
//!    DKIM signature or SPF pass whose domain is relaxed-aligned (same
//!    Organizational Domain by the Public Suffix List) with it. A `List-Id`
//!    nothing authenticates is ignored: anyone can write that field.
//! 4. **Local policy** (`local_policy`): the Author Domain is listed in
//!    `policy_overrides`.
//!
//! An override never makes a disposition stricter: the result is the
//! milder of the policy's and the override's action. The reason (RFC 9990
//! word) and the comment are kept in the evaluation, where the
//! Authentication-Results comment, the verdict, the trail and aggregate
//! reports read them. The trail says, for every failing Author Domain, which
//! overrides were tried and why each did or did not apply.
//!
//! Alignment for the ARC-Authentication-Results and the `List-Id` uses the
//! Public Suffix List whatever the discovery method (no DNS question).

use crate::{
    arc::{AmsResult, ArcCheck, ArcResult},
    auth_results::{ParsedAuthResults, ResInfo},
    discovery::PublicSuffixList,
    message::normalize_domain,
    policy::{Disposition, OverrideReason},
    record::AlignmentMode,
    trail::Trail,
    verdict::{DkimCheck, DkimResult, DmarcResult, Evaluation, SpfCheck, SpfResult},
};
use ipnet::IpNet;
use std::{fmt, net::IpAddr, str::FromStr};

/// A trusted forwarder: a network of SMTP clients, or a DKIM signing
/// domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrustedForwarder {
    /// Mail from a client in this network (`"192.0.2.0/24"`, an address).
    Network(IpNet),
    /// Mail with a passing DKIM signature of exactly this domain
    /// (`"dkim:forwarder.example.net"`), a lower-case A-label.
    DkimDomain(String),
}

impl FromStr for TrustedForwarder {
    type Err = String;

    /// `IP`, `IP/LEN` or `dkim:DOMAIN`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(domain) = text.strip_prefix("dkim:") {
            return normalize_domain(domain)
                .map(TrustedForwarder::DkimDomain)
                .map_err(|_| format!("{domain:?} is not a domain name"));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(TrustedForwarder::Network(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|ip| TrustedForwarder::Network(IpNet::from(ip)))
            .map_err(|_| format!("{text:?} is not an IP address, a network or dkim:DOMAIN"))
    }
}

impl fmt::Display for TrustedForwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedForwarder::Network(net) => write!(f, "{net}"),
            TrustedForwarder::DkimDomain(domain) => write!(f, "dkim:{domain}"),
        }
    }
}

/// A local policy for one From domain (`[[policy_override]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyOverride {
    /// The Author Domain, a lower-case A-label (exact match).
    pub from_domain: String,
    /// What its failing mail gets: accept or quarantine.
    pub action: Disposition,
}

/// The overrides of a verifier ([`crate::VerifierConfig::overrides`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideConfig {
    /// ARC sealers (`d=` of the ARC-Seal, lower-case A-labels, exact match)
    /// whose recorded results are trusted (default: none).
    pub trusted_arc_sealers: Vec<String>,
    /// What a message vouched for by a trusted sealer gets (default accept).
    pub arc_override_action: Disposition,
    /// Trusted forwarders (default: none).
    pub trusted_forwarders: Vec<TrustedForwarder>,
    /// What mail from a trusted forwarder gets (default accept).
    pub trusted_forwarder_action: Disposition,
    /// What authenticated mailing-list mail gets; `None` turns the override
    /// off (default quarantine).
    pub mailing_list_action: Option<Disposition>,
    /// Local policies per From domain (default: none).
    pub policy_overrides: Vec<PolicyOverride>,
}

impl Default for OverrideConfig {
    fn default() -> Self {
        OverrideConfig {
            trusted_arc_sealers: Vec::new(),
            arc_override_action: Disposition::Accept,
            trusted_forwarders: Vec::new(),
            trusted_forwarder_action: Disposition::Accept,
            mailing_list_action: Some(Disposition::Quarantine),
            policy_overrides: Vec::new(),
        }
    }
}

impl OverrideConfig {
    /// The setting that is not valid, if any: an action other than accept
    /// or quarantine, or a domain that is not a lower-case A-label.
    pub(crate) fn invalid(&self) -> Option<(&'static str, String)> {
        let mild = |d: Disposition| matches!(d, Disposition::Accept | Disposition::Quarantine);
        let canonical = |d: &str| normalize_domain(d).is_ok_and(|n| n == d);
        if !mild(self.arc_override_action) {
            return Some(("arc_override_action", self.arc_override_action.to_string()));
        }
        if !mild(self.trusted_forwarder_action) {
            return Some((
                "trusted_forwarder_action",
                self.trusted_forwarder_action.to_string(),
            ));
        }
        if let Some(action) = self.mailing_list_action.filter(|a| !mild(*a)) {
            return Some(("mailing_list_action", action.to_string()));
        }
        if let Some(d) = self.trusted_arc_sealers.iter().find(|d| !canonical(d)) {
            return Some(("trusted_arc_sealers", d.clone()));
        }
        for forwarder in &self.trusted_forwarders {
            if let TrustedForwarder::DkimDomain(d) = forwarder {
                if !canonical(d) {
                    return Some(("trusted_forwarders", forwarder.to_string()));
                }
            }
        }
        for p in &self.policy_overrides {
            if !canonical(&p.from_domain) {
                return Some(("policy_override.from_domain", p.from_domain.clone()));
            }
            if !mild(p.action) {
                return Some(("policy_override.action", p.action.to_string()));
            }
        }
        None
    }
}

/// What the overrides look at besides the evaluation.
pub(crate) struct Facts<'a> {
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) spf: &'a SpfCheck,
    pub(crate) dkim: &'a [DkimCheck],
    pub(crate) arc: &'a ArcCheck,
    /// The raw values of the message's List-Id fields.
    pub(crate) list_ids: &'a [&'a [u8]],
}

/// An override whose condition holds: its action, reason and comment (and
/// more detail for the trail).
struct Applies {
    action: Disposition,
    reason: OverrideReason,
    comment: String,
    detail: Option<String>,
}

/// One override tried on one Author Domain.
type Tried = Result<Applies, String>;

/// Tries the overrides, in order, on every evaluation that failed DMARC.
pub(crate) fn apply(
    config: &OverrideConfig,
    psl: &PublicSuffixList,
    facts: &Facts<'_>,
    evaluations: &mut [Evaluation],
    trail: &Trail,
) {
    for evaluation in evaluations.iter_mut() {
        if evaluation.result != DmarcResult::Fail {
            continue;
        }
        let author = evaluation.author_domain.clone();
        let modes = evaluation
            .record
            .as_ref()
            .map_or((AlignmentMode::Relaxed, AlignmentMode::Relaxed), |r| {
                (r.adkim(), r.aspf())
            });
        let tries: [(&str, &dyn Fn() -> Tried); 4] = [
            ("trusted ARC sealer", &|| {
                trusted_sealer(config, psl, facts.arc, &author, modes)
            }),
            ("trusted forwarder", &|| trusted_forwarder(config, facts)),
            ("mailing list", &|| mailing_list(config, psl, facts)),
            ("local policy", &|| local_policy(config, &author)),
        ];
        for (name, attempt) in tries {
            match attempt() {
                Err(why) => trail
                    .decide_with(|| format!("override {name} for {author}: does not apply: {why}")),
                Ok(applies) => {
                    let current = evaluation.disposition;
                    let milder = mildest(current, applies.action);
                    let detail = applies
                        .detail
                        .as_ref()
                        .map(|d| format!("; {d}"))
                        .unwrap_or_default();
                    if milder == current {
                        trail.decide_with(|| {
                            format!(
                                "override {name} for {author} applies ({}: {}{detail}), but the disposition is already {current}",
                                applies.reason, applies.comment
                            )
                        });
                    } else {
                        trail.decide_with(|| {
                            format!(
                                "override {name} for {author}: {current} becomes {milder} ({}: {}{detail})",
                                applies.reason, applies.comment
                            )
                        });
                        evaluation.disposition = milder;
                        evaluation.override_reason = Some(applies.reason);
                        evaluation.override_comment = Some(applies.comment);
                    }
                    break;
                }
            }
        }
    }
}

/// The milder of two dispositions (accept < quarantine < reject).
fn mildest(a: Disposition, b: Disposition) -> Disposition {
    if b.severity() < a.severity() {
        b
    } else {
        a
    }
}

/// Override 1 of the module documentation.
fn trusted_sealer(
    config: &OverrideConfig,
    psl: &PublicSuffixList,
    arc: &ArcCheck,
    author: &str,
    (adkim, aspf): (AlignmentMode, AlignmentMode),
) -> Tried {
    if config.trusted_arc_sealers.is_empty() {
        return Err("no trusted_arc_sealers".to_string());
    }
    if arc.result != ArcResult::Pass {
        return Err(format!(
            "arc={}{}",
            arc.result.as_str(),
            arc.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let Some(set) = arc.newest_sealed_by(&config.trusted_arc_sealers) else {
        let sealers: Vec<&str> = arc.chain.iter().map(|s| s.sealer.as_str()).collect();
        return Err(format!(
            "no ARC set sealed by a trusted sealer (sealers: {})",
            sealers.join(", ")
        ));
    };
    let i = set.instance;
    if set.ams_domain != set.sealer {
        return Err(format!(
            "the ARC-Message-Signature of i={i} is by {}, not by its sealer {}",
            set.ams_domain, set.sealer
        ));
    }
    if set.ams != AmsResult::Pass {
        return Err(format!(
            "the ARC-Message-Signature of i={i} no longer verifies: the message changed after {} sealed it{}",
            set.sealer,
            set.ams_reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    if let Some(added) = &set.ams_added {
        return Err(format!(
            "the ARC-Message-Signature of i={i} verifies, but {added}: the message is more than {} sealed",
            set.sealer
        ));
    }
    let Some(results) = &set.results else {
        return Err(format!(
            "the ARC-Authentication-Results of i={i} does not parse"
        ));
    };
    let aligned = |identifier: &str, mode: AlignmentMode| match mode {
        AlignmentMode::Strict => identifier == author,
        AlignmentMode::Relaxed => {
            identifier == author || psl.org_domain(identifier) == psl.org_domain(author)
        }
    };
    match vouches(results, author, aligned, adkim, aspf) {
        Ok(what) => Ok(Applies {
            action: config.arc_override_action,
            reason: OverrideReason::TrustedForwarder,
            comment: format!("arc=pass i={i} sealer={}", set.sealer),
            detail: Some(format!("i={i} recorded {what}")),
        }),
        Err(why) => Err(format!("i={i} sealed by {}: {why}", set.sealer)),
    }
}

/// What in a trusted hop's results vouches for `author`: its `dmarc=pass`
/// for it, or without any DMARC result for it an aligned `dkim=pass` or
/// `spf=pass`; an error when it recorded a DMARC failure for it or nothing
/// that passed.
fn vouches(
    results: &ParsedAuthResults,
    author: &str,
    aligned: impl Fn(&str, AlignmentMode) -> bool,
    adkim: AlignmentMode,
    aspf: AlignmentMode,
) -> Result<String, String> {
    let domain_of = |info: &ResInfo, ptype: &str, property: &str| -> Option<String> {
        let value = info
            .props
            .iter()
            .find(|p| p.ptype.eq_ignore_ascii_case(ptype) && p.property == property)?;
        let domain = value.value.rsplit('@').next()?;
        normalize_domain(domain).ok()
    };
    let dmarc: Vec<&ResInfo> = results
        .results
        .iter()
        .filter(|r| r.method == "dmarc")
        .filter(|r| domain_of(r, "header", "from").as_deref() == Some(author))
        .collect();
    if let Some(other) = dmarc.iter().find(|r| r.result != "pass") {
        return Err(format!("it saw dmarc={} for {author}", other.result));
    }
    if !dmarc.is_empty() {
        return Ok(format!("dmarc=pass header.from={author}"));
    }
    for info in &results.results {
        if info.result != "pass" {
            continue;
        }
        let found = match info.method.as_str() {
            // Gmail writes header.i (`@example.com`) rather than header.d.
            "dkim" => domain_of(info, "header", "d")
                .or_else(|| domain_of(info, "header", "i"))
                .filter(|d| aligned(d, adkim)),
            "spf" => domain_of(info, "smtp", "mailfrom").filter(|d| aligned(d, aspf)),
            _ => None,
        };
        if let Some(domain) = found {
            return Ok(format!("{}=pass for aligned {domain}", info.method));
        }
    }
    Err(format!(
        "it recorded no dmarc=pass, aligned dkim=pass or aligned spf=pass for {author}"
    ))
}

/// Override 2 of the module documentation.
fn trusted_forwarder(config: &OverrideConfig, facts: &Facts<'_>) -> Tried {
    if config.trusted_forwarders.is_empty() {
        return Err("no trusted_forwarders".to_string());
    }
    let client = facts.client_ip.map(|ip| match ip {
        // An IPv4-mapped IPv6 address is the IPv4 client.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    });
    for forwarder in &config.trusted_forwarders {
        let comment = match forwarder {
            TrustedForwarder::Network(net) => client
                .filter(|ip| net.contains(ip))
                .map(|ip| format!("client={ip} in {net}")),
            TrustedForwarder::DkimDomain(domain) => facts
                .dkim
                .iter()
                .any(|c| c.result == DkimResult::Pass && c.domain == *domain)
                .then(|| format!("dkim=pass header.d={domain}")),
        };
        if let Some(comment) = comment {
            return Ok(Applies {
                action: config.trusted_forwarder_action,
                reason: OverrideReason::TrustedForwarder,
                comment,
                detail: None,
            });
        }
    }
    Err(format!(
        "the client {} and the passing DKIM domains [{}] are not listed",
        client.map_or_else(|| "(unknown)".to_string(), |ip| ip.to_string()),
        facts
            .dkim
            .iter()
            .filter(|c| c.result == DkimResult::Pass)
            .map(|c| c.domain.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Override 3 of the module documentation.
fn mailing_list(config: &OverrideConfig, psl: &PublicSuffixList, facts: &Facts<'_>) -> Tried {
    let Some(action) = config.mailing_list_action else {
        return Err("mailing_list_action is off".to_string());
    };
    let value = match facts.list_ids {
        [] => return Err("no List-Id field".to_string()),
        [one] => *one,
        several => {
            return Err(format!(
                "{} List-Id fields (RFC 2919 allows one)",
                several.len()
            ))
        }
    };
    let list_id = list_identifier(value)
        .ok_or("the List-Id has no <list-id> that is a domain name (RFC 2919 §2)")?;
    let list_org = psl.org_domain(&list_id);
    let passing_dkim = facts
        .dkim
        .iter()
        .filter(|c| c.result == DkimResult::Pass && !c.domain.is_empty())
        .find(|c| psl.org_domain(&c.domain) == list_org)
        .map(|c| format!("list-id={list_id} dkim=pass header.d={}", c.domain));
    let passing_spf = (facts.spf.result == SpfResult::Pass && !facts.spf.domain.is_empty())
        .then(|| normalize_domain(&facts.spf.domain).ok())
        .flatten()
        .filter(|d| psl.org_domain(d) == list_org)
        .map(|d| format!("list-id={list_id} spf=pass smtp.mailfrom={d}"));
    match passing_dkim.or(passing_spf) {
        Some(comment) => Ok(Applies {
            action,
            reason: OverrideReason::MailingList,
            comment,
            detail: None,
        }),
        None => Err(format!(
            "List-Id <{list_id}> is not authenticated: no DKIM or SPF pass aligned with it (anyone can write that field)"
        )),
    }
}

/// The list identifier of a List-Id value (RFC 2919 §2: `[phrase] "<"
/// list-label "." list-id-namespace ">"`), as a domain name.
///
/// Read as RFC 5322 tokens: quoted-strings and comments (nested, with
/// quoted-pairs) are skipped, so a `<...>` inside either is text, not the
/// identifier. Exactly one `<...>` outside them, with nothing but white
/// space and comments after it; anything else is no List-Id we can use.
fn list_identifier(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let mut chars = text.chars();
    let mut id: Option<String> = None;
    let mut after_id = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                if after_id {
                    return None;
                }
                loop {
                    match chars.next()? {
                        '\\' => {
                            chars.next()?;
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '(' => {
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next()? {
                        '\\' => {
                            chars.next()?;
                        }
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
            }
            '<' => {
                if id.is_some() {
                    return None;
                }
                let mut inner = String::new();
                loop {
                    match chars.next()? {
                        '>' => break,
                        c => inner.push(c),
                    }
                }
                id = Some(inner);
                after_id = true;
            }
            c if c.is_whitespace() => {}
            _ if after_id => return None,
            _ => {}
        }
    }
    let id = id?;
    let id = id.trim();
    // A list-label . namespace: at least two labels.
    if !id.contains('.') {
        return None;
    }
    normalize_domain(id).ok()
}

/// Override 4 of the module documentation.
fn local_policy(config: &OverrideConfig, author: &str) -> Tried {
    if config.policy_overrides.is_empty() {
        return Err("no policy_override".to_string());
    }
    config
        .policy_overrides
        .iter()
        .find(|p| p.from_domain == author)
        .map(|p| Applies {
            action: p.action,
            reason: OverrideReason::LocalPolicy,
            comment: format!("policy_override from_domain={author} action={}", p.action),
            detail: None,
        })
        .ok_or_else(|| format!("no policy_override for {author}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarders_parse() {
        assert_eq!(
            "192.0.2.7/24".parse::<TrustedForwarder>(),
            Ok(TrustedForwarder::Network("192.0.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            "2001:db8::1".parse::<TrustedForwarder>(),
            Ok(TrustedForwarder::Network(
                "2001:db8::1/128".parse().unwrap()
            ))
        );
        assert_eq!(
            "dkim:Forwarder.Example.NET".parse::<TrustedForwarder>(),
            Ok(TrustedForwarder::DkimDomain("forwarder.example.net".into()))
        );
        for bad in [
            "",
            "dkim:",
            "dkim:not a domain",
            "192.0.2.0/33",
            "example.net",
        ] {
            assert!(bad.parse::<TrustedForwarder>().is_err(), "{bad}");
        }
    }

    #[test]
    fn list_identifiers_follow_rfc2919() {
        let cases: &[(&str, Option<&str>)] = &[
            ("<dev.lists.example.org>", Some("dev.lists.example.org")),
            (
                " Developers <Dev.Lists.Example.ORG>",
                Some("dev.lists.example.org"),
            ),
            ("\"a <b.c>\" <dev.example.org>", Some("dev.example.org")),
            ("dev.lists.example.org", None),
            ("<localhost>", None),
            ("<a b.example.org>", None),
            ("<>", None),
            // Angle brackets inside a comment or a quoted-string are text
            // (found by review: the identifier was taken from the comment).
            (
                "Example Corp <announce.example.com> (<news.attacker.example>)",
                Some("announce.example.com"),
            ),
            (
                "(<news.attacker.example>) <announce.example.com>",
                Some("announce.example.com"),
            ),
            (
                "\"x \\\" <news.attacker.example>\" <announce.example.com>",
                Some("announce.example.com"),
            ),
            ("Corp <a.example.com> <b.example.com>", None),
            ("<a.example.com> trailing", None),
            ("<a.example.com", None),
            ("(unclosed <a.example.com>", None),
        ];
        for &(value, expected) in cases {
            assert_eq!(
                list_identifier(value.as_bytes()).as_deref(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn what_a_trusted_hop_recorded_vouches_or_not() {
        use crate::auth_results::parse_lenient;
        let psl = PublicSuffixList::bundled();
        let check = |aar: &str, mode: AlignmentMode| {
            let results = parse_lenient(aar).unwrap();
            let aligned = |identifier: &str, mode: AlignmentMode| match mode {
                AlignmentMode::Strict => identifier == "example.com",
                AlignmentMode::Relaxed => {
                    psl.org_domain(identifier) == psl.org_domain("example.com")
                }
            };
            vouches(&results, "example.com", aligned, mode, mode)
        };
        use AlignmentMode::{Relaxed, Strict};
        let cases: &[(&str, AlignmentMode, bool)] = &[
            // Gmail: dmarc=pass, dkim with header.i.
            ("mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=abc; spf=pass smtp.mailfrom=bounce@mail.example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com", Relaxed, true),
            // Microsoft 365: a property without a ptype.
            ("mx.microsoft.com 1; spf=fail smtp.mailfrom=example.com; dmarc=pass action=none header.from=example.com; dkim=pass header.d=example.com", Relaxed, true),
            // Upper case and a trailing dot in header.from.
            ("lists.example.org; dmarc=pass header.from=EXAMPLE.COM.", Relaxed, true),
            // The hop saw a DMARC failure: an aligned dkim=pass changes nothing.
            ("lists.example.org; dkim=pass header.d=example.com; dmarc=fail header.from=example.com", Relaxed, false),
            ("lists.example.org; dmarc=pass header.from=example.com; dmarc=temperror header.from=example.com", Relaxed, false),
            // DMARC of another domain says nothing about ours.
            ("lists.example.org; dmarc=pass header.from=example.net", Relaxed, false),
            // No DMARC result: aligned DKIM or SPF passes vouch.
            ("lists.example.org; dkim=pass header.d=mail.example.com", Relaxed, true),
            ("lists.example.org; dkim=pass header.d=mail.example.com", Strict, false),
            ("lists.example.org; spf=pass smtp.mailfrom=bounce@example.com", Strict, true),
            ("lists.example.org; spf=pass smtp.mailfrom=example.net", Relaxed, false),
            ("lists.example.org; dkim=fail header.d=example.com; spf=softfail smtp.mailfrom=example.com", Relaxed, false),
            ("lists.example.org; none", Relaxed, false),
            // A value that merely mentions our domain is not a result for it.
            ("lists.example.org; dkim=pass reason=\"header.d=example.com\" header.d=evil.example", Relaxed, false),
        ];
        for &(aar, mode, expected) in cases {
            assert_eq!(check(aar, mode).is_ok(), expected, "{aar} ({mode:?})");
        }
    }

    #[test]
    fn trusted_forwarders_by_network_mapped_address_and_passing_dkim_only() {
        let config = OverrideConfig {
            trusted_forwarders: vec![
                "192.0.2.0/24".parse().unwrap(),
                "dkim:forwarder.example.net".parse().unwrap(),
            ],
            ..OverrideConfig::default()
        };
        let spf = SpfCheck {
            result: SpfResult::Fail,
            domain: "example.com".into(),
            scope: crate::verdict::SpfScope::MailFrom,
            reason: None,
            record: None,
        };
        let dkim = |result: DkimResult, domain: &str| DkimCheck {
            result,
            domain: domain.into(),
            selector: "s".into(),
            algorithm: "rsa-sha256".into(),
            key_bits: None,
            b_prefix: String::new(),
            reason: None,
            body_hash: None,
        };
        let arc = ArcCheck::none();
        let cases: Vec<(&str, Vec<DkimCheck>, Option<&str>)> = vec![
            (
                "192.0.2.7",
                vec![],
                Some("client=192.0.2.7 in 192.0.2.0/24"),
            ),
            (
                "::ffff:192.0.2.7",
                vec![],
                Some("client=192.0.2.7 in 192.0.2.0/24"),
            ),
            ("192.0.3.7", vec![], None),
            (
                "203.0.113.1",
                vec![dkim(DkimResult::Pass, "forwarder.example.net")],
                Some("dkim=pass header.d=forwarder.example.net"),
            ),
            (
                "203.0.113.1",
                vec![dkim(DkimResult::Fail, "forwarder.example.net")],
                None,
            ),
            (
                "203.0.113.1",
                vec![dkim(DkimResult::Pass, "sub.forwarder.example.net")],
                None,
            ),
            (
                "203.0.113.1",
                vec![dkim(DkimResult::Pass, "example.net")],
                None,
            ),
        ];
        for (ip, checks, expected) in cases {
            let facts = Facts {
                client_ip: Some(ip.parse().unwrap()),
                spf: &spf,
                dkim: &checks,
                arc: &arc,
                list_ids: &[],
            };
            let got = trusted_forwarder(&config, &facts).ok().map(|a| a.comment);
            assert_eq!(got.as_deref(), expected, "{ip}");
        }
    }

    #[test]
    fn overrides_never_make_a_disposition_stricter() {
        use Disposition::*;
        assert_eq!(mildest(Reject, Accept), Accept);
        assert_eq!(mildest(Reject, Quarantine), Quarantine);
        assert_eq!(mildest(Quarantine, Quarantine), Quarantine);
        assert_eq!(mildest(Accept, Quarantine), Accept);
    }
}
