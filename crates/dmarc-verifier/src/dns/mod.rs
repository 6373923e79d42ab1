//! DNS: the resolver, the shared cache, and our own lookups (DMARC records,
//! name existence).
//!
//! SPF and DKIM lookups are made by mail-auth through its resolver and our
//! [`SharedCache`]; DMARC record lookups are ours, because the raw record text
//! and "several records at one name" (RFC 9989 §4.10 step 2) must be seen.
//! Every question a message causes is recorded as a [`DnsEvent`] for the
//! decision trail.

mod cache;
pub mod zone;

pub(crate) use cache::MessageView;
pub use cache::{BoundedCache, SharedCache};

use crate::{trail::Trail, Error};
use mail_auth::hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::{DnsError as HickoryDnsError, NetError},
    proto::{op::ResponseCode, rr::Name, rr::RData, rr::RecordType as HickoryType},
    system_conf::read_system_conf,
};
use mail_auth::MessageAuthenticator;
use std::{
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use zone::RecordType;

/// Where DNS questions go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Nameservers {
    /// The system configuration (`/etc/resolv.conf`).
    #[default]
    System,
    /// These servers, over UDP with TCP fallback, in order.
    Explicit(Vec<SocketAddr>),
}

/// DNS settings of a [`crate::Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to send questions (default: the system resolver).
    pub nameservers: Nameservers,
    /// Time to wait for one answer (default 5 s).
    pub timeout: Duration,
    /// Tries per question (default 2).
    pub attempts: usize,
    /// Entries per record type in the shared cache (default 10,000).
    pub cache_size: usize,
    /// Longest time a negative answer is cached (default 1 h); answers
    /// without an SOA are cached for at most 60 s.
    pub max_negative_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Nameservers::System,
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 10_000,
            max_negative_ttl: Duration::from_secs(3600),
        }
    }
}

/// One DNS question asked while checking a message, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvent {
    /// The record type asked for.
    pub rtype: RecordType,
    /// The name asked about, without trailing dot.
    pub name: String,
    /// What the answer was, in words.
    pub answer: String,
    /// True when the answer came from the cache.
    pub cached: bool,
}

impl DnsEvent {
    pub(crate) fn new(rtype: RecordType, name: String, answer: String, cached: bool) -> Self {
        DnsEvent {
            rtype,
            name,
            answer,
            cached,
        }
    }
}

impl fmt::Display for DnsEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.rtype.as_str(), self.name, self.answer)?;
        if self.cached {
            f.write_str(" (cached)")?;
        }
        Ok(())
    }
}

/// The TXT records at a name, each record's strings concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxtAnswer {
    Records(Arc<[String]>),
    NxDomain,
    NoData,
}

/// A lookup that could not be completed: a temporary error (RFC 9989
/// §4.10.1 leaves its handling to the receiver; we report temperror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure {
    /// The name asked about.
    pub name: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS lookup of {} failed: {}", self.name, self.reason)
    }
}

/// The resolver and the shared cache of one verifier.
pub struct Dns {
    pub(crate) authenticator: MessageAuthenticator,
    pub(crate) cache: SharedCache,
    max_negative_ttl: Duration,
}

impl Dns {
    /// Builds the resolver.
    ///
    /// # Errors
    ///
    /// [`Error::Resolver`] when the system configuration cannot be read or
    /// the resolver cannot be built.
    pub fn new(config: &DnsConfig) -> Result<Dns, Error> {
        let (resolver_config, mut opts) = match &config.nameservers {
            Nameservers::System => {
                read_system_conf().map_err(|e| Error::Resolver(e.to_string()))?
            }
            Nameservers::Explicit(addrs) => {
                let servers = addrs
                    .iter()
                    .map(|addr| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                (
                    ResolverConfig::from_parts(None, vec![], servers),
                    ResolverOpts::default(),
                )
            }
        };
        opts.timeout = config.timeout;
        opts.attempts = config.attempts.max(1);
        // Names we ask about are absolute: never append search domains.
        opts.ndots = 0;
        // Our own cache sits in front; keep hickory's small.
        opts.cache_size = 0;
        let authenticator = MessageAuthenticator::new(resolver_config, opts)
            .map_err(|e| Error::Resolver(e.to_string()))?
            .with_max_negative_ttl(config.max_negative_ttl);
        Ok(Dns {
            authenticator,
            cache: SharedCache::new(config.cache_size),
            max_negative_ttl: config.max_negative_ttl,
        })
    }

    /// The TXT records at `name` (our DMARC lookups), cached.
    pub(crate) async fn txt(&self, name: &str, trail: &Trail) -> Result<TxtAnswer, DnsFailure> {
        let key = fqdn(name);
        if let Some(answer) = self.cache.raw_txt.get(key.as_str()) {
            trail.dns(DnsEvent::new(
                RecordType::Txt,
                name.to_string(),
                describe_txt(&answer),
                true,
            ));
            return Ok(answer);
        }
        let result = match Name::from_ascii(&key) {
            Ok(query) => self.authenticator.resolver().txt_lookup(query).await,
            Err(e) => {
                return Err(DnsFailure {
                    name: name.to_string(),
                    reason: format!("invalid name: {e}"),
                })
            }
        };
        let (answer, expires) = match result {
            Ok(lookup) => {
                let records: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => {
                            let bytes: Vec<u8> = txt
                                .txt_data
                                .iter()
                                .flat_map(|s| s.iter().copied())
                                .collect();
                            Some(String::from_utf8_lossy(&bytes).into_owned())
                        }
                        _ => None,
                    })
                    .collect();
                let answer = if records.is_empty() {
                    TxtAnswer::NoData
                } else {
                    TxtAnswer::Records(records.into())
                };
                (answer, lookup.valid_until())
            }
            Err(err) => match self.negative(&err) {
                Some((answer, expires)) => (answer, expires),
                None => {
                    let failure = DnsFailure {
                        name: name.to_string(),
                        reason: err.to_string(),
                    };
                    trail.dns(DnsEvent::new(
                        RecordType::Txt,
                        name.to_string(),
                        format!("error: {}", failure.reason),
                        false,
                    ));
                    return Err(failure);
                }
            },
        };
        trail.dns(DnsEvent::new(
            RecordType::Txt,
            name.to_string(),
            describe_txt(&answer),
            false,
        ));
        self.cache
            .raw_txt
            .insert(key.into_boxed_str(), answer.clone(), expires);
        Ok(answer)
    }

    /// Whether `name` exists (RFC 8020: NXDOMAIN means it and everything
    /// below it do not). Asks for A records; NODATA means the name exists.
    pub(crate) async fn exists(&self, name: &str, trail: &Trail) -> Result<bool, DnsFailure> {
        let key = fqdn(name);
        if let Some(exists) = self.cache.exists.get(key.as_str()) {
            trail.dns(DnsEvent::new(
                RecordType::A,
                name.to_string(),
                describe_exists(exists),
                true,
            ));
            return Ok(exists);
        }
        let query = Name::from_ascii(&key).map_err(|e| DnsFailure {
            name: name.to_string(),
            reason: format!("invalid name: {e}"),
        })?;
        let (exists, expires) = match self
            .authenticator
            .resolver()
            .lookup(query, HickoryType::A)
            .await
        {
            Ok(lookup) => (true, lookup.valid_until()),
            Err(err) => match self.negative(&err) {
                Some((TxtAnswer::NxDomain, expires)) => (false, expires),
                Some((_, expires)) => (true, expires),
                None => {
                    trail.dns(DnsEvent::new(
                        RecordType::A,
                        name.to_string(),
                        format!("error: {err}"),
                        false,
                    ));
                    return Err(DnsFailure {
                        name: name.to_string(),
                        reason: err.to_string(),
                    });
                }
            },
        };
        trail.dns(DnsEvent::new(
            RecordType::A,
            name.to_string(),
            describe_exists(exists),
            false,
        ));
        self.cache
            .exists
            .insert(key.into_boxed_str(), exists, expires);
        Ok(exists)
    }

    /// A negative answer (NXDOMAIN or NODATA) and how long to keep it
    /// (RFC 2308 §5: the SOA-derived TTL, capped), or `None` for a failure.
    fn negative(&self, err: &NetError) -> Option<(TxtAnswer, Instant)> {
        let NetError::Dns(HickoryDnsError::NoRecordsFound(no_records)) = err else {
            return None;
        };
        let ttl = no_records
            .negative_ttl
            .map_or(Duration::from_secs(60), |ttl| {
                Duration::from_secs(u64::from(ttl))
            })
            .min(self.max_negative_ttl);
        let answer = if no_records.response_code == ResponseCode::NXDomain {
            TxtAnswer::NxDomain
        } else {
            TxtAnswer::NoData
        };
        Some((answer, Instant::now() + ttl))
    }
}

fn fqdn(name: &str) -> String {
    let mut key = name.trim_end_matches('.').to_ascii_lowercase();
    key.push('.');
    key
}

fn describe_txt(answer: &TxtAnswer) -> String {
    match answer {
        TxtAnswer::Records(records) => records
            .iter()
            .map(|r| format!("\"{}\"", r.escape_debug()))
            .collect::<Vec<_>>()
            .join(", "),
        TxtAnswer::NxDomain => "NXDOMAIN".to_string(),
        TxtAnswer::NoData => "no TXT records (NODATA)".to_string(),
    }
}

fn describe_exists(exists: bool) -> String {
    if exists {
        "the name exists".to_string()
    } else {
        "NXDOMAIN: the name does not exist".to_string()
    }
}
