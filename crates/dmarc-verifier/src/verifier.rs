//! The façade: one [`Verifier`] per configuration, shared by every message.
//! [`Verifier::verify`] runs the pipeline: envelope → SPF ∥ DKIM ∥ ARC →
//! DMARC per Author Domain (`evaluate`) → overrides of indirect flows
//! (`overrides`) → disposition → Authentication-Results (`conclude`).

use crate::{
    arc::{self, ArcCheck, ArcChecker},
    conclude::{conclude, Checks},
    config::VerifierConfig,
    discovery::PublicSuffixList,
    dkim::{self, DkimChecker},
    dns::{CacheName, Dns, DnsObserver, NoObserver},
    envelope::Envelope,
    evaluate::Evaluator,
    message::{author_domains, header_name_is, to_crlf},
    overrides, spf_check,
    trail::Trail,
    verdict::{Evaluation, ShadowDifference, Verdict},
    Error,
};
use mail_auth::AuthenticatedMessage;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
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
        Self::with_dns_observer(config, psl, Arc::new(NoObserver))
    }

    /// Like [`Verifier::with_public_suffix_list`], reporting every DNS
    /// question (type, outcome, time) and every cache lookup and eviction
    /// to `observer`, for metrics.
    ///
    /// # Errors
    ///
    /// As [`Verifier::with_public_suffix_list`].
    pub fn with_dns_observer(
        config: VerifierConfig,
        psl: PublicSuffixList,
        observer: Arc<dyn DnsObserver>,
    ) -> Result<Verifier, Error> {
        config.validate()?;
        let dns = Dns::observed(&config.dns, observer)?;
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

    /// The number of entries in each shared DNS cache.
    pub fn dns_cache_entries(&self) -> Vec<(CacheName, u64)> {
        self.dns.cache.entry_counts()
    }

    /// The Public Suffix List in use.
    pub fn public_suffix_list(&self) -> &PublicSuffixList {
        &self.psl
    }

    /// The resolver and cache (for the ARC sealer).
    pub(crate) fn dns(&self) -> &Dns {
        &self.dns
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
    /// an `np` policy makes its existence matter; the key records of every
    /// ARC-Seal and of the ARC-Message-Signatures (see [`crate::arc`]).
    /// Answers are cached.
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

    /// The pipeline: the From field's Author Domains; SPF of the envelope,
    /// every DKIM signature and the ARC chain, at once (with the first DMARC
    /// lookups); DMARC for each Author Domain; the overrides of indirect
    /// flows; the disposition and the header.
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
        let authors = author_domains(
            &from_values(parsed.as_ref()),
            self.config.max_author_domains,
        );

        let dkim_checker = DkimChecker {
            dns: &self.dns,
            psl: &self.psl,
            config: &self.config,
        };
        let prepared = parsed
            .as_mut()
            .map(|m| dkim_checker.prepare(m, &authors, &trail));
        let parsed = parsed;
        let chain = parsed.as_ref().map(arc::read);
        let arc_checker = ArcChecker { dns: &self.dns };
        let evaluator = Evaluator {
            dns: &self.dns,
            psl: &self.psl,
            config: &self.config,
        };
        // The first lookups of SPF, DKIM, ARC and DMARC go out together, and
        // concurrent messages share them (identical questions are asked
        // once: see Dns::txt).
        let (spf, dkim, arc, ()) = tokio::join!(
            spf_check::check(
                &self.dns,
                &self.host_name,
                self.config.spf_time_budget,
                envelope,
                &trail
            ),
            async {
                let (Some(message), Some(prepared)) = (parsed.as_ref(), prepared) else {
                    return Vec::new();
                };
                for name in dkim::key_names(message) {
                    self.dns.dkim_key(&name, &trail).await;
                }
                dkim_checker.check(Some(message), prepared, &trail).await
            },
            async {
                match chain {
                    Some(chain) => arc_checker.check(parsed.as_ref(), chain, &trail).await,
                    None => ArcCheck::none(),
                }
            },
            evaluator.prefetch(&authors, &trail),
        );

        let mut evaluations = Vec::new();
        let mut shadow = Vec::new();
        match &authors {
            Ok(domains) => {
                for domain in domains {
                    let evaluation = evaluator
                        .evaluate(domain, self.config.discovery, &spf, &dkim, draw, &trail)
                        .await;
                    if self.config.shadow_discovery {
                        if let Some(other) = evaluator.shadow(&evaluation, &spf, &dkim, draw).await
                        {
                            shadow.push(self.shadow_difference(&evaluation, other));
                        }
                    }
                    evaluations.push(evaluation);
                }
            }
            Err(error) => trail.decide_with(|| format!("no Author Domain: {error}")),
        }
        let list_ids = header_values(parsed.as_ref(), "list-id");
        let facts = overrides::Facts {
            client_ip: envelope.client_ip,
            spf: &spf,
            dkim: &dkim,
            arc: &arc,
            list_ids: &list_ids,
        };
        overrides::apply(
            &self.config.overrides,
            &self.psl,
            &facts,
            &mut evaluations,
            &trail,
        );

        let checks = Checks {
            client_ip: envelope.client_ip,
            spf,
            dkim,
            arc,
        };
        conclude(
            &self.config,
            authserv_id,
            checks,
            authors,
            evaluations,
            shadow,
            trail,
        )
    }

    /// Counts, logs and describes a shadow-discovery disagreement.
    fn shadow_difference(&self, primary: &Evaluation, other: Evaluation) -> ShadowDifference {
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
        ShadowDifference {
            author_domain: primary.author_domain.clone(),
            primary: (
                primary.discovery,
                primary.policy_domain.clone(),
                primary.result,
            ),
            shadow: (other.discovery, other.policy_domain, other.result),
        }
    }
}

/// The raw values of the message's From fields (every field whose name
/// reads as From: see [`header_name_is`]).
fn from_values<'a>(message: Option<&AuthenticatedMessage<'a>>) -> Vec<&'a [u8]> {
    header_values(message, "from")
}

/// The raw values of the fields named `name` (see [`header_name_is`]).
fn header_values<'a>(message: Option<&AuthenticatedMessage<'a>>, name: &str) -> Vec<&'a [u8]> {
    message
        .map(|m| {
            m.headers()
                .iter()
                .filter(|(field, _)| header_name_is(field, name))
                .map(|(_, value)| *value)
                .collect()
        })
        .unwrap_or_default()
}
