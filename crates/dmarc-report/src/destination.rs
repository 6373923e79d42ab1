//! Report destinations (`rua`, `ruf`): which `mailto:` addresses are
//! usable at all, in one normal form, deduplicated and capped per record.
//!
//! A DMARC record is written by whoever controls the domain, for a forged
//! From the attacker; its destination lists are therefore attacker-sized
//! and attacker-chosen. Every path that sends or keeps destinations (the
//! record stored per message, the aggregate run, the failure reports)
//! goes through [`usable_address`] and [`normalize`], so that:
//!
//! - only `mailto:` URIs count (RFC 9990 §3: the only scheme defined);
//! - the address is one an MTA routes by its domain alone: the local part
//!   is a dot-atom without `%` or `!` (the "percent hack" and UUCP bang
//!   paths make a relay forward `victim%third.example@relay.example` to
//!   `victim@third.example`, which would bypass the consent check of
//!   RFC 9990 §4 done for `relay.example`), no quoted string, no source
//!   route, and the domain is a host name of letters, digits and hyphens
//!   (no address literal); a `%` anywhere, percent-encoded (RFC 6068) or
//!   not, makes the address unusable (fail closed);
//! - the address is written in lower case, so that one mailbox is one
//!   destination (repeats collapse) and one key for rate limits, whatever
//!   the case it was published in;
//! - a record yields at most a configured number of destinations per list
//!   (RFC 9989 Appendix C.7 keeps RFC 7489's "Receivers MAY impose a limit
//!   on the number of URIs"; we honour at least two, as it asks).

use crate::model::ReportDestination;
use std::collections::HashSet;

/// The longest address accepted (RFC 5321 §4.5.3.1.3: a path is at most
/// 256 octets including the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// The longest local part accepted (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Default cap on `rua` destinations kept per record.
pub const DEFAULT_MAX_RUA: usize = 10;

/// Default cap on `ruf` destinations kept per record.
pub const DEFAULT_MAX_RUF: usize = 5;

/// The address of a `mailto:` URI when it is usable as a report
/// destination (see the module documentation), in lower case; `None`
/// otherwise.
///
/// # Examples
///
/// ```
/// use dmarc_report::destination::usable_address;
/// assert_eq!(usable_address("mailto:DMARC@Example.COM?subject=x").as_deref(), Some("dmarc@example.com"));
/// assert_eq!(usable_address("mailto:victim%third.example@relay.example"), None);
/// assert_eq!(usable_address("https://example.com/rua"), None);
/// ```
pub fn usable_address(uri: &str) -> Option<String> {
    let address = dmarc_verifier::record::mailto_address(uri)?;
    if address.len() > MAX_ADDRESS_LEN {
        return None;
    }
    let (local, domain) = address.rsplit_once('@')?;
    if !is_plain_local_part(local) || !is_host_name(domain) {
        return None;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    Some(format!("{local}@{domain}").to_ascii_lowercase())
}

/// RFC 5322 §3.4.1 `dot-atom-text` without `%` and `!`: atoms of
/// `atext` joined by single dots.
fn is_plain_local_part(local: &str) -> bool {
    let atext = |b: u8| {
        b.is_ascii_alphanumeric() || b"#$&'*+-/=?^_`{|}~".contains(&b)
        // RFC 5322 atext also has "!" and "%": left out on purpose.
    };
    !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
}

/// A host name (RFC 1123 §2.1): labels of letters, digits and hyphens, not
/// starting or ending with a hyphen, 1-63 octets each, at least two
/// labels, at most 253 octets in all; one trailing dot allowed.
pub fn is_host_name(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.len() > 253 {
        return false;
    }
    let mut labels = 0;
    for label in domain.split('.') {
        labels += 1;
        let bytes = label.as_bytes();
        let ok = (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        if !ok {
            return false;
        }
    }
    labels >= 2
}

/// The domain of a normalised address (what follows the last `@`).
pub fn address_domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// Destinations as they are kept and used: usable addresses only, each
/// once (the first with its size limit wins), at most `max`; the second
/// value is how many were left out.
///
/// Each kept destination is written back as `mailto:<address>` in lower
/// case, without `?headers`.
pub fn normalize(
    destinations: &[ReportDestination],
    max: usize,
) -> (Vec<ReportDestination>, usize) {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for destination in destinations {
        let Some(address) = usable_address(&destination.uri) else {
            dropped += 1;
            continue;
        };
        if !seen.insert(address.clone()) || kept.len() >= max {
            dropped += 1;
            continue;
        }
        kept.push(ReportDestination {
            uri: format!("mailto:{address}"),
            max_size: destination.max_size,
        });
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_mailto_addresses_are_usable() {
        let usable = [
            ("mailto:rua@example.com", "rua@example.com"),
            ("MAILTO:Rua@Example.COM", "rua@example.com"),
            (
                "mailto:a.b+tag=x@mx.example.net?subject=hi",
                "a.b+tag=x@mx.example.net",
            ),
            ("mailto:dmarc@example.com.", "dmarc@example.com"),
        ];
        for (uri, address) in usable {
            assert_eq!(usable_address(uri).as_deref(), Some(address), "{uri}");
        }
        let unusable = [
            "https://example.com/rua",
            "mailto:nobody",
            "mailto:@example.com",
            // Relay hacks that route past the consent check of the host.
            "mailto:victim%third.example@ourdomain.example",
            "mailto:victim%25third.example@ourdomain.example",
            "mailto:third.example!victim@ourdomain.example",
            "mailto:\"victim@third.example\"@ourdomain.example",
            "mailto:@relay.example:victim@third.example",
            // Not a dot-atom, not a host name.
            "mailto:a..b@example.com",
            "mailto:.a@example.com",
            "mailto:a b@example.com",
            "mailto:a@[192.0.2.1]",
            "mailto:a@localhost",
            "mailto:a@-x.example",
            "mailto:a@exa_mple.com",
            "mailto:a@b\u{fc}cher.example",
            "mailto:a\u{fc}@example.com",
        ];
        for uri in unusable {
            assert_eq!(usable_address(uri), None, "{uri}");
        }
        let long_local = format!("mailto:{}@example.com", "a".repeat(65));
        assert_eq!(usable_address(&long_local), None);
        let long_domain = format!("mailto:a@{}.example", "b.".repeat(130));
        assert_eq!(usable_address(&long_domain), None);
    }

    #[test]
    fn lists_are_deduplicated_and_capped() {
        let uris: Vec<ReportDestination> = [
            "mailto:one@example.com!10m",
            "mailto:ONE@example.com",
            "mailto:x%y@example.com",
            "mailto:two@example.com",
            "mailto:three@example.com",
        ]
        .iter()
        .map(|uri| {
            let (uri, size) = uri
                .split_once('!')
                .map_or((*uri, None), |(u, _)| (u, Some(10)));
            ReportDestination {
                uri: uri.to_string(),
                max_size: size,
            }
        })
        .collect();
        let (kept, dropped) = normalize(&uris, 2);
        assert_eq!(
            kept,
            vec![
                ReportDestination {
                    uri: "mailto:one@example.com".to_string(),
                    max_size: Some(10)
                },
                ReportDestination {
                    uri: "mailto:two@example.com".to_string(),
                    max_size: None
                },
            ]
        );
        assert_eq!(dropped, 3);

        let many: Vec<ReportDestination> = (0..500)
            .map(|_| ReportDestination {
                uri: "mailto:same@example.com".to_string(),
                max_size: None,
            })
            .collect();
        let (kept, dropped) = normalize(&many, 10);
        assert_eq!((kept.len(), dropped), (1, 499));
    }
}
