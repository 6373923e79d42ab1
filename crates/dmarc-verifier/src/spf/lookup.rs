//! How the SPF engine asks the DNS: the [`SpfLookup`] trait, and its
//! implementation for a [`Zone`] (tests, benches, `check-eml --zone`).
//!
//! The engine asks only for the record types RFC 7208 names: TXT (the
//! records, §4.4, and explanations, §6.2), A and AAAA (`a`, `mx`, `ptr`,
//! §5.3 to §5.5; `exists` asks A only, §5.7), MX (§5.4) and PTR (`ptr` and
//! `%{p}`, §5.5, §7.3). It never asks for type SPF (RFC 7208 §3.1).

use crate::dns::zone::{canonical_name, name_labels, RecordData, RecordType, Zone, ZoneAnswer};
use std::{
    fmt,
    future::{ready, Future},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

/// What the DNS answered to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The records of the asked type (after the resolver followed any
    /// CNAME). An empty list is read as [`Answer::NoData`].
    Records(Arc<[T]>),
    /// The name does not exist (RCODE 3, NXDOMAIN).
    NxDomain,
    /// The name exists but has no record of this type (RCODE 0 and no
    /// answer: NODATA).
    NoData,
}

impl<T> Answer<T> {
    /// The records; empty for [`Answer::NxDomain`] and [`Answer::NoData`].
    pub fn records(&self) -> &[T] {
        match self {
            Answer::Records(records) => records,
            Answer::NxDomain | Answer::NoData => &[],
        }
    }

    /// Whether the answer holds no record: a "void lookup" of RFC 7208
    /// §4.6.4 when a term asked.
    pub fn is_void(&self) -> bool {
        self.records().is_empty()
    }
}

/// A transient failure to get an answer: a timeout, SERVFAIL, REFUSED or
/// any RCODE other than 0 and 3 (RFC 7208 §2.6.6, §5: the lookups of
/// terms then give `temperror`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    /// What failed, for the decision trail: `"timeout"`, `"SERVFAIL"`…
    pub reason: String,
}

impl LookupError {
    /// A failure described by `reason`.
    pub fn new(reason: impl Into<String>) -> LookupError {
        LookupError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for LookupError {}

/// The DNS as the SPF engine sees it.
///
/// Names passed in are what SPF computed: lower case (ASCII), without a
/// trailing dot, labels separated by `.`, each label 1 to 63 octets and the
/// whole at most 253 octets (the engine checks this before asking, RFC 7208
/// §4.3, §4.8). A label holds the characters the record and the macros put
/// there: any printable ASCII character (`%`, `:`, `/`, `\`…, RFC 7208
/// §7.1), a space (`%_`), or text of the envelope (`%{l}`, `%{h}`), which
/// may be any UTF-8. They are queried as they are (RFC 2181 §11: any octet
/// is legal in a label); a `\` is an octet, not an escape.
///
/// An implementation answers from its cache or the network, and reports
/// NXDOMAIN and NODATA as answers, not errors; [`LookupError`] is for
/// failures where no answer was had. It follows CNAMEs as resolvers do.
pub trait SpfLookup: Sync {
    /// The TXT records at `name`: each record's character-strings
    /// concatenated without separator (RFC 7208 §3.3).
    fn txt(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Box<[u8]>>, LookupError>> + Send;

    /// The A records at `name`.
    fn a(&self, name: &str) -> impl Future<Output = Result<Answer<Ipv4Addr>, LookupError>> + Send;

    /// The AAAA records at `name`.
    fn aaaa(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Ipv6Addr>, LookupError>> + Send;

    /// The MX records at `name`: (preference, exchange), the exchange in
    /// lower case without the trailing dot (`""` for the root, a null MX
    /// of RFC 7505).
    fn mx(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<(u16, Box<str>)>, LookupError>> + Send;

    /// The PTR records of `ip` (at [`reverse_name`]`(ip)`): the names, in
    /// lower case without the trailing dot.
    fn ptr(&self, ip: IpAddr)
        -> impl Future<Output = Result<Answer<Box<str>>, LookupError>> + Send;
}

/// The name whose PTR records map `ip` back to names (RFC 1035 §3.5,
/// RFC 3596 §2.5): `4.3.2.1.in-addr.arpa` for 1.2.3.4, 32 nibbles in
/// lower case under `ip6.arpa` for an IPv6 address.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::spf::reverse_name;
///
/// assert_eq!(reverse_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
/// assert!(reverse_name("2001:db8::1".parse().unwrap())
///     .starts_with("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."));
/// ```
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(ip) => {
            let mut name = String::with_capacity(72);
            for octet in ip.octets().iter().rev() {
                for nibble in [octet & 0x0f, octet >> 4] {
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    name.push('.');
                }
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The [`Zone`] answers as an authoritative server would, without I/O:
/// every future is ready at once and no lookup fails.
impl SpfLookup for Zone {
    fn txt(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Box<[u8]>>, LookupError>> + Send {
        ready(Ok(zone_answer(
            self,
            name,
            RecordType::Txt,
            |data| match data {
                RecordData::Txt(strings) => Some(strings.concat().into_boxed_slice()),
                _ => None,
            },
        )))
    }

    fn a(&self, name: &str) -> impl Future<Output = Result<Answer<Ipv4Addr>, LookupError>> + Send {
        ready(Ok(zone_answer(
            self,
            name,
            RecordType::A,
            |data| match data {
                RecordData::A(address) => Some(*address),
                _ => None,
            },
        )))
    }

    fn aaaa(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Ipv6Addr>, LookupError>> + Send {
        ready(Ok(zone_answer(
            self,
            name,
            RecordType::Aaaa,
            |data| match data {
                RecordData::Aaaa(address) => Some(*address),
                _ => None,
            },
        )))
    }

    fn mx(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<(u16, Box<str>)>, LookupError>> + Send {
        ready(Ok(zone_answer(
            self,
            name,
            RecordType::Mx,
            |data| match data {
                RecordData::Mx {
                    preference,
                    exchange,
                } => Some((*preference, raw_name(exchange))),
                _ => None,
            },
        )))
    }

    fn ptr(
        &self,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Answer<Box<str>>, LookupError>> + Send {
        ready(Ok(zone_answer(
            self,
            &reverse_name(ip),
            RecordType::Ptr,
            |data| match data {
                RecordData::Ptr(target) => Some(raw_name(target)),
                _ => None,
            },
        )))
    }
}

/// Asks the zone about an SPF name, keeping the data `pick` takes.
fn zone_answer<T>(
    zone: &Zone,
    name: &str,
    rtype: RecordType,
    pick: impl Fn(&RecordData) -> Option<T>,
) -> Answer<T> {
    // The zone reads names as presentation text: escape what SPF means
    // as octets (a `\`, a space).
    let zone_name = canonical_name(name.split('.').map(str::as_bytes));
    match zone.lookup(&zone_name, rtype) {
        ZoneAnswer::Records { records, .. } => {
            let records: Vec<T> = records
                .iter()
                .filter_map(|record| pick(&record.data))
                .collect();
            if records.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(records.into())
            }
        }
        ZoneAnswer::NoData { .. } => Answer::NoData,
        ZoneAnswer::NxDomain { .. } => Answer::NxDomain,
    }
}

/// A name of the zone (canonical presentation text) as SPF text: labels
/// joined by dots, escapes decoded. A label holding a dot cannot be
/// written so; such a name is kept in the zone's text.
fn raw_name(name: &str) -> Box<str> {
    match name_labels(name) {
        Some(labels) if labels.iter().all(|label| !label.contains(&b'.')) => labels
            .iter()
            .map(|label| String::from_utf8_lossy(label))
            .collect::<Vec<_>>()
            .join(".")
            .into_boxed_str(),
        _ => name.into(),
    }
}
