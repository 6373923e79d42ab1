//! ARC (RFC 8617): the Authenticated Received Chain of a message, validated
//! through mail-auth's ARC verifier with our DNS cache, and what each hop
//! recorded.
//!
//! The check of one message, in order:
//!
//! 1. The ARC fields are read and their structure checked (`chain`): more
//!    than 50 sets, a gap, a duplicate, a malformed field or a wrong `cv=`
//!    make `arc=fail` at once, without a DNS question or a signature check.
//!    A message without ARC fields costs one pass over its header names.
//! 2. The key of every ARC-Seal and of the newest ARC-Message-Signature
//!    (DKIM key records, `<s>._domainkey.<d>`) is fetched with
//!    [`Dns::dkim_key`], all at once and at once with the DKIM keys; then
//!    mail-auth validates the chain (RFC 8617 §5.2 steps 4 and 7: the
//!    newest AMS, every seal) reading those keys through the per-message
//!    [`DkimView`]. A key that cannot be fetched fails the chain: RFC 8617
//!    §5.2.1, ARC failures are permanent.
//! 3. For a chain that passed, the older ARC-Message-Signatures are
//!    verified too (`ams`), giving `header.oldest-pass` (§5.2): 0 when every
//!    AMS verifies, else the lowest instance above the newest one that does
//!    not.
//! 4. Each set's ARC-Authentication-Results is parsed with our RFC 8601
//!    parser: what that hop saw.
//!
//! The result words are those of RFC 8617 §4.4 for the A-R (`none`, `pass`,
//! `fail`). Sealing (adding our own set) is [`ArcSealer`].

mod ams;
mod chain;
mod seal;

pub use seal::{ArcSealer, SEALED_HEADERS};

use crate::{
    auth_results::{self, ParsedAuthResults},
    dns::{DkimView, Dns},
    trail::Trail,
};
use chain::{Chain, RawSet};
use mail_auth::{
    arc::ChainValidation as MaCv, dkim::DomainKey, dns::TxtRecordParser, AuthenticatedMessage,
    DkimResult as MaResult, Parameters, TxtRecord,
};

/// The chain validation status of a message (RFC 8617 §4.4), as the A-R
/// writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArcResult {
    /// The message carries no ARC field.
    None,
    /// The chain validated.
    Pass,
    /// The chain is broken, malformed, too long, or a signature or seal did
    /// not verify (or its key could not be fetched).
    Fail,
}

impl ArcResult {
    /// `"none"`, `"pass"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArcResult::None => "none",
            ArcResult::Pass => "pass",
            ArcResult::Fail => "fail",
        }
    }
}

/// The `cv=` of one ARC-Seal (RFC 8617 §4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainValidation {
    /// `cv=none`: the first set.
    None,
    /// `cv=pass`: the sealer found the chain before it valid.
    Pass,
    /// `cv=fail`: the sealer found it broken.
    Fail,
}

impl ChainValidation {
    /// `"none"`, `"pass"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainValidation::None => "none",
            ChainValidation::Pass => "pass",
            ChainValidation::Fail => "fail",
        }
    }

    fn of(cv: &MaCv) -> ChainValidation {
        match cv {
            MaCv::None => ChainValidation::None,
            MaCv::Pass => ChainValidation::Pass,
            MaCv::Fail => ChainValidation::Fail,
        }
    }
}

/// Whether an ARC-Message-Signature verifies over the message as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmsResult {
    /// It verifies.
    Pass,
    /// It does not, or it was not checked because the chain had already
    /// failed (the reason says which).
    Fail,
}

impl AmsResult {
    /// `"pass"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AmsResult::Pass => "pass",
            AmsResult::Fail => "fail",
        }
    }
}

/// One ARC set (instance) of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcInstance {
    /// `i=`, 1 for the oldest.
    pub instance: u32,
    /// The ARC-Seal's `d=`, lower case: who sealed this set.
    pub sealer: String,
    /// The ARC-Seal's `s=`.
    pub selector: String,
    /// The ARC-Seal's `cv=`.
    pub cv: ChainValidation,
    /// The ARC-Message-Signature's `d=`, lower case.
    pub ams_domain: String,
    /// Whether the ARC-Message-Signature verifies over the message as
    /// received.
    pub ams: AmsResult,
    /// Why it does not, when it does not.
    pub ams_reason: Option<String>,
    /// When it verifies: why the message still holds more than it vouched
    /// for (its `h=` does not sign From, or the message has more copies
    /// of a field a reader sees than it signed: one was added above the
    /// signed ones, RFC 6376 §8.15); `None` otherwise. A trusted sealer's
    /// set with such additions gives no override.
    pub ams_added: Option<String>,
    /// The ARC-Authentication-Results after `i=`, parsed as RFC 8601
    /// ([`auth_results::parse_lenient`]: what this hop saw); `None` when it
    /// does not parse.
    pub results: Option<ParsedAuthResults>,
}

/// The ARC check of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcCheck {
    /// The chain validation status.
    pub result: ArcResult,
    /// Why the chain failed, in words.
    pub reason: Option<String>,
    /// The sets, oldest first; empty when the fields could not be grouped
    /// into complete, unique sets 1..N.
    pub chain: Vec<ArcInstance>,
    /// RFC 8617 §5.2 `oldest-pass`, for a chain that passed: 0 when every
    /// ARC-Message-Signature verifies, else the lowest instance above the
    /// newest one that does not.
    pub oldest_pass: Option<u32>,
}

impl ArcCheck {
    /// The check of a message without ARC fields.
    pub fn none() -> ArcCheck {
        ArcCheck {
            result: ArcResult::None,
            reason: None,
            chain: Vec::new(),
            oldest_pass: None,
        }
    }

    /// The newest set sealed by one of `domains` (lower-case A-labels).
    pub fn newest_sealed_by<'a>(&'a self, domains: &[String]) -> Option<&'a ArcInstance> {
        self.chain
            .iter()
            .rev()
            .find(|set| domains.contains(&set.sealer))
    }
}

/// Reads the ARC fields of `message` (step 1 of the module documentation):
/// synchronous, no DNS.
pub(crate) fn read<'m>(message: &AuthenticatedMessage<'m>) -> Chain<'m> {
    chain::read(message.headers())
}

/// Checks the ARC chain of messages for one verifier.
pub(crate) struct ArcChecker<'a> {
    pub(crate) dns: &'a Dns,
}

impl ArcChecker<'_> {
    /// Steps 2 to 4 of the module documentation for a chain `read` gave.
    pub(crate) async fn check(
        &self,
        message: Option<&AuthenticatedMessage<'_>>,
        chain: Chain<'_>,
        trail: &Trail,
    ) -> ArcCheck {
        let sets = match chain {
            Chain::None => {
                trail.decide("ARC: no ARC header fields (arc=none)");
                return ArcCheck::none();
            }
            Chain::Invalid(why, sets) => {
                trail.decide_with(|| format!("ARC fail: {why}"));
                let not_checked = "not checked: the chain is invalid";
                return ArcCheck {
                    result: ArcResult::Fail,
                    reason: Some(why),
                    chain: sets
                        .iter()
                        .zip(1..)
                        .map(|(set, i)| describe(set, i, Err(not_checked.to_string())))
                        .collect(),
                    oldest_pass: None,
                };
            }
            Chain::Valid(sets) => sets,
        };
        let Some(message) = message else {
            return ArcCheck::none();
        };

        // RFC 8617 §5.2 steps 4 and 7, by mail-auth, with the keys fetched
        // first (all at once) into the shared per-purpose cache.
        let mut names: Vec<String> = sets.iter().map(|set| seal_key_name(set)).collect();
        if let Some(newest) = sets.last() {
            names.push(ams_key_name(newest));
        }
        names.sort_unstable();
        names.dedup();
        futures_util::future::join_all(names.iter().map(|name| self.dns.dkim_key(name, trail)))
            .await;
        let view = DkimView::new(&self.dns.cache, trail);
        let output = self
            .dns
            .authenticator
            .verify_arc(Parameters::new(message).with_cache(&view))
            .await;
        let failure = match output.result() {
            MaResult::Pass if output.chain().len() == sets.len() => None,
            MaResult::Pass | MaResult::None => Some(format!(
                "mail-auth read {} ARC sets where we read {}",
                output.chain().len(),
                sets.len()
            )),
            MaResult::TempError(e) => Some(format!(
                "{e} (a key that cannot be fetched fails the chain: RFC 8617 §5.2.1)"
            )),
            MaResult::Fail(e) | MaResult::Neutral(e) | MaResult::PermError(e) => {
                Some(e.to_string())
            }
        };
        if let Some(why) = failure {
            trail.decide_with(|| format!("ARC fail: {why}"));
            let not_checked = "not checked: the chain failed";
            return ArcCheck {
                result: ArcResult::Fail,
                reason: Some(why),
                chain: sets
                    .iter()
                    .zip(1..)
                    .map(|(set, i)| describe(set, i, Err(not_checked.to_string())))
                    .collect(),
                oldest_pass: None,
            };
        }

        // The chain passed: the newest AMS verified (mail-auth); the older
        // ones, for oldest-pass and the trusted-sealer override, with their
        // keys fetched all at once first.
        let mut older: Vec<String> = sets
            .iter()
            .rev()
            .skip(1)
            .map(|set| ams_key_name(set))
            .filter(|name| !names.contains(name))
            .collect();
        older.sort_unstable();
        older.dedup();
        futures_util::future::join_all(older.iter().map(|name| self.dns.dkim_key(name, trail)))
            .await;
        let mut signed = ams::SignedMessage::new(message.headers(), message.raw_body());
        let newest = u32::try_from(sets.len()).unwrap_or(u32::MAX);
        let mut chain = Vec::with_capacity(sets.len());
        for (set, i) in sets.iter().zip(1u32..) {
            let outcome = if i == newest {
                Ok(())
            } else {
                self.verify_older_ams(&mut signed, set, trail).await
            };
            let added = outcome
                .is_ok()
                .then(|| signed.added_fields(&set.ams))
                .flatten();
            let mut described = describe(set, i, outcome);
            described.ams_added = added;
            chain.push(described);
        }
        // RFC 8617 §5.2: from N-1 down, the first AMS that fails sets
        // oldest-pass to its instance + 1; none failing leaves it 0.
        let oldest_pass = chain
            .iter()
            .rev()
            .find(|set| set.ams == AmsResult::Fail)
            .map_or(0, |set| set.instance.saturating_add(1));
        for set in &chain {
            trail.decide_with(|| {
                format!(
                    "ARC i={}: sealed by {} (s={} cv={}), AMS by {} {}{}",
                    set.instance,
                    set.sealer,
                    set.selector,
                    set.cv.as_str(),
                    set.ams_domain,
                    set.ams.as_str(),
                    set.ams_reason
                        .as_ref()
                        .or(set.ams_added.as_ref())
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            });
        }
        trail.decide_with(|| format!("ARC pass: {newest} sets, oldest-pass={oldest_pass}"));
        ArcCheck {
            result: ArcResult::Pass,
            reason: None,
            chain,
            oldest_pass: Some(oldest_pass),
        }
    }

    /// Verifies the AMS of an older set with its key record.
    async fn verify_older_ams(
        &self,
        signed: &mut ams::SignedMessage<'_>,
        set: &RawSet<'_>,
        trail: &Trail,
    ) -> Result<(), String> {
        let name = ams_key_name(set);
        let record = self.key_record(&name, trail).await?;
        signed.verify_ams(&set.ams, set.ams_field, &record)
    }

    /// The text of the DKIM key record at `name`: the first TXT record
    /// mail-auth's key parser accepts (the one its verifier would use).
    async fn key_record(&self, name: &str, trail: &Trail) -> Result<String, String> {
        match self.dns.dkim_key(name, trail).await {
            Some(TxtRecord::DomainKey(_)) => {}
            Some(TxtRecord::Error(e)) => return Err(format!("key {name}: {e}")),
            Some(_) | None => return Err(format!("no usable key record at {name}")),
        }
        let records = self
            .dns
            .lookup_txt(name)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        records
            .iter()
            .find(|record| DomainKey::parse(record).is_ok())
            .map(|record| String::from_utf8_lossy(record).into_owned())
            .ok_or_else(|| format!("no usable key record at {name}"))
    }
}

fn seal_key_name(set: &RawSet<'_>) -> String {
    format!("{}._domainkey.{}", set.seal.s, set.seal.d)
}

fn ams_key_name(set: &RawSet<'_>) -> String {
    format!("{}._domainkey.{}", set.ams.s, set.ams.d)
}

/// One set as the verdict shows it.
fn describe(set: &RawSet<'_>, instance: u32, ams: Result<(), String>) -> ArcInstance {
    let (ams, ams_reason) = match ams {
        Ok(()) => (AmsResult::Pass, None),
        Err(why) => (AmsResult::Fail, Some(why)),
    };
    ArcInstance {
        instance,
        sealer: set.seal.d.trim_end_matches('.').to_ascii_lowercase(),
        selector: set.seal.s.clone(),
        cv: ChainValidation::of(&set.seal.cv),
        ams_domain: set.ams.d.trim_end_matches('.').to_ascii_lowercase(),
        ams,
        ams_reason,
        ams_added: None,
        results: parse_aar(set.aar),
    }
}

/// An ARC-Authentication-Results value (`i=N; authserv-id; results`,
/// RFC 8617 §4.1.1) parsed after its instance tag, by our RFC 8601 parser
/// with Microsoft 365's properties without a ptype accepted.
fn parse_aar(value: &[u8]) -> Option<ParsedAuthResults> {
    let text = String::from_utf8_lossy(value);
    let (instance, payload) = text.split_once(';')?;
    let instance: String = instance.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = instance.strip_prefix("i=")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    auth_results::parse_lenient(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aar_payloads_parse_after_the_instance() {
        let parsed =
            parse_aar(b" i=2; lists.example.org;\r\n\tdmarc=pass header.from=example.com\r\n")
                .unwrap();
        assert_eq!(parsed.authserv_id, "lists.example.org");
        assert_eq!(parsed.results[0].method, "dmarc");
        assert_eq!(parsed.results[0].props[0].value, "example.com");
        assert!(parse_aar(b"lists.example.org; dmarc=pass").is_none());
        assert!(parse_aar(b"i=; x; dmarc=pass").is_none());
        assert!(parse_aar(b"i=1; x; dmarc").is_none());
        // Microsoft 365's form.
        let parsed =
            parse_aar(b"i=1; mx.microsoft.com 1; dmarc=pass action=none header.from=contoso.com")
                .unwrap();
        assert_eq!(parsed.results[0].props[1].value, "contoso.com");
    }
}
