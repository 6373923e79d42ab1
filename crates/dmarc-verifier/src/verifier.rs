//! The façade: one [`Verifier`] per configuration, shared by every message.

use crate::{
    alignment::Alignment,
    auth_results::{self, AuthResults},
    config::{Enforcement, InvalidFromResult, TempErrorAction, VerifierConfig},
    discovery::{self, DiscoveryMethod, PublicSuffixList},
    dkim_key,
    dns::{Dns, MessageView, TxtAnswer},
    envelope::Envelope,
    message::{author_domains, FromError},
    policy::{apply_pct_and_t, Disposition, OverrideReason, PolicySource},
    record::AlignmentMode,
    trail::Trail,
    verdict::{
        DkimCheck, DkimResult, DmarcResult, Evaluation, ShadowDifference, SpfCheck, SpfResult,
        SpfScope, Verdict,
    },
    Error,
};
use mail_auth::{
    crypto::Algorithm,
    dkim::{DkimError, DomainKey},
    spf::verify::SpfParameters,
    spf::SpfRecord,
    AuthenticatedMessage, DkimResult as MaDkim, Error as MaError, Parameters, SpfResult as MaSpf,
};
use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

/// Per-message settings of [`Verifier::verify_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The authserv-id for this message's Authentication-Results (default:
    /// the configured one). A milter serving several MTA host names (macro
    /// `j`) keeps one verifier, and one DNS cache, for all of them.
    pub authserv_id: Option<String>,
    /// The sampling draw 0-99 (default: the configured one, else random).
    pub draw: Option<u8>,
}

/// The error mail-auth is given for a DKIM signature set aside by
/// `max_dkim_signatures` (mail-auth never reports it for an unparsed
/// signature, so it marks ours).
const SET_ASIDE: DkimError = DkimError::SignatureExpired;

/// Checks messages against SPF, DKIM and DMARC.
///
/// Build one per configuration and share it (it holds the resolver and the
/// DNS cache); [`Verifier::verify`] takes `&self` and may run concurrently.
pub struct Verifier {
    config: VerifierConfig,
    dns: Dns,
    psl: PublicSuffixList,
    host_name: String,
    shadow_differences: AtomicU64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("psl", &self.psl)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier: checks the configuration, loads the Public Suffix
    /// List and sets up the resolver. Must be called inside a Tokio runtime
    /// when the resolver is used later (it is lazy; no I/O happens here
    /// besides reading the PSL and resolv.conf).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting, [`Error::Psl`] for an
    /// unreadable list, [`Error::Resolver`] when the resolver cannot be built.
    pub fn new(config: VerifierConfig) -> Result<Verifier, Error> {
        config.validate()?;
        let psl = PublicSuffixList::load(config.psl_path.as_deref())?;
        Self::with_public_suffix_list(config, psl)
    }

    /// Like [`Verifier::new`] with an already loaded list (`psl_path` is
    /// then ignored): a daemon reloading its configuration, or many
    /// verifiers in tests, need not parse the list again.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting, [`Error::Resolver`] when
    /// the resolver cannot be built.
    pub fn with_public_suffix_list(
        config: VerifierConfig,
        psl: PublicSuffixList,
    ) -> Result<Verifier, Error> {
        config.validate()?;
        let dns = Dns::new(&config.dns)?;
        let host_name = config
            .host_name
            .clone()
            .unwrap_or_else(|| config.authserv_id.clone());
        Ok(Verifier {
            config,
            dns,
            psl,
            host_name,
            shadow_differences: AtomicU64::new(0),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The Public Suffix List in use.
    pub fn public_suffix_list(&self) -> &PublicSuffixList {
        &self.psl
    }

    /// How many Author Domains shadow discovery saw decided differently.
    pub fn shadow_difference_count(&self) -> u64 {
        self.shadow_differences.load(Ordering::Relaxed)
    }

    /// Checks one message: SPF of the envelope, every DKIM signature, and
    /// DMARC for each Author Domain of the From field.
    ///
    /// DNS lookups: the SPF record of the MAIL FROM domain (or HELO name for
    /// a null sender) and whatever its mechanisms need; the key record of
    /// each DKIM signature; `_dmarc.<domain>` for the Author Domain and, as
    /// discovery requires, its Organizational Domain or tree-walk names; for
    /// relaxed alignment under the tree walk, the names above each
    /// authenticated identifier; and an A query for the Author Domain when
    /// an `np` policy makes its existence matter. Answers are cached.
    ///
    /// Never fails: every problem (DNS errors, a broken message) becomes a
    /// result in the [`Verdict`]. The sampling draw for `pct` is the
    /// configured one, or random.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), dmarc_verifier::Error> {
    /// use dmarc_verifier::{Envelope, Verifier, VerifierConfig};
    /// let verifier = Verifier::new(VerifierConfig::default())?;
    /// let envelope = Envelope::new("192.0.2.1".parse().unwrap(), "mail.example.com", "a@example.com");
    /// let verdict = verifier.verify(&envelope, b"From: a@example.com\r\n\r\nHi\r\n").await;
    /// println!("{}: {}", verdict.dmarc.as_str(), verdict.disposition);
    /// # Ok(()) }
    /// ```
    pub async fn verify(&self, envelope: &Envelope, message: &[u8]) -> Verdict {
        self.verify_with(envelope, message, &VerifyOptions::default())
            .await
    }

    /// [`Verifier::verify`] with per-message settings.
    pub async fn verify_with(
        &self,
        envelope: &Envelope,
        message: &[u8],
        options: &VerifyOptions,
    ) -> Verdict {
        let draw = options
            .draw
            .or(self.config.pct_draw)
            .unwrap_or_else(|| rand::random_range(0..100u8))
            .min(99);
        let authserv_id = options
            .authserv_id
            .as_deref()
            .unwrap_or(&self.config.authserv_id);
        self.run(envelope, message, draw, authserv_id).await
    }

    /// [`Verifier::verify`] with a given sampling draw (0-99; the message is
    /// sampled when `draw < pct`), for deterministic tests and tools.
    pub async fn verify_with_draw(&self, envelope: &Envelope, message: &[u8], draw: u8) -> Verdict {
        self.run(envelope, message, draw.min(99), &self.config.authserv_id)
            .await
    }

    async fn run(
        &self,
        envelope: &Envelope,
        message: &[u8],
        draw: u8,
        authserv_id: &str,
    ) -> Verdict {
        let trail = Trail::new(self.config.trail);
        let raw = to_crlf(message);
        let mut parsed = AuthenticatedMessage::parse(&raw);
        let view = MessageView::new(&self.dns.cache, &trail);

        let from_values: Vec<&[u8]> = parsed
            .as_ref()
            .map(|m| {
                m.headers()
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case(b"from"))
                    .map(|(_, value)| *value)
                    .collect()
            })
            .unwrap_or_default();
        let authors = author_domains(&from_values, self.config.max_author_domains);
        let unchecked = parsed
            .as_mut()
            .map_or(0, |m| self.cap_dkim_signatures(m, &authors, &trail));

        // The first lookups of SPF, DKIM and DMARC go out together, and
        // concurrent messages share them (see Dns::prefetch).
        self.prefetch(envelope, parsed.as_ref(), &authors, &trail)
            .await;
        let (spf, dkim) = tokio::join!(
            self.check_spf(envelope, &view, &trail),
            self.check_dkim(parsed.as_ref(), unchecked, &view, &trail)
        );

        let mut evaluations = Vec::new();
        let mut shadow = Vec::new();
        match &authors {
            Ok(domains) => {
                for domain in domains {
                    let evaluation = self
                        .evaluate(domain, self.config.discovery, &spf, &dkim, draw, &trail)
                        .await;
                    if self.config.shadow_discovery {
                        if let Some(diff) = self.shadow(&evaluation, &spf, &dkim, draw).await {
                            shadow.push(diff);
                        }
                    }
                    evaluations.push(evaluation);
                }
            }
            Err(error) => trail.decide_with(|| format!("no Author Domain: {error}")),
        }

        self.conclude(authserv_id, spf, dkim, authors, evaluations, shadow, trail)
    }

    /// Starts, at once, the lookups every message needs first: the SPF
    /// record of the MAIL FROM domain (as mail-auth will name it), each DKIM
    /// key record, and `_dmarc.<author>` (plus the PSL organizational
    /// domain's). Identical lookups of concurrent messages are coalesced.
    async fn prefetch(
        &self,
        envelope: &Envelope,
        message: Option<&AuthenticatedMessage<'_>>,
        authors: &Result<Vec<String>, FromError>,
        trail: &Trail,
    ) {
        let spf_name = envelope.client_ip.map(|_| {
            envelope
                .mail_from
                .rsplit_once('@')
                .map_or(envelope.helo.as_str(), |(_, domain)| domain)
                .to_string()
        });
        let dkim_names: Vec<String> = message
            .map(|m| {
                m.dkim_signatures()
                    .iter()
                    .map(|sig| format!("{}._domainkey.{}", sig.header.s, sig.header.d))
                    .collect()
            })
            .unwrap_or_default();
        let mut dmarc_names: Vec<String> = Vec::new();
        for author in authors.as_deref().unwrap_or_default() {
            dmarc_names.push(format!("_dmarc.{author}"));
            if self.config.discovery == DiscoveryMethod::Psl {
                let org = self.psl.org_domain(author);
                if org != *author {
                    dmarc_names.push(format!("_dmarc.{org}"));
                }
            }
        }
        tokio::join!(
            async {
                if let Some(name) = spf_name.filter(|n| !n.is_empty()) {
                    self.dns.prefetch::<SpfRecord>(&name, trail).await;
                }
            },
            async {
                for name in &dkim_names {
                    self.dns.prefetch::<DomainKey>(name, trail).await;
                }
            },
            async {
                for name in &dmarc_names {
                    // Failures are seen again, and reported, by discovery.
                    let _ = self.dns.txt(name, trail).await;
                }
            }
        );
    }

    async fn check_spf(
        &self,
        envelope: &Envelope,
        view: &MessageView<'_>,
        trail: &Trail,
    ) -> SpfCheck {
        // RFC 7208 §2.4: a null reverse-path is checked as postmaster@<HELO>.
        let (scope, domain) = match envelope.mail_from_domain() {
            Some(domain) => (SpfScope::MailFrom, domain),
            None => (SpfScope::Helo, envelope.helo.as_str()),
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        // RFC 7208 §5: an IPv4-mapped IPv6 address is checked as IPv4.
        let Some(ip) = envelope.client_ip.map(|ip| ip.to_canonical()) else {
            trail.decide("SPF not checked: no client IP");
            return SpfCheck {
                result: SpfResult::None,
                domain,
                scope,
                reason: Some("no client IP".to_string()),
            };
        };
        if domain.is_empty() {
            trail.decide("SPF not checked: null sender and no HELO name");
            return SpfCheck {
                result: SpfResult::None,
                domain,
                scope,
                reason: Some("no identity".to_string()),
            };
        }
        let params =
            SpfParameters::mail_from(ip, &envelope.helo, &self.host_name, &envelope.mail_from);
        let output = self
            .dns
            .authenticator
            .check_host(Parameters::new(params).with_cache(view))
            .await;
        let result = match output.result() {
            MaSpf::Pass => SpfResult::Pass,
            MaSpf::Fail => SpfResult::Fail,
            MaSpf::SoftFail => SpfResult::SoftFail,
            MaSpf::Neutral => SpfResult::Neutral,
            MaSpf::TempError => SpfResult::TempError,
            MaSpf::PermError => SpfResult::PermError,
            MaSpf::None => SpfResult::None,
        };
        trail.decide_with(|| {
            format!(
                "SPF {} for {domain} ({}) from {ip}{}",
                result.as_str(),
                scope.as_str(),
                output
                    .explanation()
                    .map(|e| format!(": {}", e.escape_debug()))
                    .unwrap_or_default()
            )
        });
        SpfCheck {
            result,
            domain,
            scope,
            reason: None,
        }
    }

    /// Keeps at most `max_dkim_signatures` DKIM signatures in `message`,
    /// those whose `d=` shares an Author Domain's Organizational Domain
    /// first (only they can give an aligned pass, RFC 9989 §4.4.1), then
    /// the others in header order. Returns how many were set aside; mail-auth
    /// reports each as a neutral `SignatureExpired` without its signature,
    /// which [`Verifier::check_dkim`] folds into one summary result.
    fn cap_dkim_signatures(
        &self,
        message: &mut AuthenticatedMessage<'_>,
        authors: &Result<Vec<String>, FromError>,
        trail: &Trail,
    ) -> usize {
        let max = self.config.max_dkim_signatures;
        let count = message.dkim_signatures().len();
        if count <= max {
            return 0;
        }
        let author_orgs: Vec<String> = authors
            .iter()
            .flatten()
            .map(|author| self.psl.org_domain(author))
            .collect();
        let related: Vec<bool> = message
            .dkim_signatures()
            .iter()
            .map(|sig| {
                let domain = sig.header.d.trim_end_matches('.').to_ascii_lowercase();
                let org = self.psl.org_domain(&domain);
                author_orgs.contains(&org)
            })
            .collect();
        let mut order: Vec<usize> = (0..count).collect();
        // Stable: header order within each group.
        order.sort_by_key(|&i| !related.get(i).copied().unwrap_or(false));
        let mut keep = vec![false; count];
        for &i in order.iter().take(max) {
            if let Some(slot) = keep.get_mut(i) {
                *slot = true;
            }
        }
        let mut index = 0;
        message.retain_dkim_signatures(|_| {
            let kept = keep.get(index).copied().unwrap_or(false);
            index += 1;
            if kept {
                Ok(())
            } else {
                Err(SET_ASIDE)
            }
        });
        let unchecked = count - max;
        trail.decide_with(|| {
            format!(
            "{count} DKIM signatures: checking {max}, {unchecked} set aside (max_dkim_signatures)"
        )
        });
        unchecked
    }

    async fn check_dkim(
        &self,
        message: Option<&AuthenticatedMessage<'_>>,
        set_aside: usize,
        view: &MessageView<'_>,
        trail: &Trail,
    ) -> Vec<DkimCheck> {
        let Some(message) = message else {
            return Vec::new();
        };
        let outputs = self
            .dns
            .authenticator
            .verify_dkim(Parameters::new(message).with_cache(view))
            .await;
        let max = self.config.max_dkim_signatures;
        // mail-auth lists the signatures it could not parse first (each a
        // neutral result without a signature), then the checked ones. Keep
        // every checked one, fill the remaining places with unparseable
        // ones, and summarise the rest in one result.
        let checked = outputs.iter().filter(|o| o.signature().is_some()).count();
        let mut unparseable_room = max.saturating_sub(checked);
        let mut not_shown = 0usize;
        let mut checks = Vec::with_capacity(outputs.len().min(max + 1));
        for output in &outputs {
            if output.signature().is_none() {
                let ours = set_aside > 0
                    && matches!(output.result(), MaDkim::Neutral(MaError::Dkim(e)) if *e == SET_ASIDE);
                if ours {
                    continue;
                }
                if unparseable_room == 0 {
                    not_shown += 1;
                    continue;
                }
                unparseable_room -= 1;
            }
            let (mut result, mut reason) = match output.result() {
                MaDkim::Pass => (DkimResult::Pass, None),
                MaDkim::Neutral(e) => (DkimResult::Neutral, Some(e.to_string())),
                MaDkim::Fail(e) => (DkimResult::Fail, Some(e.to_string())),
                MaDkim::PermError(e) => (DkimResult::PermError, Some(e.to_string())),
                MaDkim::TempError(e) => (DkimResult::TempError, Some(e.to_string())),
                MaDkim::None => (DkimResult::Neutral, None),
            };
            let Some(signature) = output.signature() else {
                checks.push(DkimCheck {
                    result,
                    domain: String::new(),
                    selector: String::new(),
                    algorithm: String::new(),
                    key_bits: None,
                    b_prefix: String::new(),
                    reason,
                });
                continue;
            };
            let domain = signature.d.trim_end_matches('.').to_ascii_lowercase();
            let mut key_bits = match signature.a {
                Algorithm::Ed25519Sha256 => Some(256),
                Algorithm::RsaSha1 | Algorithm::RsaSha256 => u32::try_from(signature.b.len())
                    .ok()
                    .and_then(|n| n.checked_mul(8)),
                Algorithm::MlDsa44 => None,
            };
            let rsa = matches!(signature.a, Algorithm::RsaSha1 | Algorithm::RsaSha256);
            if result == DkimResult::Pass && rsa {
                // RFC 8017 §8.2.2: an RSA signature is exactly as long as the
                // modulus, so only keys whose signature leaves the size in
                // doubt need their key record read.
                let octets = u32::try_from(signature.b.len()).unwrap_or(u32::MAX);
                if octets.saturating_sub(1).saturating_mul(8) < self.config.min_rsa_key_bits {
                    key_bits = self
                        .exact_rsa_bits(&signature.s, &domain, trail)
                        .await
                        .or(key_bits);
                }
                if let Some(bits) = key_bits.filter(|&b| b < self.config.min_rsa_key_bits) {
                    result = DkimResult::Fail;
                    reason = Some(format!(
                        "RSA key of {bits} bits is shorter than {} (RFC 8301 §3.2)",
                        self.config.min_rsa_key_bits
                    ));
                }
            }
            if result == DkimResult::Pass
                && signature.a == Algorithm::RsaSha1
                && !self.config.allow_rsa_sha1
            {
                result = DkimResult::Policy;
                reason = Some("rsa-sha1 is not accepted (RFC 8301 §3.1)".to_string());
            }
            trail.decide_with(|| {
                format!(
                    "DKIM {} for d={domain} s={} a={}{}",
                    result.as_str(),
                    signature.s,
                    signature.a.name(),
                    reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            });
            checks.push(DkimCheck {
                result,
                domain,
                selector: signature.s.clone(),
                algorithm: signature.a.name().to_string(),
                key_bits,
                b_prefix: dkim_key::b_prefix(&signature.b),
                reason,
            });
        }
        let skipped = set_aside + not_shown;
        if skipped > 0 {
            trail.decide_with(|| format!("{skipped} DKIM signatures not checked"));
            checks.push(DkimCheck {
                result: DkimResult::Policy,
                domain: String::new(),
                selector: String::new(),
                algorithm: String::new(),
                key_bits: None,
                b_prefix: String::new(),
                reason: Some(format!(
                    "{skipped} more signatures not checked (limit {max})"
                )),
            });
        }
        checks
    }

    /// The modulus size of the key at `<selector>._domainkey.<domain>`.
    async fn exact_rsa_bits(&self, selector: &str, domain: &str, trail: &Trail) -> Option<u32> {
        let name = format!("{selector}._domainkey.{domain}");
        let TxtAnswer::Records(records) = self.dns.txt(&name, trail).await.ok()? else {
            return None;
        };
        records.iter().find_map(|record| {
            let record = String::from_utf8_lossy(record);
            let der = dkim_key::base64_decode(dkim_key::key_record_p(&record)?)?;
            dkim_key::rsa_modulus_bits(&der)
        })
    }

    /// The Organizational Domain of `domain`, or `None` after a DNS failure.
    async fn org_of(&self, method: DiscoveryMethod, domain: &str, trail: &Trail) -> Option<String> {
        match discovery::org_domain(&self.dns, &self.psl, method, domain, trail).await {
            Ok(org) => Some(org),
            Err(failure) => {
                trail.decide_with(|| format!("{failure}"));
                None
            }
        }
    }

    /// Checks the alignment of `identifier` with the Author Domain and
    /// writes the conclusion, prefixed with `what`, to the trail; `None`
    /// when a DNS failure left it undecided.
    #[allow(clippy::too_many_arguments)]
    async fn align(
        &self,
        method: DiscoveryMethod,
        mode: AlignmentMode,
        identifier: &str,
        author: &str,
        author_org: &str,
        what: &str,
        trail: &Trail,
    ) -> Option<Alignment> {
        let alignment = match mode {
            AlignmentMode::Strict => Alignment::strict(identifier, author),
            AlignmentMode::Relaxed if identifier == author => {
                Alignment::relaxed(identifier, author_org, author, author_org)
            }
            AlignmentMode::Relaxed => {
                let org = self.org_of(method, identifier, trail).await?;
                Alignment::relaxed(identifier, &org, author, author_org)
            }
        };
        let verdict = if alignment.aligned {
            "aligned"
        } else {
            "not aligned"
        };
        trail.decide_with(|| format!("{what}: {verdict} ({})", alignment.explain()));
        Some(alignment)
    }

    /// The DMARC evaluation of one Author Domain.
    async fn evaluate(
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
            reason: None,
        };
        let discovered =
            match discovery::discover(&self.dns, &self.psl, method, author, trail).await {
                Ok(discovered) => discovered,
                Err(failure) => {
                    trail.decide_with(|| format!("DMARC temperror for {author}: {failure}"));
                    evaluation.result = DmarcResult::TempError;
                    evaluation.reason = Some("dns-error".to_string());
                    evaluation.disposition = match self.config.dmarc_temperror {
                        TempErrorAction::Tempfail => Disposition::Tempfail,
                        TempErrorAction::Accept => Disposition::Accept,
                    };
                    return evaluation;
                }
            };
        evaluation.org_domain = Some(discovered.org_domain.clone());
        let Some((policy_domain, record)) = discovered.record else {
            trail.decide_with(|| {
                format!(
                    "no DMARC record applies to {author}: DMARC does not apply (RFC 9989 §4.10.1)"
                )
            });
            return evaluation;
        };
        evaluation.policy_domain = Some(policy_domain.clone());
        evaluation.record = Some(record.clone());
        let np_counts = method == DiscoveryMethod::TreeWalk;
        let Some(policies) = record.effective_policies(np_counts) else {
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
        let author_org = discovered.org_domain.as_str();
        let mut temperror_candidate: Option<(&str, TempErrorAction)> = None;
        if !spf.domain.is_empty() && matches!(spf.result, SpfResult::Pass | SpfResult::TempError) {
            let what = format!("SPF {} for {}", spf.result.as_str(), spf.domain);
            match self
                .align(
                    method,
                    record.aspf(),
                    &spf.domain,
                    author,
                    author_org,
                    &what,
                    trail,
                )
                .await
            {
                Some(alignment) => {
                    if alignment.aligned && spf.result == SpfResult::Pass {
                        evaluation.spf_aligned = true;
                    }
                    if alignment.aligned && spf.result == SpfResult::TempError {
                        temperror_candidate = Some(("spf-temperror", self.config.spf_temperror));
                    }
                    evaluation.spf_alignment = Some(alignment);
                }
                None => temperror_candidate = Some(("dns-error", self.config.dmarc_temperror)),
            }
        }
        for (i, check) in dkim.iter().enumerate() {
            if check.domain.is_empty()
                || !matches!(check.result, DkimResult::Pass | DkimResult::TempError)
            {
                continue;
            }
            let what = format!("DKIM {} for d={}", check.result.as_str(), check.domain);
            match self
                .align(
                    method,
                    record.adkim(),
                    &check.domain,
                    author,
                    author_org,
                    &what,
                    trail,
                )
                .await
            {
                Some(alignment) => {
                    if alignment.aligned && check.result == DkimResult::Pass {
                        evaluation.dkim_aligned = true;
                    }
                    if alignment.aligned
                        && check.result == DkimResult::TempError
                        && temperror_candidate.is_none()
                    {
                        temperror_candidate = Some(("dkim-temperror", self.config.dkim_temperror));
                    }
                    if let Some(slot) = evaluation.dkim_alignments.get_mut(i) {
                        *slot = Some(alignment);
                    }
                }
                None => {
                    if temperror_candidate.is_none() {
                        temperror_candidate = Some(("dns-error", self.config.dmarc_temperror));
                    }
                }
            }
        }

        // The policy for this Author Domain (RFC 9989 §4.10.1).
        let source = if policy_domain == author {
            PolicySource::P
        } else if policies.np != policies.sp {
            // RFC 8020: only an NXDOMAIN proves non-existence; an answer at
            // _dmarc.<author> proves the author domain exists.
            let exists = if discovered.author_dmarc_nxdomain {
                match self.dns.exists(author, trail).await {
                    Ok(exists) => exists,
                    Err(failure) => {
                        // Without an answer we cannot choose between sp and
                        // np; a message that fails is then a temperror.
                        trail.decide_with(|| {
                            format!(
                                "{failure}: cannot tell whether {author} exists; sp is reported"
                            )
                        });
                        if temperror_candidate.is_none() {
                            temperror_candidate = Some(("dns-error", self.config.dmarc_temperror));
                        }
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

        if evaluation.spf_aligned || evaluation.dkim_aligned {
            evaluation.result = DmarcResult::Pass;
            return evaluation;
        }
        evaluation.result = DmarcResult::Fail;
        evaluation.disposition = Disposition::for_policy(applied.applied);
        evaluation.override_reason = applied.reason;
        if let Some((reason, action)) = temperror_candidate {
            // An aligned identifier could not be checked: the message may be
            // legitimate, so a DNS error must not decide its fate.
            evaluation.result = DmarcResult::TempError;
            evaluation.reason = Some(reason.to_string());
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

    /// Runs the other discovery method and reports a disagreement.
    async fn shadow(
        &self,
        primary: &Evaluation,
        spf: &SpfCheck,
        dkim: &[DkimCheck],
        draw: u8,
    ) -> Option<ShadowDifference> {
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
        if other.policy_domain == primary.policy_domain && other.result == primary.result {
            return None;
        }
        self.shadow_differences.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            author_domain = %primary.author_domain,
            primary = primary.discovery.as_str(),
            primary_policy_domain = ?primary.policy_domain,
            primary_result = primary.result.as_str(),
            shadow = other.discovery.as_str(),
            shadow_policy_domain = ?other.policy_domain,
            shadow_result = other.result.as_str(),
            "shadow discovery disagrees"
        );
        Some(ShadowDifference {
            author_domain: primary.author_domain.clone(),
            primary: (
                primary.discovery,
                primary.policy_domain.clone(),
                primary.result,
            ),
            shadow: (other.discovery, other.policy_domain, other.result),
        })
    }

    /// Combines the evaluations into the verdict and formats the header.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &self,
        authserv_id: &str,
        spf: SpfCheck,
        dkim: Vec<DkimCheck>,
        authors: Result<Vec<String>, FromError>,
        evaluations: Vec<Evaluation>,
        shadow: Vec<ShadowDifference>,
        trail: Trail,
    ) -> Verdict {
        let mut ar = AuthResults::new(authserv_id);
        ar.push(auth_results::spf_resinfo(&spf));
        if dkim.is_empty() {
            ar.push(auth_results::dkim_none_resinfo());
        }
        for check in &dkim {
            ar.push(auth_results::dkim_resinfo(check));
        }

        let (dmarc, mut disposition, mut override_reason, decisive) = match &authors {
            Err(error) => {
                let result = match self.config.invalid_from_result {
                    InvalidFromResult::PermError => DmarcResult::PermError,
                    InvalidFromResult::None => DmarcResult::None,
                };
                ar.push(auth_results::dmarc_error_resinfo(
                    result.as_str(),
                    error.kind(),
                ));
                (result, self.config.invalid_from_disposition, None, None)
            }
            Ok(_) => {
                for evaluation in &evaluations {
                    ar.push(auth_results::dmarc_resinfo(evaluation));
                }
                // Several Author Domains: the strictest disposition decides.
                let decisive = (0..evaluations.len()).max_by_key(|&i| {
                    let severity = evaluations.get(i).map_or(0, |e| severity(e.disposition));
                    (severity, std::cmp::Reverse(i))
                });
                let dmarc = overall_result(&evaluations);
                match decisive.and_then(|i| evaluations.get(i)) {
                    Some(e) => (dmarc, e.disposition, e.override_reason, decisive),
                    None => (dmarc, Disposition::Accept, None, None),
                }
            }
        };
        if self.config.enforcement == Enforcement::Monitor && disposition != Disposition::Accept {
            trail.decide_with(|| format!("monitor mode: {disposition} becomes accept"));
            disposition = Disposition::Accept;
            override_reason = Some(OverrideReason::LocalPolicy);
        }
        trail.decide_with(|| {
            format!(
                "DMARC {}: disposition {disposition}{}",
                dmarc.as_str(),
                override_reason
                    .map(|r| format!(" (override: {r})"))
                    .unwrap_or_default()
            )
        });
        Verdict {
            spf,
            dkim,
            author_domains: authors,
            evaluations,
            decisive,
            dmarc,
            disposition,
            override_reason,
            authentication_results: ar.value(),
            trail: trail.into_steps(),
            shadow,
        }
    }
}

/// Accept < quarantine < tempfail < reject: a definite reject wins over a
/// domain that could not be checked.
fn severity(disposition: Disposition) -> u8 {
    match disposition {
        Disposition::Accept => 0,
        Disposition::Quarantine => 1,
        Disposition::Tempfail => 2,
        Disposition::Reject => 3,
    }
}

/// The overall result of several evaluations: fail if any failed, then
/// temperror, permerror, pass, none.
fn overall_result(evaluations: &[Evaluation]) -> DmarcResult {
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

/// Turns bare LF line endings into CRLF (DKIM signs the CRLF form). A
/// message already in CRLF form is borrowed, not copied.
fn to_crlf(message: &[u8]) -> Cow<'_, [u8]> {
    let is_bare = |i: usize| i == 0 || message.get(i - 1) != Some(&b'\r');
    let Some(first_bare) = memchr::memchr_iter(b'\n', message).find(|&i| is_bare(i)) else {
        return Cow::Borrowed(message);
    };
    let mut out = Vec::with_capacity(message.len() + message.len() / 16);
    out.extend_from_slice(message.get(..first_bare).unwrap_or_default());
    let mut start = first_bare;
    for i in memchr::memchr_iter(b'\n', message).filter(|&i| i >= first_bare) {
        out.extend_from_slice(message.get(start..i).unwrap_or_default());
        if is_bare(i) {
            out.push(b'\r');
        }
        start = i;
    }
    out.extend_from_slice(message.get(start..).unwrap_or_default());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_normalised_to_crlf() {
        assert_eq!(&*to_crlf(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert!(matches!(to_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*to_crlf(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(&*to_crlf(b"a\r\nb\nc"), b"a\r\nb\r\nc");
        assert_eq!(&*to_crlf(b"\n"), b"\r\n");
    }

    #[test]
    fn strictest_disposition_and_overall_result() {
        assert!(severity(Disposition::Reject) > severity(Disposition::Tempfail));
        assert!(severity(Disposition::Tempfail) > severity(Disposition::Quarantine));
        assert_eq!(overall_result(&[]), DmarcResult::None);
    }
}
