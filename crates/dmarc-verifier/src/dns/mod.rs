//! DNS: the resolver, the shared cache, and our own lookups (DMARC records,
//! name existence).
//!
//! DMARC record lookups are ours, because the raw record text and "several
//! records at one name" (RFC 9989 §4.10 step 2) must be seen; so are the
//! first lookups of SPF and every DKIM key lookup. mail-auth's SPF and DKIM
//! read them, and make their other lookups, through per-message views of
//! the [`SharedCache`] (see the `cache` module for why no answer can depend
//! on who asked first). Every question a message causes is recorded as a
//! [`DnsEvent`] for the decision trail.

mod cache;
mod observe;
pub mod zone;

pub use cache::{CacheKey, SharedCache, TtlCache, Weight};
pub(crate) use cache::{DkimView, SpfView};
pub use observe::{nameserver_addresses, CacheName, DnsObserver, DnsOutcome, NoObserver};

use crate::{trail::Trail, Error};
use mail_auth::hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::{DnsError as HickoryDnsError, NetError},
    proto::{op::ResponseCode, rr::Name, rr::RData, rr::RecordType as HickoryType},
    system_conf::read_system_conf,
};
use mail_auth::{
    dkim::DomainKey, dns::TxtRecordParser, spf::SpfRecord, MessageAuthenticator, TxtRecord,
};
use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::OnceCell;
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
    /// Capacity of each of the shared caches (one per record type and
    /// purpose), in entries; an answer over 1 KiB counts as one entry per
    /// KiB started (default 10,000).
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
    Records(Arc<[Vec<u8>]>),
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
    /// The kind of failure: [`DnsOutcome::Timeout`], [`DnsOutcome::ServFail`]
    /// or [`DnsOutcome::Other`].
    pub outcome: DnsOutcome,
    /// False when the name itself cannot be asked (not a valid DNS name):
    /// retrying cannot help.
    pub(crate) transient: bool,
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
    observer: Arc<dyn DnsObserver>,
    max_negative_ttl: Duration,
    /// TXT questions being asked now: concurrent identical questions wait
    /// for the one in flight instead of asking again.
    inflight_txt: InFlight<Result<(TxtAnswer, Instant), DnsFailure>>,
    inflight_exists: InFlight<Result<(bool, Instant), DnsFailure>>,
}

/// How long a failed lookup is remembered (RFC 2308 §7.1 allows up to five
/// minutes for server failures).
const FAILURE_TTL: Duration = Duration::from_secs(5);

/// Questions in flight, keyed by FQDN. No lock is held across a query: the
/// map only hands out the shared cell each asker waits on.
type InFlight<T> = Mutex<HashMap<Box<str>, Arc<OnceCell<T>>>>;

/// Waits on the cell for `key`, running `query` if no one else is.
async fn coalesce<T: Clone, F: std::future::Future<Output = T>>(
    inflight: &InFlight<T>,
    key: &str,
    query: impl FnOnce() -> F,
) -> T {
    let cell = {
        let mut map = inflight.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.into()).or_default().clone()
    };
    let result = cell.get_or_init(query).await.clone();
    let mut map = inflight.lock().unwrap_or_else(|p| p.into_inner());
    if map
        .get(key)
        .is_some_and(|current| Arc::ptr_eq(current, &cell))
    {
        map.remove(key);
    }
    result
}

impl Dns {
    /// Builds the resolver.
    ///
    /// # Errors
    ///
    /// [`Error::Resolver`] when the system configuration cannot be read or
    /// the resolver cannot be built.
    pub fn new(config: &DnsConfig) -> Result<Dns, Error> {
        Self::observed(config, Arc::new(NoObserver))
    }

    /// [`Dns::new`] reporting every question and cache lookup to
    /// `observer`.
    ///
    /// # Errors
    ///
    /// As [`Dns::new`].
    pub fn observed(config: &DnsConfig, observer: Arc<dyn DnsObserver>) -> Result<Dns, Error> {
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
        // hickory's `attempts` counts retries after the first try; ours
        // counts tries.
        opts.attempts = config.attempts.max(1) - 1;
        // Names we ask about are absolute: never append search domains.
        opts.ndots = 0;
        // Our own cache sits in front; keep hickory's small.
        opts.cache_size = 0;
        let authenticator = MessageAuthenticator::new(resolver_config, opts)
            .map_err(|e| Error::Resolver(e.to_string()))?
            .with_max_negative_ttl(config.max_negative_ttl);
        Ok(Dns {
            authenticator,
            cache: SharedCache::new(config.cache_size, observer.clone()),
            observer,
            max_negative_ttl: config.max_negative_ttl,
            inflight_txt: Mutex::default(),
            inflight_exists: Mutex::default(),
        })
    }

    /// The TXT records at `name`, each record's strings concatenated;
    /// `None` when the name does not exist or has no TXT record. Answers
    /// are cached like every other lookup. For callers outside the
    /// verifier, such as report destination checks (RFC 9990 §4).
    ///
    /// # Errors
    ///
    /// [`DnsFailure`] when the question could not be answered.
    pub async fn lookup_txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, DnsFailure> {
        let trail = Trail::new(false);
        match self.txt(name, &trail).await? {
            TxtAnswer::Records(records) => Ok(Some(records.to_vec())),
            TxtAnswer::NxDomain | TxtAnswer::NoData => Ok(None),
        }
    }

    /// The TXT records at `name` (our DMARC lookups), cached; concurrent
    /// identical questions are asked once.
    pub(crate) async fn txt(&self, name: &str, trail: &Trail) -> Result<TxtAnswer, DnsFailure> {
        self.txt_until(name, trail).await.map(|(answer, _)| answer)
    }

    /// [`Dns::txt`] with the time the answer expires.
    async fn txt_until(
        &self,
        name: &str,
        trail: &Trail,
    ) -> Result<(TxtAnswer, Instant), DnsFailure> {
        let key = fqdn(name);
        if let Some((answer, expires)) = self.cache.raw_txt.get_with_expiry(key.as_str()) {
            trail.dns_with(|| {
                DnsEvent::new(
                    RecordType::Txt,
                    name.to_string(),
                    describe_txt(&answer),
                    true,
                )
            });
            return Ok((answer, expires));
        }
        if let Some(failure) = self.cache.failed_txt.get(key.as_str()) {
            trail.dns_with(|| {
                DnsEvent::new(
                    RecordType::Txt,
                    name.to_string(),
                    format!("error: {} (failed moments ago)", failure.reason),
                    true,
                )
            });
            return Err(failure);
        }
        let result = coalesce(&self.inflight_txt, &key, || self.resolve_txt(&key)).await;
        if let Err(failure) = &result {
            // RFC 2308 §7.1: a server failure may be cached, for at most five
            // minutes; a few seconds keep one message (and its neighbours)
            // from waiting for the same timeout twice.
            self.cache.failed_txt.insert(
                key.clone().into_boxed_str(),
                failure.clone(),
                Instant::now() + FAILURE_TTL,
            );
        }
        let described = match &result {
            Ok((answer, _)) => describe_txt(answer),
            Err(failure) => format!("error: {}", failure.reason),
        };
        trail.dns_with(|| DnsEvent::new(RecordType::Txt, name.to_string(), described, false));
        result
    }

    /// Asks the resolver for the TXT records at `key` and caches the answer.
    async fn resolve_txt(&self, key: &str) -> Result<(TxtAnswer, Instant), DnsFailure> {
        let name = key.trim_end_matches('.');
        let query = query_name(key)?;
        let started = Instant::now();
        let result = self.authenticator.resolver().txt_lookup(query).await;
        self.observer.question(
            RecordType::Txt,
            outcome_of(result.as_ref().map(|l| l.answers().is_empty())),
            started.elapsed(),
        );
        let (answer, expires) = match result {
            Ok(lookup) => {
                let records: Vec<Vec<u8>> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .flat_map(|s| s.iter().copied())
                                .collect(),
                        ),
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
            Err(err) => self.negative(&err).ok_or_else(|| DnsFailure {
                name: name.to_string(),
                reason: err.to_string(),
                outcome: outcome_of::<bool>(Err(&err)),
                transient: true,
            })?,
        };
        self.cache
            .raw_txt
            .insert(key.into(), answer.clone(), expires);
        Ok((answer, expires))
    }

    /// The DKIM key record at `name` (`<selector>._domainkey.<domain>`),
    /// parsed from the raw TXT answer and cached for mail-auth's DKIM
    /// verification (see [`DkimView`]); concurrent messages asking for the
    /// same key cause one query. A transient failure is returned as the
    /// resolver error mail-auth turns into `temperror`. `None` when `name`
    /// cannot be asked about at all (mail-auth then finds it invalid).
    pub(crate) async fn dkim_key(&self, name: &str, trail: &Trail) -> Option<TxtRecord> {
        let key = fqdn(name);
        if let Some(record) = self.cache.dkim_keys.get(key.as_str()) {
            return Some(record);
        }
        let (record, expires) = match self.txt_until(name, trail).await {
            Ok((answer, expires)) => (parse_txt::<DomainKey>(&answer), expires),
            Err(failure) if !failure.transient => return None,
            Err(failure) => (resolver_error(failure), Instant::now() + FAILURE_TTL),
        };
        self.cache
            .dkim_keys
            .insert(key.into_boxed_str(), record.clone(), expires);
        Some(record)
    }

    /// Fetches the SPF record at `name` through the coalescing path and
    /// gives it to this message's SPF view, as mail-auth would have stored
    /// it: many messages arriving at once for the same sender then cause one
    /// query for its SPF record, not one each.
    pub(crate) async fn prefetch_spf(&self, name: &str, view: &SpfView<'_>, trail: &Trail) {
        let (record, expires) = match self.txt_until(name, trail).await {
            Ok((answer, expires)) => (parse_txt::<SpfRecord>(&answer), expires),
            // A name that cannot be asked is left to mail-auth, which has its
            // own rules for malformed domains (RFC 7208 §4.3).
            Err(failure) if !failure.transient => return,
            Err(failure) => (resolver_error(failure), Instant::now() + FAILURE_TTL),
        };
        view.store_txt(fqdn(name).into_boxed_str(), record, expires);
    }

    /// Whether `name` exists (RFC 8020: NXDOMAIN means it and everything
    /// below it do not). Asks for A records; NODATA means the name exists.
    pub(crate) async fn exists(&self, name: &str, trail: &Trail) -> Result<bool, DnsFailure> {
        let key = fqdn(name);
        if let Some(exists) = self.cache.exists.get(key.as_str()) {
            trail.dns_with(|| {
                DnsEvent::new(
                    RecordType::A,
                    name.to_string(),
                    describe_exists(exists),
                    true,
                )
            });
            return Ok(exists);
        }
        let result = coalesce(&self.inflight_exists, &key, || self.resolve_exists(&key)).await;
        let described = match &result {
            Ok((exists, _)) => describe_exists(*exists),
            Err(failure) => format!("error: {}", failure.reason),
        };
        trail.dns_with(|| DnsEvent::new(RecordType::A, name.to_string(), described, false));
        result.map(|(exists, _)| exists)
    }

    async fn resolve_exists(&self, key: &str) -> Result<(bool, Instant), DnsFailure> {
        let name = key.trim_end_matches('.');
        let query = query_name(key)?;
        let started = Instant::now();
        let result = self
            .authenticator
            .resolver()
            .lookup(query, HickoryType::A)
            .await;
        self.observer.question(
            RecordType::A,
            outcome_of(result.as_ref().map(|l| l.answers().is_empty())),
            started.elapsed(),
        );
        let (exists, expires) = match result {
            Ok(lookup) => (true, lookup.valid_until()),
            Err(err) => match self.negative(&err) {
                Some((TxtAnswer::NxDomain, expires)) => (false, expires),
                Some((_, expires)) => (true, expires),
                None => {
                    return Err(DnsFailure {
                        name: name.to_string(),
                        reason: err.to_string(),
                        outcome: outcome_of::<bool>(Err(&err)),
                        transient: true,
                    })
                }
            },
        };
        self.cache.exists.insert(key.into(), exists, expires);
        Ok((exists, expires))
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

/// `key` as a DNS name, or a permanent failure when it is not one.
fn query_name(key: &str) -> Result<Name, DnsFailure> {
    Name::from_ascii(key).map_err(|e| DnsFailure {
        name: key.trim_end_matches('.').to_string(),
        reason: format!("invalid name: {e}"),
        outcome: DnsOutcome::Other,
        transient: false,
    })
}

/// The outcome of one resolver lookup: `Ok(empty)` for an answer, or the
/// error's kind.
fn outcome_of<T: IsEmpty>(result: Result<T, &NetError>) -> DnsOutcome {
    match result {
        Ok(empty) if empty.is_empty() => DnsOutcome::NoData,
        Ok(_) => DnsOutcome::Answer,
        Err(NetError::Dns(HickoryDnsError::NoRecordsFound(no_records))) => {
            if no_records.response_code == ResponseCode::NXDomain {
                DnsOutcome::NxDomain
            } else {
                DnsOutcome::NoData
            }
        }
        Err(NetError::Dns(HickoryDnsError::ResponseCode(ResponseCode::ServFail))) => {
            DnsOutcome::ServFail
        }
        Err(NetError::Timeout) => DnsOutcome::Timeout,
        Err(_) => DnsOutcome::Other,
    }
}

/// `true` when a lookup came back without records.
trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl IsEmpty for bool {
    fn is_empty(&self) -> bool {
        *self
    }
}

/// A raw TXT answer parsed as `T`, in the form mail-auth caches.
fn parse_txt<T: TxtRecordParser + Into<TxtRecord>>(answer: &TxtAnswer) -> TxtRecord {
    match answer {
        TxtAnswer::Records(records) => T::parse_records(records).into(),
        TxtAnswer::NxDomain => TxtRecord::Error(mail_auth::Error::Dns(
            mail_auth::DnsError::RecordNotFound(ResponseCode::NXDomain),
        )),
        TxtAnswer::NoData => TxtRecord::Error(mail_auth::Error::Dns(
            mail_auth::DnsError::RecordNotFound(ResponseCode::NoError),
        )),
    }
}

/// A transient failure as mail-auth reads its own resolver errors.
fn resolver_error(failure: DnsFailure) -> TxtRecord {
    TxtRecord::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
        failure.reason,
    )))
}

/// `name` as a cache key: lower case, one trailing dot.
pub(crate) fn fqdn(name: &str) -> String {
    let mut key = name.trim_end_matches('.').to_ascii_lowercase();
    key.push('.');
    key
}

fn describe_txt(answer: &TxtAnswer) -> String {
    match answer {
        TxtAnswer::Records(records) => records
            .iter()
            .map(|r| format!("\"{}\"", String::from_utf8_lossy(r).escape_debug()))
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
