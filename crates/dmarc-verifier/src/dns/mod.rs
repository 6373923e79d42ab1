//! DNS: the resolver, the shared cache, and our own lookups (DMARC records,
//! name existence).
//!
//! Every lookup of DMARC records, of SPF (our engine, through
//! [`SpfDns`]) and of DKIM keys is ours: the record types RFC 7208, RFC
//! 6376 and RFC 9989 name (TXT, A, AAAA, MX, PTR), cached per type in the
//! [`SharedCache`] (see the `cache` module for why no answer can depend on
//! who asked first), concurrent identical questions asked once. mail-auth's
//! DKIM verification reads the keys we fetched through a per-message view.
//! Every question a message causes is recorded as a [`DnsEvent`] for the
//! decision trail, and told to a [`DnsObserver`].

mod cache;
mod observe;
pub mod zone;

pub(crate) use cache::DkimView;
pub use cache::{CacheKey, SharedCache, TtlCache, Weight};
pub use observe::{nameserver_addresses, CacheName, DnsObserver, DnsOutcome, NoObserver};

use crate::{spf::Answer, trail::Trail, Error};
use cache::ItemBytes;
use mail_auth::hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::{DnsError as HickoryDnsError, NetError},
    proto::{op::ResponseCode, rr::Name, rr::RData, rr::RecordType as HickoryType},
    system_conf::read_system_conf,
};
use mail_auth::{dkim::DomainKey, dns::TxtRecordParser, MessageAuthenticator, TxtRecord};
use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
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

/// The TXT records at a name, each record's strings joined (RFC 7208
/// §3.3, RFC 6376 §3.6.2.2, RFC 9989 §4.7).
pub(crate) type TxtAnswer = Answer<Box<[u8]>>;

/// What a cache holds for a question: the answer, or the failure of a
/// lookup moments ago.
pub(crate) type Cached<T> = Result<Answer<T>, DnsFailure>;

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
    /// Questions being asked now: concurrent identical questions wait for
    /// the one in flight instead of asking again.
    inflight: InFlights,
}

/// How long a failed lookup is remembered (RFC 2308 §7.1 allows up to five
/// minutes for server failures).
const FAILURE_TTL: Duration = Duration::from_secs(5);

/// Questions in flight, keyed by FQDN. No lock is held across a query: the
/// map only hands out the shared cell each asker waits on.
type InFlight<T> = Mutex<HashMap<Box<str>, Arc<OnceCell<(Cached<T>, Instant)>>>>;

/// The questions in flight, per record type.
#[derive(Default)]
struct InFlights {
    txt: InFlight<Box<[u8]>>,
    a: InFlight<Ipv4Addr>,
    aaaa: InFlight<Ipv6Addr>,
    mx: InFlight<(u16, Box<str>)>,
    ptr: InFlight<Box<str>>,
}

/// Waits on the cell for `key`, running `query` if no one else is.
async fn coalesce<T: Clone, F: std::future::Future<Output = T>>(
    inflight: &Mutex<HashMap<Box<str>, Arc<OnceCell<T>>>>,
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

/// One record type we ask about: how to ask hickory for it, how to read
/// its records, how to say them in the trail.
struct Kind<T: 'static> {
    rtype: RecordType,
    hickory: HickoryType,
    read: fn(&RData) -> Option<T>,
    describe: fn(&T) -> String,
}

const TXT: Kind<Box<[u8]>> = Kind {
    rtype: RecordType::Txt,
    hickory: HickoryType::TXT,
    read: |data| match data {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect(),
        ),
        _ => None,
    },
    describe: |record| format!("\"{}\"", String::from_utf8_lossy(record).escape_debug()),
};

const A: Kind<Ipv4Addr> = Kind {
    rtype: RecordType::A,
    hickory: HickoryType::A,
    read: |data| match data {
        RData::A(a) => Some(a.0),
        _ => None,
    },
    describe: |ip| ip.to_string(),
};

const AAAA: Kind<Ipv6Addr> = Kind {
    rtype: RecordType::Aaaa,
    hickory: HickoryType::AAAA,
    read: |data| match data {
        RData::AAAA(aaaa) => Some(aaaa.0),
        _ => None,
    },
    describe: |ip| ip.to_string(),
};

const MX: Kind<(u16, Box<str>)> = Kind {
    rtype: RecordType::Mx,
    hickory: HickoryType::MX,
    read: |data| match data {
        RData::MX(mx) => Some((mx.preference, lower_name(&mx.exchange))),
        _ => None,
    },
    describe: |(preference, exchange)| format!("{preference} {exchange}"),
};

const PTR: Kind<Box<str>> = Kind {
    rtype: RecordType::Ptr,
    hickory: HickoryType::PTR,
    read: |data| match data {
        RData::PTR(ptr) => Some(lower_name(&ptr.0)),
        _ => None,
    },
    describe: |name| name.to_string(),
};

/// A name from an answer as SPF compares names: lower case, no trailing
/// dot; labels that are not ASCII kept as their octets (lossy UTF-8).
fn lower_name(name: &Name) -> Box<str> {
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    labels.join(".").into_boxed_str()
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
            inflight: InFlights::default(),
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
            Answer::Records(records) => Ok(Some(records.iter().map(|r| r.to_vec()).collect())),
            Answer::NxDomain | Answer::NoData => Ok(None),
        }
    }

    /// The TXT records at `name`, for any purpose (DMARC records, SPF
    /// records, DKIM keys): cached, concurrent identical questions asked
    /// once.
    pub(crate) async fn txt(&self, name: &str, trail: &Trail) -> Result<TxtAnswer, DnsFailure> {
        self.lookup(&TXT, &self.cache.txt, &self.inflight.txt, name, trail)
            .await
    }

    /// The A records at `name`.
    pub(crate) async fn a(
        &self,
        name: &str,
        trail: &Trail,
    ) -> Result<Answer<Ipv4Addr>, DnsFailure> {
        self.lookup(&A, &self.cache.a, &self.inflight.a, name, trail)
            .await
    }

    /// The AAAA records at `name`.
    pub(crate) async fn aaaa(
        &self,
        name: &str,
        trail: &Trail,
    ) -> Result<Answer<Ipv6Addr>, DnsFailure> {
        self.lookup(&AAAA, &self.cache.aaaa, &self.inflight.aaaa, name, trail)
            .await
    }

    /// The MX records at `name`: (preference, exchange in lower case
    /// without trailing dot).
    pub(crate) async fn mx(
        &self,
        name: &str,
        trail: &Trail,
    ) -> Result<Answer<(u16, Box<str>)>, DnsFailure> {
        self.lookup(&MX, &self.cache.mx, &self.inflight.mx, name, trail)
            .await
    }

    /// The PTR records of `ip` (names in lower case without trailing dot).
    pub(crate) async fn ptr(
        &self,
        ip: IpAddr,
        trail: &Trail,
    ) -> Result<Answer<Box<str>>, DnsFailure> {
        let name = crate::spf::reverse_name(ip);
        self.lookup(&PTR, &self.cache.ptr, &self.inflight.ptr, &name, trail)
            .await
    }

    /// Whether `name` exists (RFC 8020: NXDOMAIN means it and everything
    /// below it do not): its A records, NODATA meaning it exists. Shares
    /// the A cache with SPF.
    pub(crate) async fn exists(&self, name: &str, trail: &Trail) -> Result<bool, DnsFailure> {
        Ok(!matches!(self.a(name, trail).await?, Answer::NxDomain))
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
            (Ok(answer), expires) => (parse_txt::<DomainKey>(&answer), expires),
            (Err(failure), _) if !failure.transient => return None,
            (Err(failure), expires) => (resolver_error(failure), expires),
        };
        self.cache
            .dkim_keys
            .insert(key.into_boxed_str(), record.clone(), expires);
        Some(record)
    }

    /// [`Dns::txt`] with the time the answer (or failure) expires.
    async fn txt_until(
        &self,
        name: &str,
        trail: &Trail,
    ) -> (Result<TxtAnswer, DnsFailure>, Instant) {
        self.lookup_until(&TXT, &self.cache.txt, &self.inflight.txt, name, trail)
            .await
    }

    /// One question of type `kind`: from `cache` when it holds a live
    /// answer (or a failure moments ago), else asked once for all who ask
    /// at the same time; recorded in the trail and told to the observer.
    async fn lookup<T: Clone + Send + Sync + ItemBytes + 'static>(
        &self,
        kind: &Kind<T>,
        cache: &TtlCache<Box<str>, Cached<T>>,
        inflight: &InFlight<T>,
        name: &str,
        trail: &Trail,
    ) -> Result<Answer<T>, DnsFailure> {
        self.lookup_until(kind, cache, inflight, name, trail)
            .await
            .0
    }

    async fn lookup_until<T: Clone + Send + Sync + ItemBytes + 'static>(
        &self,
        kind: &Kind<T>,
        cache: &TtlCache<Box<str>, Cached<T>>,
        inflight: &InFlight<T>,
        name: &str,
        trail: &Trail,
    ) -> (Cached<T>, Instant) {
        let key = fqdn(name);
        if let Some((answer, expires)) = cache.get_with_expiry(key.as_str()) {
            trail.dns_with(|| {
                DnsEvent::new(kind.rtype, name.to_string(), describe(kind, &answer), true)
            });
            return (answer, expires);
        }
        let (answer, expires) = coalesce(inflight, &key, || self.resolve(kind, &key)).await;
        if !matches!(&answer, Err(failure) if !failure.transient) {
            cache.insert(key.into_boxed_str(), answer.clone(), expires);
        }
        trail.dns_with(|| {
            DnsEvent::new(kind.rtype, name.to_string(), describe(kind, &answer), false)
        });
        (answer, expires)
    }

    /// Asks the resolver one question; a failure is kept for
    /// [`FAILURE_TTL`] (RFC 2308 §7.1 allows up to five minutes for server
    /// failures; a few seconds keep one message, and its neighbours, from
    /// waiting for the same timeout twice).
    async fn resolve<T: 'static>(&self, kind: &Kind<T>, key: &str) -> (Cached<T>, Instant) {
        let name = key.trim_end_matches('.');
        let query = match query_name(key) {
            Ok(query) => query,
            Err(failure) => return (Err(failure), Instant::now()),
        };
        let started = Instant::now();
        let result = self
            .authenticator
            .resolver()
            .lookup(query, kind.hickory)
            .await;
        let answer = result.as_ref().map(|lookup| {
            let records: Vec<T> = lookup
                .answers()
                .iter()
                .filter_map(|record| (kind.read)(&record.data))
                .collect();
            (records, lookup.valid_until())
        });
        self.observer.question(
            kind.rtype,
            outcome_of(
                answer
                    .as_ref()
                    .map(|(records, _)| records.is_empty())
                    .map_err(|e| *e),
            ),
            started.elapsed(),
        );
        match answer {
            Ok((records, expires)) if records.is_empty() => (Ok(Answer::NoData), expires),
            Ok((records, expires)) => (Ok(Answer::Records(records.into())), expires),
            Err(err) => match self.negative(err) {
                Some(negative) => negative,
                None => (
                    Err(DnsFailure {
                        name: name.to_string(),
                        reason: err.to_string(),
                        outcome: outcome_of::<bool>(Err(err)),
                        transient: true,
                    }),
                    Instant::now() + FAILURE_TTL,
                ),
            },
        }
    }

    /// A negative answer (NXDOMAIN or NODATA) and how long to keep it
    /// (RFC 2308 §5: the SOA-derived TTL, capped), or `None` for a failure.
    fn negative<T>(&self, err: &NetError) -> Option<(Cached<T>, Instant)> {
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
            Answer::NxDomain
        } else {
            Answer::NoData
        };
        Some((Ok(answer), Instant::now() + ttl))
    }
}

/// The answer as the trail says it.
fn describe<T>(kind: &Kind<T>, answer: &Cached<T>) -> String {
    match answer {
        Ok(Answer::Records(records)) => records
            .iter()
            .map(|record| (kind.describe)(record))
            .collect::<Vec<_>>()
            .join(", "),
        Ok(Answer::NxDomain) => "NXDOMAIN".to_string(),
        Ok(Answer::NoData) => format!("no {} records (NODATA)", kind.rtype.as_str()),
        Err(failure) => format!("error: {}", failure.reason),
    }
}

/// `key` (labels separated by dots, a trailing dot) as a DNS name, or a
/// permanent failure when it is not one (an empty label, a label over 63
/// octets, a name over 255). Each label is taken as its octets: `\`, `%`
/// or a space in a label (SPF macros put them there) are octets, not
/// escapes (RFC 2181 §11).
fn query_name(key: &str) -> Result<Name, DnsFailure> {
    let trimmed = key.strip_suffix('.').unwrap_or(key);
    let invalid = |e: &dyn fmt::Display| DnsFailure {
        name: trimmed.to_string(),
        reason: format!("invalid name: {e}"),
        outcome: DnsOutcome::Other,
        transient: false,
    };
    if trimmed.is_empty() || trimmed.split('.').any(str::is_empty) {
        return Err(invalid(&"empty label"));
    }
    let mut name =
        Name::from_labels(trimmed.split('.').map(str::as_bytes)).map_err(|e| invalid(&e))?;
    name.set_fqdn(true);
    Ok(name)
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
        Answer::Records(records) => {
            let records: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).collect();
            T::parse_records(&records).into()
        }
        Answer::NxDomain => TxtRecord::Error(mail_auth::Error::Dns(
            mail_auth::DnsError::RecordNotFound(ResponseCode::NXDomain),
        )),
        Answer::NoData => TxtRecord::Error(mail_auth::Error::Dns(
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
