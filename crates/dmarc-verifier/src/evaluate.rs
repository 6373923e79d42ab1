//! DMARC for one Author Domain: the policy record, identifier alignment,
//! the policy in force, and which DNS failures can matter.
//!
//! # Which DNS failures can matter
//!
//! A DNS failure may turn the result into `temperror` only if a successful
//! answer could have changed the verdict. Senders control the DNS of their
//! own domains, so a failure they can cause on a name that cannot change
//! the outcome must not turn a forgery into a `tempfail`. Lookup by lookup:
//!
//! | lookup | when its failure matters |
//! |---|---|
//! | `_dmarc.<author>`, then the Organizational Domain's (PSL) or the tree walk's names (discovery) | always: they decide which policy applies — except when an identifier that passed *is* the Author Domain (aligned in every mode, whatever the record says: the result is pass or none, accept either way) |
//! | a name that cannot be asked about (`_dmarc.<name>` over 255 octets, an empty label) | never: such a name has no record (RFC 9989 §4.10.1, RFC 7489 §6.6.3) and discovery goes on |
//! | tree walk names above an Author Domain that has its own record | only for the Organizational Domain, so only for relaxed alignment of an identifier that shares a parent with the Author Domain |
//! | the tree walk of an authenticated identifier (relaxed alignment) | only when the identifier is the Author Domain's Organizational Domain or below it: any other identifier's Organizational Domain is a different name, whatever its walk finds (RFC 9989 §4.10.2, §5.3.6), so it is not looked up at all |
//! | the SPF or DKIM check of an identifier aligned with the Author Domain | when a successful answer could have made it pass: SPF temperror; a DKIM temperror whose body hash did not fail ([`DkimCheck::could_pass_with_dns`]) |
//! | `A <author>` for `np` (RFC 8020) | only when `np` and `sp` differ and the message fails |
//!
//! Temporary errors only ever come from transient failures (timeouts,
//! SERVFAIL): RFC 9989 §9.2.

use crate::{
    alignment::Alignment,
    config::{TempErrorAction, VerifierConfig},
    discovery::{self, Discovered, DiscoveryMethod, PublicSuffixList},
    dns::{Dns, DnsFailure},
    message::FromError,
    policy::{apply_pct_and_t, Disposition, OverrideReason, PolicySource},
    record::AlignmentMode,
    trail::Trail,
    verdict::{DkimCheck, DkimResult, DmarcResult, Evaluation, SpfCheck, SpfResult},
};

/// Evaluates Author Domains for one verifier.
pub(crate) struct Evaluator<'a> {
    pub(crate) dns: &'a Dns,
    pub(crate) psl: &'a PublicSuffixList,
    pub(crate) config: &'a VerifierConfig,
}

/// An identifier that passed, or might have passed, and what a failure to
/// judge its alignment would mean.
struct Candidate<'a> {
    /// The SPF domain or DKIM `d=`.
    domain: &'a str,
    /// What the trail calls it: "SPF pass for example.com".
    what: String,
    /// True when it passed; false when a DNS answer might have made it pass.
    passed: bool,
    /// The temperror to report if it is aligned but did not pass.
    temperror: (&'static str, TempErrorAction),
    /// Where its alignment goes in the evaluation.
    slot: Slot,
}

#[derive(Clone, Copy)]
enum Slot {
    Spf,
    Dkim(usize),
}

impl Evaluator<'_> {
    /// Asks, at once with SPF and DKIM, for `_dmarc.<author>` (plus the
    /// PSL Organizational Domain's): discovery reads the answers from the
    /// cache. Failures are seen again, and reported, by discovery.
    pub(crate) async fn prefetch(&self, authors: &Result<Vec<String>, FromError>, trail: &Trail) {
        for author in authors.as_deref().unwrap_or_default() {
            let _ = self.dns.txt(&format!("_dmarc.{author}"), trail).await;
            if self.config.discovery == DiscoveryMethod::Psl {
                let org = self.psl.org_domain(author);
                if org != *author {
                    let _ = self.dns.txt(&format!("_dmarc.{org}"), trail).await;
                }
            }
        }
    }

    /// The DMARC evaluation of `author` by `method`.
    pub(crate) async fn evaluate(
        &self,
        author: &str,
        method: DiscoveryMethod,
        spf: &SpfCheck,
        dkim: &[DkimCheck],
        draw: u8,
        trail: &Trail,
    ) -> Evaluation {
        let mut evaluation = Evaluation {
            author_domain: author.to_string(),
            result: DmarcResult::None,
            discovery: method,
            policy_domain: None,
            org_domain: None,
            record: None,
            policy: None,
            spf_alignment: None,
            dkim_alignments: vec![None; dkim.len()],
            spf_aligned: false,
            dkim_aligned: false,
            disposition: Disposition::Accept,
            override_reason: None,
            override_comment: None,
            reason: None,
            dns_failure: None,
        };
        let candidates = self.candidates(spf, dkim);
        let discovered = match discovery::discover(self.dns, self.psl, method, author, trail).await
        {
            Ok(discovered) => discovered,
            Err(failure) => {
                self.discovery_failed(&mut evaluation, &failure, &candidates, trail);
                return evaluation;
            }
        };
        evaluation.org_domain = discovered.org_domain.as_ref().ok().cloned();
        let Some((policy_domain, record)) = discovered.record.clone() else {
            trail.decide_with(|| {
                format!(
                    "no DMARC record applies to {author}: DMARC does not apply (RFC 9989 §4.10.1)"
                )
            });
            return evaluation;
        };
        evaluation.policy_domain = Some(policy_domain.clone());
        evaluation.record = Some(record.clone());
        let Some(policies) = record.effective_policies(method) else {
            trail.decide_with(|| format!(
                "the record at _dmarc.{policy_domain} has no valid policy and no valid rua: no DMARC processing (RFC 7489 §6.6.3 step 6, RFC 9989 §4.10.1)"
            ));
            evaluation.result = DmarcResult::PermError;
            evaluation.reason = Some("invalid-record".to_string());
            return evaluation;
        };
        trail.decide_with(|| {
            format!(
                "record applied: _dmarc.{policy_domain} \"{}\"{}",
                record.raw().escape_debug(),
                if policies.forced_none {
                    " (read as p=none: missing or invalid policy tag with a valid rua)"
                } else {
                    ""
                }
            )
        });

        // Identifier alignment (RFC 9989 §4.4, §4.10.2).
        let mut temperror: Option<(&str, TempErrorAction)> = None;
        let mut failure: Option<DnsFailure> = None;
        for candidate in &candidates {
            let mode = match candidate.slot {
                Slot::Spf => record.aspf(),
                Slot::Dkim(_) => record.adkim(),
            };
            let alignment = match self
                .align(method, mode, candidate, author, &discovered, trail)
                .await
            {
                Ok(alignment) => alignment,
                Err(unknown) => {
                    temperror.get_or_insert(("dns-error", self.config.dmarc_temperror));
                    failure.get_or_insert(unknown);
                    continue;
                }
            };
            if alignment.aligned {
                match (candidate.passed, candidate.slot) {
                    (true, Slot::Spf) => evaluation.spf_aligned = true,
                    (true, Slot::Dkim(_)) => evaluation.dkim_aligned = true,
                    (false, _) => {
                        temperror.get_or_insert(candidate.temperror);
                    }
                }
            }
            match candidate.slot {
                Slot::Spf => evaluation.spf_alignment = Some(alignment),
                Slot::Dkim(i) => {
                    if let Some(slot) = evaluation.dkim_alignments.get_mut(i) {
                        *slot = Some(alignment);
                    }
                }
            }
        }
        let passed = evaluation.spf_aligned || evaluation.dkim_aligned;

        // The policy for this Author Domain (RFC 9989 §4.10.1).
        let source = if policy_domain == author {
            PolicySource::P
        } else if policies.np != policies.sp {
            // RFC 8020: only an NXDOMAIN proves non-existence; an answer at
            // _dmarc.<author> proves the author domain exists.
            let exists = if discovered.author_dmarc_nxdomain {
                match self.dns.exists(author, trail).await {
                    Ok(exists) => exists,
                    Err(unknown) => {
                        // Without an answer we cannot choose between sp and
                        // np: a temperror if the message fails.
                        trail.decide_with(|| {
                            format!(
                                "{unknown}: cannot tell whether {author} exists; sp is reported"
                            )
                        });
                        temperror.get_or_insert(("dns-error", self.config.dmarc_temperror));
                        failure.get_or_insert(unknown);
                        true
                    }
                }
            } else {
                true
            };
            if exists {
                PolicySource::Sp
            } else {
                PolicySource::Np
            }
        } else {
            PolicySource::Sp
        };
        let published = match source {
            PolicySource::P => policies.p,
            PolicySource::Sp => policies.sp,
            PolicySource::Np => policies.np,
        };
        let applied = apply_pct_and_t(
            published,
            source,
            record.pct(),
            record.testing(),
            self.config.pct,
            draw,
        );
        trail.decide_with(|| {
            format!(
                "policy: {}={} published; pct={} (draw {draw}, {}), t={}: {} in force{}",
                source.as_str(),
                published.as_str(),
                record.pct(),
                if applied.sampled {
                    "sampled"
                } else {
                    "not sampled"
                },
                if record.testing() { "y" } else { "n" },
                applied.applied.as_str(),
                applied
                    .reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        });
        evaluation.policy = Some(applied);

        if passed {
            evaluation.result = DmarcResult::Pass;
            return evaluation;
        }
        evaluation.result = DmarcResult::Fail;
        evaluation.disposition = Disposition::for_policy(applied.applied);
        evaluation.override_reason = applied.reason;
        if let Some((reason, action)) = temperror {
            // An aligned identifier could not be checked: the message may be
            // legitimate, so a DNS error must not decide its fate.
            evaluation.result = DmarcResult::TempError;
            evaluation.reason = Some(reason.to_string());
            evaluation.dns_failure = failure;
            if evaluation.disposition != Disposition::Accept {
                evaluation.disposition = match action {
                    TempErrorAction::Tempfail => Disposition::Tempfail,
                    TempErrorAction::Accept => {
                        evaluation.override_reason = Some(OverrideReason::LocalPolicy);
                        Disposition::Accept
                    }
                };
            }
        }
        evaluation
    }

    /// The identifiers whose alignment can matter: SPF and DKIM passes, and
    /// temperrors a DNS answer could have turned into a pass.
    fn candidates<'c>(&self, spf: &'c SpfCheck, dkim: &'c [DkimCheck]) -> Vec<Candidate<'c>> {
        let mut candidates = Vec::new();
        if !spf.domain.is_empty() && matches!(spf.result, SpfResult::Pass | SpfResult::TempError) {
            candidates.push(Candidate {
                domain: &spf.domain,
                what: format!("SPF {} for {}", spf.result.as_str(), spf.domain),
                passed: spf.result == SpfResult::Pass,
                temperror: ("spf-temperror", self.config.spf_temperror),
                slot: Slot::Spf,
            });
        }
        for (i, check) in dkim.iter().enumerate() {
            if check.domain.is_empty()
                || !(check.result == DkimResult::Pass || check.could_pass_with_dns())
            {
                continue;
            }
            candidates.push(Candidate {
                domain: &check.domain,
                what: format!("DKIM {} for d={}", check.result.as_str(), check.domain),
                passed: check.result == DkimResult::Pass,
                temperror: ("dkim-temperror", self.config.dkim_temperror),
                slot: Slot::Dkim(i),
            });
        }
        candidates
    }

    /// Discovery failed: `temperror`, unless an identifier that passed is
    /// the Author Domain itself, which is aligned whatever the record says.
    fn discovery_failed(
        &self,
        evaluation: &mut Evaluation,
        failure: &DnsFailure,
        candidates: &[Candidate<'_>],
        trail: &Trail,
    ) {
        let author = evaluation.author_domain.clone();
        evaluation.result = DmarcResult::TempError;
        evaluation.reason = Some("dns-error".to_string());
        evaluation.dns_failure = Some(failure.clone());
        if let Some(exact) = candidates.iter().find(|c| c.passed && c.domain == author) {
            trail.decide_with(|| {
                format!(
                    "DMARC temperror for {author}: {failure}; {} is aligned with {author} whatever the record says, so the message is accepted",
                    exact.what
                )
            });
            return;
        }
        trail.decide_with(|| format!("DMARC temperror for {author}: {failure}"));
        evaluation.disposition = match self.config.dmarc_temperror {
            TempErrorAction::Tempfail => Disposition::Tempfail,
            TempErrorAction::Accept => Disposition::Accept,
        };
    }

    /// Checks the alignment of `candidate` with the Author Domain and
    /// writes the conclusion to the trail; the failure when DNS left it
    /// undecided and an answer could have aligned it.
    async fn align(
        &self,
        method: DiscoveryMethod,
        mode: AlignmentMode,
        candidate: &Candidate<'_>,
        author: &str,
        discovered: &Discovered,
        trail: &Trail,
    ) -> Result<Alignment, DnsFailure> {
        let identifier = candidate.domain;
        let alignment = match (mode, &discovered.org_domain) {
            (AlignmentMode::Strict, _) => Alignment::strict(identifier, author),
            (AlignmentMode::Relaxed, Ok(author_org)) if identifier == author => {
                Alignment::relaxed(identifier, author_org, author, author_org)
            }
            (AlignmentMode::Relaxed, Err(_)) if identifier == author => {
                Alignment::identical(identifier, author, mode)
            }
            (AlignmentMode::Relaxed, Ok(author_org)) => {
                // Under the tree walk the Organizational Domain of an
                // identifier outside the author's costs DNS questions an
                // attacker controls, and cannot matter: it is not asked.
                if method == DiscoveryMethod::TreeWalk && !is_at_or_below(identifier, author_org) {
                    // Its Organizational Domain is a name at or above it, so
                    // it cannot be `author_org`: no lookup can align it.
                    Alignment::outside(identifier, author, author_org)
                } else {
                    match discovery::org_domain(self.dns, self.psl, method, identifier, trail).await
                    {
                        Ok(org) => Alignment::relaxed(identifier, &org, author, author_org),
                        Err(failure) => {
                            trail.decide_with(|| {
                                format!("{}: alignment unknown: {failure}", candidate.what)
                            });
                            return Err(failure);
                        }
                    }
                }
            }
            (AlignmentMode::Relaxed, Err(failure)) => {
                if common_parent(identifier, author).is_none() {
                    Alignment::unrelated(identifier, author)
                } else {
                    trail.decide_with(|| {
                        format!(
                            "{}: alignment unknown: the organizational domain of {author} is not known: {failure}",
                            candidate.what
                        )
                    });
                    return Err(failure.clone());
                }
            }
        };
        let verdict = if alignment.aligned {
            "aligned"
        } else {
            "not aligned"
        };
        trail.decide_with(|| format!("{}: {verdict} ({})", candidate.what, alignment.explain()));
        Ok(alignment)
    }

    /// Runs the other discovery method; `Some` with its evaluation when it
    /// reaches another policy domain or result.
    pub(crate) async fn shadow(
        &self,
        primary: &Evaluation,
        spf: &SpfCheck,
        dkim: &[DkimCheck],
        draw: u8,
    ) -> Option<Evaluation> {
        let scratch = Trail::new(false);
        let other = self
            .evaluate(
                &primary.author_domain,
                primary.discovery.other(),
                spf,
                dkim,
                draw,
                &scratch,
            )
            .await;
        (other.policy_domain != primary.policy_domain || other.result != primary.result)
            .then_some(other)
    }
}

/// True when `name` is `parent` or a name below it (label-wise).
fn is_at_or_below(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// The longest name both `a` and `b` are at or below, if any.
fn common_parent<'a>(a: &'a str, b: &str) -> Option<&'a str> {
    let mut common: Option<&str> = None;
    for (i, _) in a
        .match_indices('.')
        .map(|(i, s)| (i + 1, s))
        .chain([(0, "")])
    {
        let suffix = a.get(i..)?;
        if is_at_or_below(b, suffix) && common.is_none_or(|c| suffix.len() > c.len()) {
            common = Some(suffix);
        }
    }
    common.filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_or_below() {
        assert!(is_at_or_below("example.com", "example.com"));
        assert!(is_at_or_below("mail.example.com", "example.com"));
        assert!(!is_at_or_below("badexample.com", "example.com"));
        assert!(!is_at_or_below("example.com", "mail.example.com"));
        assert!(!is_at_or_below("example.net", "example.com"));
    }

    #[test]
    fn common_parents() {
        assert_eq!(
            common_parent("a.example.com", "b.example.com"),
            Some("example.com")
        );
        assert_eq!(
            common_parent("example.com", "example.com"),
            Some("example.com")
        );
        assert_eq!(
            common_parent("mail.example.com", "example.com"),
            Some("example.com")
        );
        assert_eq!(common_parent("evil.com", "victim.com"), Some("com"));
        assert_eq!(common_parent("evil.net", "victim.com"), None);
        assert_eq!(common_parent("xcom", "com"), None);
    }
}
