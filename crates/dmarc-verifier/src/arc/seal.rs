//! Adding our own ARC set to a message we deliver (RFC 8617 §5.1), with
//! mail-auth's `ArcSealer`.

use crate::{dns::DkimView, message::to_crlf, trail::Trail, Error, Verdict, Verifier};
use mail_auth::{
    arc::ArcSealer as MaSealer,
    crypto::{Ed25519Key, RsaKey, Sha256},
    headers::HeaderWriter,
    signer::Ready,
    AuthenticatedMessage, AuthenticationResults, DkimResult as MaResult, Parameters,
};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};

use super::ArcResult;

/// The header fields our ARC-Message-Signature signs, when the message has
/// them (every instance of each). Never Authentication-Results (deleted
/// by the next hops, RFC 8601 §5) nor ARC fields (RFC 8617 §4.1.2).
pub const SEALED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
    "List-Id",
    "List-Unsubscribe",
    "List-Post",
];

/// The smallest RSA key we seal with (bits).
const MIN_RSA_BITS: u32 = 2048;

enum Key {
    Rsa(MaSealer<RsaKey<Sha256>, Ready>),
    Ed25519(MaSealer<Ed25519Key, Ready>),
}

/// Seals messages for one signing domain, selector and private key.
///
/// The key is held in memory only; [`std::fmt::Debug`] never shows it.
pub struct ArcSealer {
    key: Key,
    domain: String,
    selector: String,
}

impl std::fmt::Debug for ArcSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcSealer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl ArcSealer {
    /// A sealer for `d=domain`, `s=selector` with a private key in PEM:
    /// PKCS #8 (`BEGIN PRIVATE KEY`, RSA or Ed25519) or PKCS #1 (`BEGIN RSA
    /// PRIVATE KEY`). RSA keys must have at least 2048 bits.
    ///
    /// # Errors
    ///
    /// [`Error::ArcKey`] for a key that cannot be read or is too short,
    /// [`Error::Config`] for a domain or selector that is not a DNS name.
    /// The error never contains the key.
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> Result<ArcSealer, Error> {
        let domain = crate::message::normalize_domain(domain).map_err(|_| Error::Config {
            key: "arc_seal.domain",
            value: domain.to_string(),
            expected: "a domain name",
        })?;
        if selector.is_empty()
            || !selector.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        {
            return Err(Error::Config {
                key: "arc_seal.selector",
                value: selector.to_string(),
                expected: "a DKIM selector (letters, digits, '-', '_' and dots)",
            });
        }
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| Error::ArcKey("not a PEM private key (PKCS #8 or PKCS #1)".into()))?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                match RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(pkcs8.clone_key())) {
                    Ok(rsa) => Key::Rsa(rsa_sealer(rsa, &domain, selector)?),
                    Err(_) => {
                        let ed =
                            Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
                                .map_err(|_| {
                                    Error::ArcKey(
                                        "a PKCS #8 key that is neither RSA nor Ed25519".into(),
                                    )
                                })?;
                        Key::Ed25519(
                            MaSealer::from_key(ed)
                                .domain(domain.clone())
                                .selector(selector)
                                .headers(SEALED_HEADERS.iter().copied()),
                        )
                    }
                }
            }
            PrivateKeyDer::Pkcs1(_) => {
                let rsa = RsaKey::<Sha256>::from_key_der(der.clone_key())
                    .map_err(|_| Error::ArcKey("an RSA key that does not parse".into()))?;
                Key::Rsa(rsa_sealer(rsa, &domain, selector)?)
            }
            _ => {
                return Err(Error::ArcKey(
                    "an unsupported key type (expected RSA or Ed25519)".into(),
                ))
            }
        };
        Ok(ArcSealer {
            key,
            domain,
            selector: selector.to_string(),
        })
    }

    /// `d=` of our seals.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `s=` of our seals.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// Seals `message`, the message as it will be delivered (our
    /// Authentication-Results in it, forged ones gone), for the verdict
    /// `verifier` gave on it: returns the three fields to put on top of the
    /// message, in order (ARC-Seal, ARC-Message-Signature,
    /// ARC-Authentication-Results), as (name, value) with the value folded
    /// with CRLF and a tab.
    ///
    /// The ARC-Authentication-Results carries the verdict's
    /// Authentication-Results; `i=` is one above the newest set, `cv=` the
    /// chain validation status of the verdict (RFC 8617 §5.1.1). The chain
    /// is validated again by mail-auth (its keys are in the cache) and must
    /// read as the verdict read it.
    ///
    /// # Errors
    ///
    /// [`Error::ArcSeal`] when the message cannot be sealed: its newest seal
    /// says `cv=fail` (RFC 8617 §5.1.2: the chain ends there), it holds 50
    /// sets already, its ARC fields are unreadable (no instance to follow),
    /// the chain now reads differently than in the verdict, or it has no
    /// header or starts with a continuation line (our fields on top would
    /// take it in).
    pub async fn seal(
        &self,
        verifier: &Verifier,
        message: &[u8],
        verdict: &Verdict,
    ) -> Result<Vec<(String, String)>, Error> {
        let raw = to_crlf(message);
        // Our fields go on top: a first line that is a continuation (white
        // space first) would become part of the last of them.
        if raw.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            return Err(Error::ArcSeal(
                "the message starts with a continuation line".into(),
            ));
        }
        let parsed = AuthenticatedMessage::parse(&raw)
            .ok_or_else(|| Error::ArcSeal("the message has no header".into()))?;
        let trail = Trail::new(false);
        let view = DkimView::new(&verifier.dns().cache, &trail);
        let output = verifier
            .dns()
            .authenticator
            .verify_arc(Parameters::new(&parsed).with_cache(&view))
            .await;
        let sets = output.chain().len();
        let agrees = match verdict.arc.result {
            ArcResult::None => sets == 0 && *output.result() == MaResult::None,
            ArcResult::Pass => *output.result() == MaResult::Pass,
            ArcResult::Fail => {
                sets > 0 && !matches!(output.result(), MaResult::Pass | MaResult::None)
            }
        };
        if !agrees {
            return Err(Error::ArcSeal(format!(
                "the chain reads arc={} now, the verdict said arc={}",
                mail_auth_word(output.result()),
                verdict.arc.result.as_str()
            )));
        }
        if !output.can_be_sealed() {
            return Err(Error::ArcSeal(
                "the newest ARC-Seal says cv=fail: the chain ends there (RFC 8617 §5.1.2)".into(),
            ));
        }
        if sets >= super::chain::MAX_SETS {
            return Err(Error::ArcSeal(format!(
                "the message has {sets} ARC sets: no room for another (RFC 8617 §4.2.1)"
            )));
        }
        // The ARC-Authentication-Results is written as mail-auth gets it and
        // signed in relaxed form: one line, single spaces (then folded).
        let payload = one_line(&verdict.authentication_results);
        let results = AuthenticationResults::new(&payload);
        let set = match &self.key {
            Key::Rsa(sealer) => sealer.seal(&parsed, &results, &output),
            Key::Ed25519(sealer) => sealer.seal(&parsed, &results, &output),
        }
        .map_err(|e| Error::ArcSeal(e.to_string()))?;
        Ok(split_fields(&set.to_header()))
    }
}

fn rsa_sealer(
    rsa: RsaKey<Sha256>,
    domain: &str,
    selector: &str,
) -> Result<MaSealer<RsaKey<Sha256>, Ready>, Error> {
    let bits = crate::dkim_key::rsa_modulus_bits(&rsa.public_key()).unwrap_or(0);
    if bits < MIN_RSA_BITS {
        return Err(Error::ArcKey(format!(
            "an RSA key of {bits} bits (at least {MIN_RSA_BITS} are needed)"
        )));
    }
    Ok(MaSealer::from_key(rsa)
        .domain(domain)
        .selector(selector)
        .headers(SEALED_HEADERS.iter().copied()))
}

fn mail_auth_word(result: &MaResult) -> &'static str {
    match result {
        MaResult::Pass => "pass",
        MaResult::None => "none",
        _ => "fail",
    }
}

/// `value` with every run of white space (folding included) made one
/// space: the relaxed form (RFC 6376 §3.4.2) the seal signs.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The fields of mail-auth's `to_header()` text, as (name, value); the
/// ARC-Authentication-Results, written on one line, is folded after each
/// `;` outside quoted strings (relaxed canonicalization reads the fold as
/// the space it replaces, so the seal still verifies).
fn split_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str("\r\n");
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((
                name.to_string(),
                value.strip_prefix(' ').unwrap_or(value).to_string(),
            ));
        }
    }
    for (name, value) in &mut fields {
        if name.eq_ignore_ascii_case("ARC-Authentication-Results") {
            *value = fold_results(value);
        }
    }
    fields
}

/// Folds an Authentication-Results payload written on one line: `"; "`
/// outside quoted strings becomes `";\r\n\t"`.
fn fold_results(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 32);
    let mut quoted = false;
    let mut escaped = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted && chars.peek() == Some(&' ') => {
                chars.next();
                out.push_str("\r\n\t");
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_fold_outside_quotes_only() {
        assert_eq!(
            fold_results("i=1; mx.example; spf=pass reason=\"a; b\"; dmarc=pass"),
            "i=1;\r\n\tmx.example;\r\n\tspf=pass reason=\"a; b\";\r\n\tdmarc=pass"
        );
        assert_eq!(one_line("mx;\n\tspf=pass  x\r\n\ty"), "mx; spf=pass x y");
    }

    #[test]
    fn mail_auth_header_text_splits_into_fields() {
        let fields = split_fields(
            "ARC-Seal: i=1; a=rsa-sha256;\r\n\tb=abc\r\nARC-Message-Signature: i=1; h=From;\r\n\tb=x\r\nARC-Authentication-Results: i=1; mx; dmarc=pass\r\n",
        );
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ARC-Seal",
                "ARC-Message-Signature",
                "ARC-Authentication-Results"
            ]
        );
        assert_eq!(fields[0].1, "i=1; a=rsa-sha256;\r\n\tb=abc");
        assert_eq!(fields[2].1, "i=1;\r\n\tmx;\r\n\tdmarc=pass");
    }

    #[test]
    fn keys_are_refused_without_showing_them() {
        let error = ArcSealer::from_pem(
            "example.org",
            "arc",
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!error.contains("c2VjcmV0"), "{error}");
        assert!(ArcSealer::from_pem("not a domain!", "arc", "").is_err());
        assert!(ArcSealer::from_pem("example.org", "a b", "").is_err());
    }
}
