//! DKIM (RFC 6376, RFC 8301, RFC 8463): every signature of a message,
//! verified by mail-auth with our key lookups, and the rules mail-auth
//! leaves to us.
//!
//! What this module adds to mail-auth's verification:
//!
//! - A signature whose `h=` does not list From is ignored with PERMFAIL
//!   "From field not signed" (RFC 6376 §6.1.1, §5.4): `permerror`, no DNS,
//!   never aligned. mail-auth would verify it, and a forger could then sign
//!   `To` and `Subject` and write any From above them.
//! - The result words of RFC 8601 §2.7.1: a body hash mismatch is `fail`
//!   ("body hash did not verify"); a key that cannot be used (no key record,
//!   empty `p=`, a key that does not parse, the wrong `k=` or `h=`, an `i=`
//!   outside `d=`) is `permerror`; a DNS failure on the key is `temperror`.
//!   RFC 6376 §6.1.2 (fetch the key) comes before §6.1.3 (check the body),
//!   so a signature whose body hash fails still has its key checked, and an
//!   unusable key is `permerror` even then.
//! - At most `max_dkim_signatures` signatures are checked, those whose `d=`
//!   shares an Author Domain's Organizational Domain first; the rest get
//!   one summary `policy` result and cause no DNS question.
//! - RFC 8301: RSA keys under `min_rsa_key_bits` fail, `rsa-sha1` is
//!   `policy` unless allowed.
//!
//! Key records are fetched by [`Dns::dkim_key`] (shared, per-purpose cache:
//! see the `dns` module), before mail-auth runs.

use crate::{
    config::VerifierConfig,
    discovery::PublicSuffixList,
    dkim_key,
    dns::{fqdn, DkimView, Dns, TxtAnswer},
    message::FromError,
    trail::Trail,
    verdict::{DkimCheck, DkimResult},
};
use mail_auth::{
    crypto::{Algorithm, CryptoError},
    dkim::{DkimError, Signature},
    AuthenticatedMessage, DkimOutput, DkimResult as MaDkim, Error as MaError, Parameters,
    TxtRecord,
};

/// The error mail-auth is given for a signature we set aside before
/// verification (mail-auth never reports it for an unparsed signature,
/// so it marks ours).
const SET_ASIDE: DkimError = DkimError::SignatureExpired;

/// What happens to one parsed signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// mail-auth verifies it.
    Verify,
    /// `h=` lacks From: permerror without verification.
    FromNotSigned,
    /// Over `max_dkim_signatures`: only counted.
    Capped,
}

/// The DKIM key record names of the signatures a message's check will
/// verify, for the prefetch.
pub(crate) fn key_names(message: &AuthenticatedMessage<'_>) -> Vec<String> {
    message
        .dkim_signatures()
        .iter()
        .map(|sig| key_name(&sig.header))
        .collect()
}

fn key_name(signature: &Signature) -> String {
    format!("{}._domainkey.{}", signature.s, signature.d)
}

/// Checks the DKIM signatures of messages for one verifier.
pub(crate) struct DkimChecker<'a> {
    pub(crate) dns: &'a Dns,
    pub(crate) psl: &'a PublicSuffixList,
    pub(crate) config: &'a VerifierConfig,
}

/// The signatures set aside before verification, in header order, with
/// what is to be said of each.
pub(crate) struct Prepared {
    /// The plan of every parsed signature, in header order.
    plans: Vec<Plan>,
    /// The checks of the signatures not verified (From not signed), in
    /// header order.
    unsigned_from: Vec<DkimCheck>,
}

impl DkimChecker<'_> {
    /// Decides which signatures mail-auth verifies and removes the others
    /// from `message` (so they cause no DNS question): those without From in
    /// `h=` (RFC 6376 §6.1.1), and those over `max_dkim_signatures`, keeping
    /// first the ones whose `d=` shares an Author Domain's Organizational
    /// Domain (only they can give an aligned pass, RFC 9989 §4.4.1), then the
    /// others in header order.
    pub(crate) fn prepare(
        &self,
        message: &mut AuthenticatedMessage<'_>,
        authors: &Result<Vec<String>, FromError>,
        trail: &Trail,
    ) -> Prepared {
        let signatures = message.dkim_signatures();
        let plans: Vec<Plan> = signatures
            .iter()
            .map(|sig| {
                if sig.header.h.iter().any(|h| h.eq_ignore_ascii_case("from")) {
                    Plan::Verify
                } else {
                    Plan::FromNotSigned
                }
            })
            .collect();
        let unsigned_from: Vec<DkimCheck> = signatures
            .iter()
            .zip(&plans)
            .filter(|(_, plan)| **plan == Plan::FromNotSigned)
            .map(|(sig, _)| {
                let mut check = described(&sig.header, DkimResult::PermError);
                check.reason =
                    Some("From field not signed (RFC 6376 §6.1.1)".to_string());
                trail.decide_with(|| {
                    format!(
                        "DKIM permerror for d={} s={}: h= does not list From, the signature is ignored (RFC 6376 §6.1.1)",
                        check.domain, check.selector
                    )
                });
                check
            })
            .collect();

        let max = self.config.max_dkim_signatures;
        let mut plans = plans;
        let candidates = plans.iter().filter(|p| **p == Plan::Verify).count();
        if candidates > max {
            let author_orgs: Vec<String> = authors
                .iter()
                .flatten()
                .map(|author| self.psl.org_domain(author))
                .collect();
            let related = |i: usize| {
                signatures.get(i).is_some_and(|sig| {
                    let domain = sig.header.d.trim_end_matches('.').to_ascii_lowercase();
                    author_orgs.contains(&self.psl.org_domain(&domain))
                })
            };
            let mut order: Vec<usize> = (0..plans.len())
                .filter(|&i| plans.get(i) == Some(&Plan::Verify))
                .collect();
            // Stable: header order within each group.
            order.sort_by_key(|&i| !related(i));
            for &i in order.iter().skip(max) {
                if let Some(plan) = plans.get_mut(i) {
                    *plan = Plan::Capped;
                }
            }
            trail.decide_with(|| {
                format!(
                    "{candidates} DKIM signatures: checking {max}, {} set aside (max_dkim_signatures)",
                    candidates - max
                )
            });
        }

        let mut index = 0;
        message.retain_dkim_signatures(|_| {
            let plan = plans.get(index).copied().unwrap_or(Plan::Capped);
            index += 1;
            if plan == Plan::Verify {
                Ok(())
            } else {
                Err(SET_ASIDE)
            }
        });
        Prepared {
            plans,
            unsigned_from,
        }
    }

    /// Verifies the signatures `prepare` kept and returns one check per
    /// signature shown: the unparseable ones first (as many as room
    /// allows), then every parsed one in header order, then one `policy`
    /// result summarising those not shown.
    pub(crate) async fn check(
        &self,
        message: Option<&AuthenticatedMessage<'_>>,
        prepared: Prepared,
        trail: &Trail,
    ) -> Vec<DkimCheck> {
        let Some(message) = message else {
            return Vec::new();
        };
        let view = DkimView::new(&self.dns.cache, trail);
        let outputs = self
            .dns
            .authenticator
            .verify_dkim(Parameters::new(message).with_cache(&view))
            .await;
        let max = self.config.max_dkim_signatures;
        let verified = prepared
            .plans
            .iter()
            .filter(|p| **p == Plan::Verify)
            .count();
        let mut room = max.saturating_sub(verified);
        let mut not_shown = prepared
            .plans
            .iter()
            .filter(|p| **p == Plan::Capped)
            .count();
        let mut checks = Vec::with_capacity(outputs.len().min(max + 1));

        // mail-auth lists the headers it could not parse, and ours set aside
        // (without a signature, marked SET_ASIDE), first.
        let mut checked = Vec::with_capacity(verified);
        for output in &outputs {
            if output.signature().is_some() {
                checked.push(output);
                continue;
            }
            let ours =
                matches!(output.result(), MaDkim::Neutral(MaError::Dkim(e)) if *e == SET_ASIDE);
            if ours {
                continue;
            }
            if room == 0 {
                not_shown += 1;
                continue;
            }
            room -= 1;
            let (result, reason) = match output.result() {
                MaDkim::Pass => (DkimResult::Pass, None),
                MaDkim::None => (DkimResult::Neutral, None),
                MaDkim::Neutral(e)
                | MaDkim::Fail(e)
                | MaDkim::PermError(e)
                | MaDkim::TempError(e) => (DkimResult::Neutral, Some(e.to_string())),
            };
            checks.push(DkimCheck {
                result,
                domain: String::new(),
                selector: String::new(),
                algorithm: String::new(),
                key_bits: None,
                b_prefix: String::new(),
                reason,
                body_hash: None,
            });
        }

        let mut checked = checked.into_iter();
        let mut unsigned_from = prepared.unsigned_from.into_iter();
        for plan in &prepared.plans {
            match plan {
                Plan::Verify => {
                    if let Some(output) = checked.next() {
                        checks.push(self.judge(output, trail).await);
                    }
                }
                Plan::FromNotSigned => {
                    let Some(check) = unsigned_from.next() else {
                        continue;
                    };
                    if room == 0 {
                        not_shown += 1;
                    } else {
                        room -= 1;
                        checks.push(check);
                    }
                }
                Plan::Capped => {}
            }
        }

        if not_shown > 0 {
            trail.decide_with(|| format!("{not_shown} DKIM signatures not checked"));
            checks.push(DkimCheck {
                result: DkimResult::Policy,
                domain: String::new(),
                selector: String::new(),
                algorithm: String::new(),
                key_bits: None,
                b_prefix: String::new(),
                reason: Some(format!(
                    "{not_shown} more signatures not checked (limit {max})"
                )),
                body_hash: None,
            });
        }
        checks
    }

    /// The check of one verified signature: mail-auth's outcome in RFC 8601
    /// words, with the rules of the module documentation applied.
    async fn judge(&self, output: &DkimOutput<'_>, trail: &Trail) -> DkimCheck {
        let Some(signature) = output.signature() else {
            return described_unknown();
        };
        let mut check = described(signature, DkimResult::Neutral);
        let (result, reason, body_hash) = match output.result() {
            MaDkim::Pass => (DkimResult::Pass, None, Some(true)),
            MaDkim::Neutral(MaError::Dkim(DkimError::BodyHashMismatch)) => {
                let (result, reason) = self.body_hash_failed(signature, trail).await;
                (result, Some(reason), Some(false))
            }
            // Expired signatures, and others mail-auth set aside after
            // parsing: RFC 8601 §2.7.1 "not otherwise able to be processed".
            MaDkim::Neutral(e) => (DkimResult::Neutral, Some(e.to_string()), None),
            // RFC 6376 §6.1.1: an i= outside d= is PERMFAIL (domain
            // mismatch); §6.1.2: a key unsuitable for a= is PERMFAIL.
            MaDkim::Fail(
                e @ (MaError::Dkim(DkimError::AuidMismatch)
                | MaError::Crypto(
                    CryptoError::IncompatibleAlgorithms | CryptoError::MalformedPublicKey,
                )),
            ) => (DkimResult::PermError, Some(e.to_string()), Some(true)),
            MaDkim::Fail(e) => (DkimResult::Fail, Some(e.to_string()), Some(true)),
            MaDkim::PermError(e) => (DkimResult::PermError, Some(e.to_string()), Some(true)),
            MaDkim::TempError(e) => (DkimResult::TempError, Some(e.to_string()), Some(true)),
            MaDkim::None => (DkimResult::Neutral, None, None),
        };
        check.result = result;
        check.reason = reason;
        check.body_hash = body_hash;
        if check.result == DkimResult::Pass {
            check.key_bits = match signature.a {
                Algorithm::Ed25519Sha256 => Some(256),
                Algorithm::RsaSha1 | Algorithm::RsaSha256 => u32::try_from(signature.b.len())
                    .ok()
                    .and_then(|n| n.checked_mul(8)),
                Algorithm::MlDsa44 => None,
            };
            self.apply_rfc8301(signature, &mut check, trail).await;
        } else if check.result == DkimResult::Fail
            && check.body_hash == Some(true)
            && matches!(signature.a, Algorithm::RsaSha1 | Algorithm::RsaSha256)
        {
            // The key was fetched and did not verify the signature: its size
            // is read from the key record (never guessed from b=), and a key
            // under the minimum says why (RFC 8301 §3.2; aws-lc refuses to
            // verify with keys under 1024 bits).
            check.key_bits = self.exact_rsa_bits(&key_name(signature), trail).await;
            if let Some(bits) = check.key_bits.filter(|&b| b < self.config.min_rsa_key_bits) {
                check.reason = Some(format!(
                    "RSA key of {bits} bits is shorter than {} (RFC 8301 §3.2)",
                    self.config.min_rsa_key_bits
                ));
            }
        }
        trail.decide_with(|| {
            format!(
                "DKIM {} for d={} s={} a={}{}",
                check.result.as_str(),
                check.domain,
                check.selector,
                check.algorithm,
                check
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        });
        check
    }

    /// RFC 6376 §6.1.2 before §6.1.3: the key of a signature whose body
    /// hash did not match decides between `permerror` (no usable key),
    /// `temperror` (the key could not be fetched) and `fail`.
    async fn body_hash_failed(&self, signature: &Signature, trail: &Trail) -> (DkimResult, String) {
        let name = key_name(signature);
        match self.dns.dkim_key(&name, trail).await {
            None => (
                DkimResult::PermError,
                format!(
                    "{} is not a valid DNS name",
                    fqdn(&name).trim_end_matches('.')
                ),
            ),
            Some(TxtRecord::DomainKey(_)) => {
                if let Some(why) = self.unsuitable_key(&name, signature.a, trail).await {
                    return (DkimResult::PermError, why);
                }
                (DkimResult::Fail, "body hash did not verify".to_string())
            }
            Some(TxtRecord::Error(e @ MaError::Dns(mail_auth::DnsError::Resolver(_)))) => {
                (DkimResult::TempError, e.to_string())
            }
            Some(TxtRecord::Error(e)) => (DkimResult::PermError, e.to_string()),
            Some(_) => (DkimResult::PermError, "no DKIM key record".to_string()),
        }
    }

    /// Why the key record at `name` cannot verify `algorithm` (read from
    /// the raw record, already cached by the key lookup).
    async fn unsuitable_key(
        &self,
        name: &str,
        algorithm: Algorithm,
        trail: &Trail,
    ) -> Option<String> {
        let TxtAnswer::Records(records) = self.dns.txt(name, trail).await.ok()? else {
            return None;
        };
        let record = records.iter().find_map(|record| {
            let text = String::from_utf8_lossy(record);
            dkim_key::key_record_p(&text)
                .is_some()
                .then(|| text.into_owned())
        })?;
        dkim_key::key_unsuitable(&record, algorithm.name())
    }

    /// RFC 8301: short RSA keys fail (§3.2), rsa-sha1 is not accepted
    /// unless configured (§3.1).
    async fn apply_rfc8301(&self, signature: &Signature, check: &mut DkimCheck, trail: &Trail) {
        let rsa = matches!(signature.a, Algorithm::RsaSha1 | Algorithm::RsaSha256);
        if rsa {
            // RFC 8017 §8.2.2: a valid RSA signature is exactly as long as
            // the modulus, so only keys whose signature leaves the size in
            // doubt need their key record read.
            let octets = u32::try_from(signature.b.len()).unwrap_or(u32::MAX);
            if octets.saturating_sub(1).saturating_mul(8) < self.config.min_rsa_key_bits {
                check.key_bits = self
                    .exact_rsa_bits(&key_name(signature), trail)
                    .await
                    .or(check.key_bits);
            }
            if let Some(bits) = check.key_bits.filter(|&b| b < self.config.min_rsa_key_bits) {
                check.result = DkimResult::Fail;
                check.reason = Some(format!(
                    "RSA key of {bits} bits is shorter than {} (RFC 8301 §3.2)",
                    self.config.min_rsa_key_bits
                ));
                return;
            }
        }
        if signature.a == Algorithm::RsaSha1 && !self.config.allow_rsa_sha1 {
            check.result = DkimResult::Policy;
            check.reason = Some("rsa-sha1 is not accepted (RFC 8301 §3.1)".to_string());
        }
    }

    /// The modulus size of the key at `name`.
    async fn exact_rsa_bits(&self, name: &str, trail: &Trail) -> Option<u32> {
        let TxtAnswer::Records(records) = self.dns.txt(name, trail).await.ok()? else {
            return None;
        };
        records.iter().find_map(|record| {
            let record = String::from_utf8_lossy(record);
            let der = dkim_key::base64_decode(dkim_key::key_record_p(&record)?)?;
            dkim_key::rsa_modulus_bits(&der)
        })
    }
}

/// A check naming `signature`, with `result`. The key size is only stated
/// for a signature that verified (then its length is the modulus length,
/// RFC 8017 §8.2.2); it is filled in by [`DkimChecker::judge`].
fn described(signature: &Signature, result: DkimResult) -> DkimCheck {
    DkimCheck {
        result,
        domain: signature.d.trim_end_matches('.').to_ascii_lowercase(),
        selector: signature.s.clone(),
        algorithm: signature.a.name().to_string(),
        key_bits: None,
        b_prefix: dkim_key::b_prefix(&signature.b),
        reason: None,
        body_hash: None,
    }
}

fn described_unknown() -> DkimCheck {
    DkimCheck {
        result: DkimResult::Neutral,
        domain: String::new(),
        selector: String::new(),
        algorithm: String::new(),
        key_bits: None,
        b_prefix: String::new(),
        reason: None,
        body_hash: None,
    }
}
