//! The library's settings, with their defaults.

use crate::{
    discovery::DiscoveryMethod, dns::DnsConfig, overrides::OverrideConfig, policy::Disposition,
    policy::PctMode, Error,
};
use std::{path::PathBuf, time::Duration};

/// Whether the published policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Enforcement {
    /// Apply the policy in force (default): reject, quarantine, accept.
    #[default]
    Enforce,
    /// Only report: every disposition becomes accept, with the override
    /// reason `local_policy`; results and headers are unchanged.
    Monitor,
}

/// What a temporary error does to a message that would otherwise fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TempErrorAction {
    /// Refuse temporarily so that the sender retries (default): a DNS
    /// hiccup must neither let spoofed mail in nor bounce real mail.
    #[default]
    Tempfail,
    /// Accept the message (override reason `local_policy`).
    Accept,
}

/// The DMARC result for a message whose From field is missing, repeated or
/// unparseable, or holds too many domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvalidFromResult {
    /// `dmarc=permerror` (default).
    #[default]
    PermError,
    /// `dmarc=none`.
    None,
}

/// Settings of a [`crate::Verifier`]. `VerifierConfig::default()` gives the
/// documented defaults; [`VerifierConfig::validate`] checks a hand-made one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The authserv-id of our Authentication-Results (default: the host name).
    pub authserv_id: String,
    /// The name of this host for SPF's `%{r}` macro (default: `authserv_id`).
    pub host_name: Option<String>,
    /// Policy discovery method (default: PSL).
    pub discovery: DiscoveryMethod,
    /// Also run the other discovery method and report where it disagrees.
    pub shadow_discovery: bool,
    /// The Public Suffix List file (default: Debian's, else the bundled one).
    pub psl_path: Option<PathBuf>,
    /// `pct` handling (default: honor, RFC 7489).
    pub pct: PctMode,
    /// A fixed sampling draw 0-99 (default: random per message).
    pub pct_draw: Option<u8>,
    /// Enforce or monitor (default: enforce).
    pub enforcement: Enforcement,
    /// A DNS error fetching the DMARC record (default: tempfail).
    pub dmarc_temperror: TempErrorAction,
    /// An SPF temperror for an aligned domain when nothing else passed
    /// (default: tempfail).
    pub spf_temperror: TempErrorAction,
    /// A DKIM temperror for an aligned signature when nothing else passed
    /// (default: tempfail).
    pub dkim_temperror: TempErrorAction,
    /// DMARC result for an unusable From (default: permerror).
    pub invalid_from_result: InvalidFromResult,
    /// Disposition for an unusable From (default: reject; RFC 5322 §3.6
    /// requires exactly one From, and a second one is a spoofing trick).
    pub invalid_from_disposition: Disposition,
    /// The most distinct Author Domains evaluated in one From (default 5).
    pub max_author_domains: usize,
    /// The most DKIM signatures checked in one message (default 5; OpenDKIM's
    /// `MaximumSignaturesToVerify` is 3). Signatures whose `d=` shares the
    /// Organizational Domain (by the Public Suffix List) of an Author Domain
    /// go first, as only those can give DMARC an aligned pass; the rest in
    /// header order. The ones left over get one summary result
    /// (`dkim=policy`), no DNS question and no key look-up.
    pub max_dkim_signatures: usize,
    /// Accept `rsa-sha1` signatures (default: no, RFC 8301 §3.1).
    pub allow_rsa_sha1: bool,
    /// Record the decision trail in every verdict (`Verdict::trail`,
    /// default true). False saves formatting it (a few µs a message) when
    /// nothing reads it; the trail's debug log (target
    /// `dmarc_verifier::trail`) still gets it when that log is on.
    pub trail: bool,
    /// Smallest RSA key accepted, in bits (default 1024, RFC 8301 §3.2).
    pub min_rsa_key_bits: u32,
    /// The longest time one SPF check may wait on the DNS, all its lookups
    /// together (RFC 7208 §4.6.4 suggests at least 20 seconds; default
    /// 20 s); beyond it SPF is `temperror`.
    pub spf_time_budget: Duration,
    /// DNS settings.
    pub dns: DnsConfig,
    /// The overrides of indirect mail flows: trusted ARC sealers, trusted
    /// forwarders, mailing lists, per-domain policy (see
    /// [`crate::overrides`]).
    pub overrides: OverrideConfig,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            authserv_id: default_host_name(),
            host_name: None,
            discovery: DiscoveryMethod::Psl,
            shadow_discovery: false,
            psl_path: None,
            pct: PctMode::Honor,
            pct_draw: None,
            enforcement: Enforcement::Enforce,
            dmarc_temperror: TempErrorAction::Tempfail,
            spf_temperror: TempErrorAction::Tempfail,
            dkim_temperror: TempErrorAction::Tempfail,
            invalid_from_result: InvalidFromResult::PermError,
            invalid_from_disposition: Disposition::Reject,
            max_author_domains: 5,
            max_dkim_signatures: 5,
            allow_rsa_sha1: false,
            trail: true,
            min_rsa_key_bits: 1024,
            spf_time_budget: crate::spf::DEFAULT_TIME_BUDGET,
            dns: DnsConfig::default(),
            overrides: OverrideConfig::default(),
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`),
/// or `localhost`.
pub fn default_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl VerifierConfig {
    /// Checks values a type cannot rule out.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting and the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        let id = &self.authserv_id;
        if id.is_empty()
            || id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ';')
        {
            return Err(Error::Config {
                key: "authserv_id",
                value: id.clone(),
                expected: "a host name without spaces or ';'",
            });
        }
        if let Some(draw) = self.pct_draw {
            if draw > 99 {
                return Err(Error::Config {
                    key: "pct_draw",
                    value: draw.to_string(),
                    expected: "a number from 0 to 99",
                });
            }
        }
        if self.max_author_domains == 0 {
            return Err(Error::Config {
                key: "max_author_domains",
                value: "0".to_string(),
                expected: "at least 1",
            });
        }
        if self.max_dkim_signatures == 0 {
            return Err(Error::Config {
                key: "max_dkim_signatures",
                value: "0".to_string(),
                expected: "at least 1",
            });
        }
        if self.spf_time_budget.is_zero() {
            return Err(Error::Config {
                key: "spf_time_budget",
                value: format!("{:?}", self.spf_time_budget),
                expected: "a duration above zero",
            });
        }
        if !(512..=8192).contains(&self.min_rsa_key_bits) {
            return Err(Error::Config {
                key: "min_rsa_key_bits",
                value: self.min_rsa_key_bits.to_string(),
                expected: "a number of bits from 512 to 8192",
            });
        }
        if let Some((key, value)) = self.overrides.invalid() {
            return Err(Error::Config {
                key,
                value,
                expected: "accept or quarantine for an action, a lower-case A-label for a domain",
            });
        }
        if self.dns.timeout.is_zero() {
            return Err(Error::Config {
                key: "dns_timeout",
                value: "0".to_string(),
                expected: "a positive duration",
            });
        }
        Ok(())
    }
}
