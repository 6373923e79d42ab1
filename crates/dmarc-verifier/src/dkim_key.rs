//! Small DKIM helpers mail-auth does not expose: the RSA key size of a key
//! record (RFC 8301 §3.2 needs it) and the `header.b` prefix (RFC 6008).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 decoding, ignoring white space; `None` on bad input.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in text.bytes() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if b == b'=' {
            break;
        }
        let value = ALPHABET.iter().position(|&c| c == b)?;
        acc = (acc << 6) | u32::try_from(value).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The first 8 base64 characters of a signature (RFC 6008 §2: enough to
/// tell signatures apart).
pub(crate) fn b_prefix(signature: &[u8]) -> String {
    let mut out = String::with_capacity(8);
    for chunk in signature.chunks(3).take(2) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            }
        }
    }
    out
}

/// Reads one DER TLV at the start of `der`: (tag, content, rest).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(octets)?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The modulus size in bits of an RSA public key in DER: SubjectPublicKeyInfo
/// (RFC 6376 §3.6.1) or a bare RSAPublicKey (RFC 8017 §A.1.1).
pub(crate) fn rsa_modulus_bits(der: &[u8]) -> Option<u32> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    let (tag, outer, _) = der_tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (first_tag, first, rest) = der_tlv(outer)?;
    let modulus = match first_tag {
        INTEGER => first,
        SEQUENCE => {
            let (tag, bits, _) = der_tlv(rest)?;
            if tag != BIT_STRING {
                return None;
            }
            let (_unused_bits, key) = bits.split_first()?;
            let (tag, rsa_key, _) = der_tlv(key)?;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, modulus, _) = der_tlv(rsa_key)?;
            if tag != INTEGER {
                return None;
            }
            modulus
        }
        _ => return None,
    };
    let first_nonzero = modulus.iter().position(|&b| b != 0)?;
    let significant = modulus.get(first_nonzero..)?;
    let top = *significant.first()?;
    let bits = u32::try_from(significant.len()).ok()?.checked_mul(8)? - top.leading_zeros();
    Some(bits)
}

/// The RSAPublicKey (RFC 8017 §A.1.1, what aws-lc verifies with) in an RSA
/// public key in DER: the key inside a SubjectPublicKeyInfo (RFC 6376
/// §3.6.1's `p=`), or the input itself when it is already an RSAPublicKey.
pub(crate) fn rsa_public_key(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    let (tag, outer, _) = der_tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (first_tag, _, rest) = der_tlv(outer)?;
    match first_tag {
        INTEGER => Some(der),
        SEQUENCE => {
            let (tag, bits, _) = der_tlv(rest)?;
            if tag != BIT_STRING {
                return None;
            }
            let (_unused_bits, key) = bits.split_first()?;
            let (tag, _, _) = der_tlv(key)?;
            (tag == SEQUENCE).then_some(key)
        }
        _ => None,
    }
}

/// The `p=` value of a DKIM key record, if any.
pub(crate) fn key_record_p(record: &str) -> Option<&str> {
    key_record_tag(record, "p")
}

/// The value of tag `name` in a DKIM key record (RFC 6376 §3.6.1, a
/// tag-list of §3.2), trimmed; the first occurrence.
pub(crate) fn key_record_tag<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.split(';').find_map(|tag| {
        let (tag_name, value) = tag.split_once('=')?;
        (tag_name.trim() == name).then(|| value.trim())
    })
}

/// Why a key record that parsed cannot verify a signature of algorithm
/// `algorithm` (`rsa-sha256`, `ed25519-sha256` …), or `None` when it can:
/// RFC 6376 §6.1.2, the key type (`k=`, default `rsa`) must be the one
/// `a=` names, and the key's hash algorithms (`h=`, default all) must
/// include the one `a=` names.
pub(crate) fn key_unsuitable(record: &str, algorithm: &str) -> Option<String> {
    let (key_type, hash) = algorithm.split_once('-')?;
    let published = key_record_tag(record, "k").unwrap_or("rsa");
    if !published.eq_ignore_ascii_case(key_type) {
        return Some(format!(
            "key type k={published} cannot verify a={algorithm} (RFC 6376 §6.1.2)"
        ));
    }
    if let Some(hashes) = key_record_tag(record, "h") {
        if !hashes
            .split(':')
            .any(|h| h.trim().eq_ignore_ascii_case(hash))
        {
            return Some(format!(
                "key allows h={hashes}, not {hash} (RFC 6376 §6.1.2)"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_prefix() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVs bG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("a*b"), None);
        assert_eq!(b_prefix(b"hello world"), "aGVsbG8g");
        assert_eq!(b_prefix(b"hi"), "aGk");
        assert_eq!(b_prefix(b""), "");
    }

    #[test]
    fn modulus_bits_of_spki_and_pkcs1() {
        // SPKI of a 1024-bit key (the RFC 6376 appendix C example key).
        let spki = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB";
        let der = base64_decode(spki).unwrap();
        assert_eq!(rsa_modulus_bits(&der), Some(1024));
        // The RSAPublicKey inside it.
        let inner = &der[22..];
        assert_eq!(rsa_modulus_bits(inner), Some(1024));
        assert_eq!(rsa_modulus_bits(b"\x30\x03\x02\x01\x05"), Some(3));
        assert_eq!(rsa_modulus_bits(b"garbage"), None);
        assert_eq!(rsa_public_key(&der), Some(inner));
        assert_eq!(rsa_public_key(inner), Some(inner));
        assert_eq!(rsa_public_key(b"garbage"), None);
        assert_eq!(rsa_modulus_bits(b""), None);
        assert_eq!(key_record_p("v=DKIM1; k=rsa; p=abc "), Some("abc"));
        assert_eq!(key_record_p("v=DKIM1"), None);
    }

    #[test]
    fn key_suitability_follows_k_and_h() {
        assert_eq!(key_unsuitable("v=DKIM1; p=abc", "rsa-sha256"), None);
        assert_eq!(key_unsuitable("v=DKIM1; k=RSA; p=abc", "rsa-sha1"), None);
        assert_eq!(
            key_unsuitable("v=DKIM1; k=ed25519; h=sha256; p=abc", "ed25519-sha256"),
            None
        );
        assert!(key_unsuitable("v=DKIM1; p=abc", "ed25519-sha256").is_some());
        assert!(key_unsuitable("v=DKIM1; k=ed25519; p=abc", "rsa-sha256").is_some());
        assert!(key_unsuitable("v=DKIM1; h=sha1; p=abc", "rsa-sha256").is_some());
    }
}
