//! Verifying an ARC-Message-Signature that is not the newest one.
//!
//! mail-auth's ARC verifier checks only the newest AMS (RFC 8617 §5.2 step
//! 4). The `header.oldest-pass` of RFC 8617 §5.2 and the trusted-sealer
//! override ("the AMS of the trusted instance still verifies over the
//! message as we received it") need the older ones too, and mail-auth does
//! not expose its DKIM canonicalization or key type. So this module
//! verifies an AMS as RFC 8617 §4.1.2 defines it, a DKIM signature
//! (RFC 6376 §3.7) whose own header field is named
//! `ARC-Message-Signature`:
//!
//! - the body canonicalized (RFC 6376 §3.4.3 simple, §3.4.4 relaxed) and
//!   hashed, compared with `bh=`; each distinct (canonicalization, hash)
//!   is computed once per message, so 50 instances cost at most four body
//!   hashes;
//! - the header fields listed in `h=`, each taken from the bottom up, a
//!   name listed more often than it occurs contributing nothing (RFC 6376
//!   §5.4.2), canonicalized (§3.4.1 simple, §3.4.2 relaxed), then the AMS
//!   itself with the value of `b=` removed and without its final CRLF
//!   (§3.7);
//! - the key record at `<s>._domainkey.<d>` read from the raw TXT answer
//!   (the first record mail-auth's DKIM key parser accepts), its type and
//!   hash algorithms checked against `a=` (RFC 6376 §6.1.2), and the
//!   signature checked with aws-lc: RSASSA-PKCS1-v1_5 (RFC 6376 §3.3, keys
//!   of 1024 to 8192 bits) or Ed25519 over the SHA-256 of the data
//!   (RFC 8463 §3).
//!
//! - `x=` (RFC 6376 §3.5): a signature past its expiry time, or whose
//!   expiry is not after its signing time `t=`, does not verify, as
//!   mail-auth treats the newest AMS.
//!
//! For the trusted-sealer override, [`SignedMessage::added_fields`] also
//! tells whether the message holds more of the fields a reader sees (From,
//! Subject, ...) than the AMS signed: RFC 6376 §5.4.2 lets anyone add a
//! field above the signed ones without breaking the signature (§8.15).
//!
//! Header names are matched as everywhere in this crate
//! ([`crate::message::header_name_is`]: white space before the colon does
//! not hide a field). The work per signature is linear in the size of the
//! header: the fields are indexed by name once per message.

use crate::dkim_key;
use aws_lc_rs::{
    digest::{self, Context, SHA1_FOR_LEGACY_USE_ONLY, SHA256},
    signature::{
        UnparsedPublicKey, ED25519, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
    },
};
use mail_auth::{arc::Signature, crypto::Algorithm, dkim::Canonicalization};
use std::collections::HashMap;

/// The message an AMS is checked against: its header fields in order, its
/// body, and the body hashes computed so far.
pub(crate) struct SignedMessage<'m> {
    headers: &'m [(&'m [u8], &'m [u8])],
    body: &'m [u8],
    /// Indices of the fields with each (normalised) name, top to bottom.
    by_name: HashMap<Vec<u8>, Vec<usize>>,
    body_hashes: Vec<((Canonicalization, HashKind), Vec<u8>)>,
}

/// The hash of `a=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Sha1,
    Sha256,
}

impl HashKind {
    fn of(algorithm: Algorithm) -> Option<HashKind> {
        match algorithm {
            Algorithm::RsaSha1 => Some(HashKind::Sha1),
            Algorithm::RsaSha256 | Algorithm::Ed25519Sha256 => Some(HashKind::Sha256),
            Algorithm::MlDsa44 => None,
        }
    }

    fn context(self) -> Context {
        Context::new(match self {
            HashKind::Sha1 => &SHA1_FOR_LEGACY_USE_ONLY,
            HashKind::Sha256 => &SHA256,
        })
    }
}

/// The header fields a reader sees or a mail client shows, whose extra
/// copies above the signed ones would change what the message says.
const SEEN_FIELDS: [&str; 11] = [
    "from",
    "sender",
    "reply-to",
    "subject",
    "to",
    "cc",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Whether `signature` has expired at `now` (seconds since the epoch):
/// `x=` set and not after both `now` and `t=` (RFC 6376 §3.5: "the
/// value of the "x=" tag MUST be greater than the value of the "t="
/// tag").
fn expired(signature: &Signature, now: u64) -> bool {
    signature.x != 0 && !(signature.x > signature.t && signature.x > now)
}

/// A header name as fields are indexed: white space removed, lower case.
fn name_key(name: &[u8]) -> Vec<u8> {
    name.iter()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map(u8::to_ascii_lowercase)
        .collect()
}

impl<'m> SignedMessage<'m> {
    /// `headers` as [`mail_auth::AuthenticatedMessage::headers`] gives them
    /// (the value after the colon, with its final CRLF), and the body.
    pub(crate) fn new(headers: &'m [(&'m [u8], &'m [u8])], body: &'m [u8]) -> Self {
        let mut by_name: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, (name, _)) in headers.iter().enumerate() {
            by_name.entry(name_key(name)).or_default().push(i);
        }
        SignedMessage {
            headers,
            body,
            by_name,
            body_hashes: Vec::new(),
        }
    }

    /// Checks `signature` (the AMS whose raw field is `name: value`) with
    /// the key record `record` (the TXT text mail-auth's key parser
    /// accepted).
    ///
    /// # Errors
    ///
    /// Why it does not verify, in words.
    pub(crate) fn verify_ams(
        &mut self,
        signature: &Signature,
        (name, value): (&[u8], &[u8]),
        record: &str,
    ) -> Result<(), String> {
        let hash = HashKind::of(signature.a)
            .ok_or_else(|| format!("algorithm {} is not one of DKIM", signature.a.name()))?;
        if signature.l != 0 {
            return Err("l= is not accepted (RFC 6376 §8.2)".to_string());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expired(signature, now) {
            return Err(format!(
                "signature expired (x={}, RFC 6376 §3.5)",
                signature.x
            ));
        }
        if self.body_hash(signature.cb, hash) != signature.bh.as_slice() {
            return Err("body hash did not verify".to_string());
        }
        if let Some(why) = dkim_key::key_unsuitable(record, signature.a.name()) {
            return Err(why);
        }
        let key = dkim_key::key_record_p(record)
            .filter(|p| !p.is_empty())
            .ok_or("the key record has no key (p= empty: revoked)")?;
        let key = dkim_key::base64_decode(key).ok_or("the key is not valid base64")?;
        let data = self.signed_data(signature, name, value);
        match signature.a {
            Algorithm::Ed25519Sha256 => {
                // RFC 8463 §3: Ed25519 signs the SHA-256 of the data.
                let hashed = digest::digest(&SHA256, &data);
                UnparsedPublicKey::new(&ED25519, &key)
                    .verify(hashed.as_ref(), &signature.b)
                    .map_err(|_| "signature did not verify".to_string())
            }
            Algorithm::RsaSha256 | Algorithm::RsaSha1 => {
                let pkcs1 = dkim_key::rsa_public_key(&key).ok_or("the RSA key does not parse")?;
                let algorithm = if signature.a == Algorithm::RsaSha1 {
                    &RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
                } else {
                    &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
                };
                UnparsedPublicKey::new(algorithm, pkcs1)
                    .verify(&data, &signature.b)
                    .map_err(|_| "signature did not verify".to_string())
            }
            Algorithm::MlDsa44 => Err("ML-DSA is not a DKIM algorithm".to_string()),
        }
    }

    /// Why the message is more than `signature` vouched for: `From` not
    /// among its signed fields, or more fields of a name a reader sees
    /// ([`SEEN_FIELDS`]) than `h=` signed (one was added above the signed
    /// ones, RFC 6376 §8.15). `None` when neither.
    pub(crate) fn added_fields(&self, signature: &Signature) -> Option<String> {
        let signed = |wanted: &str| {
            signature
                .h
                .iter()
                .filter(|name| name_key(name.as_bytes()) == wanted.as_bytes())
                .count()
        };
        if signed("from") == 0 {
            return Some("its h= does not sign From".to_string());
        }
        SEEN_FIELDS.iter().find_map(|&name| {
            let signed = signed(name);
            let present = self.by_name.get(name.as_bytes()).map_or(0, Vec::len);
            (signed > 0 && present > signed).then(|| {
                format!("the message has {present} {name} fields where its h= signs {signed}")
            })
        })
    }

    /// The body hash for `canonicalization` and `hash`, computed once.
    fn body_hash(&mut self, canonicalization: Canonicalization, hash: HashKind) -> &[u8] {
        let index = match self
            .body_hashes
            .iter()
            .position(|(key, _)| *key == (canonicalization, hash))
        {
            Some(index) => index,
            None => {
                let mut context = hash.context();
                canonical_body(self.body, canonicalization, |piece| context.update(piece));
                self.body_hashes
                    .push(((canonicalization, hash), context.finish().as_ref().to_vec()));
                self.body_hashes.len() - 1
            }
        };
        self.body_hashes
            .get(index)
            .map_or(&[][..], |(_, digest)| digest.as_slice())
    }

    /// The data the signature is over (RFC 6376 §3.7): the fields of `h=`,
    /// then the AMS itself without the value of `b=` nor its final CRLF.
    fn signed_data(&self, signature: &Signature, name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(1024);
        let mut used: HashMap<Vec<u8>, usize> = HashMap::new();
        for wanted in &signature.h {
            let key = name_key(wanted.as_bytes());
            let taken = used.entry(key.clone()).or_insert(0);
            // RFC 6376 §5.4.2: the last unused instance, from the bottom.
            let field = self
                .by_name
                .get(&key)
                .and_then(|indices| indices.len().checked_sub(*taken + 1))
                .and_then(|position| self.by_name.get(&key)?.get(position))
                .and_then(|&index| self.headers.get(index));
            if let Some((name, field_value)) = field {
                *taken += 1;
                canonical_header(signature.ch, name, field_value, &mut data);
            }
        }
        let stripped = strip_b_value(trim_crlf(value));
        canonical_header(signature.ch, name, &stripped, &mut data);
        // §3.7: the signature field is hashed without its final CRLF.
        data.truncate(data.len().saturating_sub(2));
        data
    }
}

/// `value` without its final CRLF (or LF).
fn trim_crlf(value: &[u8]) -> &[u8] {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

/// One header field canonicalized: simple (RFC 6376 §3.4.1) keeps it as it
/// is; relaxed (§3.4.2) lower-cases the name, drops white space around the
/// colon, unfolds, turns each run of white space into one space and drops
/// it at both ends. Each field ends with CRLF.
fn canonical_header(how: Canonicalization, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match how {
        Canonicalization::Simple => {
            out.extend_from_slice(name);
            out.push(b':');
            out.extend_from_slice(value);
            if !value.ends_with(b"\r\n") {
                // A field always ends with CRLF; the signature field's own
                // value was given without it.
                out.extend_from_slice(b"\r\n");
            }
        }
        Canonicalization::Relaxed => {
            out.extend(
                name.iter()
                    .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .map(u8::to_ascii_lowercase),
            );
            out.push(b':');
            relaxed_value(trim_crlf(value), out);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// RFC 6376 §3.4.2 on a field value (without its final CRLF): line breaks
/// removed, runs of SP and HTAB made one SP, none at either end.
fn relaxed_value(value: &[u8], out: &mut Vec<u8>) {
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
}

/// The signature field's value with the value of every `b=` tag removed
/// (RFC 6376 §3.7: "the value of the b= tag (including all surrounding
/// whitespace) is deleted"); everything else, `bh=` included, is kept as
/// it is.
fn strip_b_value(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (i, segment) in value.split(|&b| b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let name_start = segment
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(segment.len());
        let rest = segment.get(name_start..).unwrap_or_default();
        let name_len = rest
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'='))
            .unwrap_or(rest.len());
        let is_b = rest.get(..name_len) == Some(b"b".as_slice());
        let equals = rest.iter().position(|&b| b == b'=');
        match (is_b, equals) {
            (true, Some(equals)) => {
                let keep = name_start + equals + 1;
                out.extend_from_slice(segment.get(..keep).unwrap_or(segment));
            }
            _ => out.extend_from_slice(segment),
        }
    }
    out
}

/// Feeds the canonical body (RFC 6376 §3.4.3 simple, §3.4.4 relaxed) to
/// `sink`, in pieces: empty lines at the end are dropped, a last line
/// without CRLF gets one; simple turns an empty body into one CRLF, relaxed
/// leaves it empty; relaxed also drops white space at the end of each line
/// and turns each run of it into one space.
pub(crate) fn canonical_body(body: &[u8], how: Canonicalization, mut sink: impl FnMut(&[u8])) {
    let mut pending_empty = 0usize;
    let mut wrote = false;
    let mut line_buf = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        // The next CRLF (a bare LF or CR is part of the line).
        let end = memchr::memchr_iter(b'\n', rest)
            .find(|&i| i > 0 && rest.get(i - 1) == Some(&b'\r'))
            .map(|i| i - 1);
        let (line, after) = match end {
            Some(end) => (
                rest.get(..end).unwrap_or_default(),
                rest.get(end + 2..).unwrap_or_default(),
            ),
            None => (rest, &[][..]),
        };
        rest = after;
        let line: &[u8] = match how {
            Canonicalization::Simple => line,
            Canonicalization::Relaxed => {
                line_buf.clear();
                let mut space = false;
                for &b in line {
                    if b == b' ' || b == b'\t' {
                        space = true;
                    } else {
                        if space {
                            line_buf.push(b' ');
                        }
                        space = false;
                        line_buf.push(b);
                    }
                }
                &line_buf
            }
        };
        if line.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            sink(b"\r\n");
        }
        pending_empty = 0;
        sink(line);
        sink(b"\r\n");
        wrote = true;
    }
    if !wrote && how == Canonicalization::Simple {
        sink(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(input: &[u8], how: Canonicalization) -> Vec<u8> {
        let mut out = Vec::new();
        canonical_body(input, how, |piece| out.extend_from_slice(piece));
        out
    }

    #[test]
    fn body_canonicalization_follows_rfc6376() {
        use Canonicalization::{Relaxed, Simple};
        // RFC 6376 §3.4.5's example body.
        let example = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(body(example, Simple), b" C \r\nD \t E\r\n");
        assert_eq!(body(example, Relaxed), b" C\r\nD E\r\n");
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"", b"\r\n", b""),
            (b"\r\n", b"\r\n", b""),
            (b"\r\n\r\n", b"\r\n", b""),
            (b"a", b"a\r\n", b"a\r\n"),
            (b"a\r\n", b"a\r\n", b"a\r\n"),
            (b"a\r\n\r\nb\r\n\r\n", b"a\r\n\r\nb\r\n", b"a\r\n\r\nb\r\n"),
            (b"a \r\n \r\n", b"a \r\n \r\n", b"a\r\n"),
            (b"  \t ", b"  \t \r\n", b""),
            (b"x\ty  z\r\n", b"x\ty  z\r\n", b"x y z\r\n"),
            (b"a\nb\r\n", b"a\nb\r\n", b"a\nb\r\n"),
            (b"\n\r\n", b"\n\r\n", b"\n\r\n"),
        ];
        for &(input, simple, relaxed) in cases {
            assert_eq!(body(input, Simple), simple, "simple {input:?}");
            assert_eq!(body(input, Relaxed), relaxed, "relaxed {input:?}");
        }
    }

    #[test]
    fn header_canonicalization_follows_rfc6376() {
        // RFC 6376 §3.4.5's example header fields.
        let mut out = Vec::new();
        canonical_header(Canonicalization::Relaxed, b"A", b" X\r\n", &mut out);
        canonical_header(
            Canonicalization::Relaxed,
            b"B ",
            b" Y\t\r\n\tZ  \r\n",
            &mut out,
        );
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
        let mut out = Vec::new();
        canonical_header(
            Canonicalization::Simple,
            b"B ",
            b" Y\t\r\n\tZ  \r\n",
            &mut out,
        );
        assert_eq!(out, b"B : Y\t\r\n\tZ  \r\n");
    }

    #[test]
    fn expiry_follows_rfc6376_x_and_t() {
        let mut signature = Signature {
            x: 1_500_000_100,
            t: 1_500_000_000,
            ..Signature::default()
        };
        assert!(
            !expired(&Signature::default(), 1_800_000_000),
            "no x=: never"
        );
        assert!(expired(&signature, 1_800_000_000), "past x=");
        assert!(!expired(&signature, 1_500_000_050), "before x=");
        signature.t = 1_500_000_100;
        assert!(expired(&signature, 1_500_000_050), "x= not after t=");
    }

    #[test]
    fn fields_added_above_the_signed_ones_are_found() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"Subject", b" URGENT\r\n"),
            (b"From", b" a@example.com\r\n"),
            (b"subject ", b" [dev] notes\r\n"),
            (b"Reply-To", b" x@example.net\r\n"),
        ];
        let message = SignedMessage::new(&headers, b"");
        let mut signature = Signature {
            h: vec!["from".into(), "subject".into()],
            ..Signature::default()
        };
        assert_eq!(
            message.added_fields(&signature).as_deref(),
            Some("the message has 2 subject fields where its h= signs 1")
        );
        signature.h.push("Subject".into());
        assert_eq!(message.added_fields(&signature), None, "over-signed");
        signature.h = vec!["subject".into(), "subject".into()];
        assert_eq!(
            message.added_fields(&signature).as_deref(),
            Some("its h= does not sign From")
        );
    }

    #[test]
    fn only_the_b_value_is_removed() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"i=1; a=rsa-sha256; bh=abc=; b=xyz=",
                b"i=1; a=rsa-sha256; bh=abc=; b=",
            ),
            (b"b=xyz; bh=abc", b"b=; bh=abc"),
            (b"i=1;\r\n\tb = x\r\n\t y ;d=e", b"i=1;\r\n\tb =;d=e"),
            (b"bb=1; b=", b"bb=1; b="),
            (b"i=1", b"i=1"),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                strip_b_value(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
