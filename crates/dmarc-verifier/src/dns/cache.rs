//! The shared DNS cache: bounded, honouring TTLs, keyed by everything that
//! makes an answer different, and the per-message views mail-auth reads.
//!
//! # Design: an answer is what the DNS would give, whoever asked first
//!
//! One cache serves every message a verifier checks, and every sender can
//! make us ask questions about names of its choosing (an `include:` of the
//! victim's names, a DKIM signature with `d=` and `s=` of its choosing). So
//! nothing cached may depend on *why* a name was asked about:
//!
//! - TXT answers are cached raw ([`TxtAnswer`]: the records, NXDOMAIN or
//!   NODATA), keyed by name only: that is exactly what the DNS gives to any
//!   question of that type, for any purpose. DMARC records, SPF records, DKIM
//!   keys and report authorisations are parsed from the raw answer by the
//!   code that asked.
//! - Parsed records are cached per purpose: [`SharedCache::dkim_keys`] holds
//!   only the DKIM key parse of the raw TXT answer at a name, filled by our
//!   own code (for DKIM signatures, ARC-Seals and ARC-Message-Signatures
//!   alike: all are DKIM key records); [`SharedCache::spf_records`] only SPF
//!   records that mail-auth parsed as such. mail-auth never writes into a
//!   cache another purpose reads: what it stores outside those two goes to
//!   a per-message map that dies with the message.
//! - A, AAAA, MX and PTR answers are cached per record type.
//!
//! # Eviction
//!
//! Each cache is a [`moka`] cache with TinyLFU admission: when full, a new
//! entry is admitted only if it is asked for more often than the entry it
//! would evict, so a flood of one-off names (one sender's thousand
//! `include:`s) cannot push out the answers every message needs. Entries
//! also die at their TTL. Large TXT answers weigh one entry per KiB started,
//! so the memory of a cache is bounded by its capacity whatever the answers.
//! Eviction can only ever cost a new question, never a different answer.

use super::zone::RecordType;
use super::{fqdn, DnsEvent, TxtAnswer};
use crate::trail::Trail;
use mail_auth::{DnsCache, Mx, Negative, RecordSet, ResolverCache, TxtRecord};
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

/// An entry with its key (to name it in the trail) and the instant it
/// stops being valid.
#[derive(Clone)]
struct Expiring<K, V> {
    key: K,
    value: V,
    expires: Instant,
}

/// Lets moka expire each entry at its own TTL.
struct ByEntry;

impl<K, V> moka::Expiry<K, Expiring<K, V>> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Expiring<K, V>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Expiring<K, V>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(updated_at))
    }
}

/// How much of a cache's capacity a value takes, in entries: one, plus
/// one per KiB started beyond the first for large answers.
pub trait Weight {
    /// The approximate size in bytes of the value's heap data.
    fn bytes(&self) -> usize;
}

fn weight_of(key_bytes: usize, value_bytes: usize) -> u32 {
    let bytes = key_bytes.saturating_add(value_bytes);
    u32::try_from(1 + bytes / 1024).unwrap_or(u32::MAX)
}

/// A bounded, thread-safe map whose entries expire at their own TTL, with
/// scan-resistant (TinyLFU) admission; see the module documentation.
pub struct TtlCache<K, V> {
    inner: moka::sync::Cache<K, Expiring<K, V>>,
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + CacheKey + 'static,
    V: Clone + Send + Sync + Weight + 'static,
{
    /// A cache of `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = u64::try_from(capacity.max(1)).unwrap_or(u64::MAX);
        TtlCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|key: &K, entry: &Expiring<K, V>| {
                    weight_of(key.bytes(), entry.value.bytes())
                })
                .expire_after(ByEntry)
                .build(),
        }
    }

    /// The live value for `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_with_expiry(key).map(|(value, _)| value)
    }

    /// The live value for `key` with the time it expires.
    pub fn get_with_expiry<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.inner.get(key)?;
        (entry.expires > Instant::now()).then_some((entry.value, entry.expires))
    }

    /// The stored key and live value for `key`, if any.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.inner.get(key)?;
        (entry.expires > Instant::now()).then_some((entry.key, entry.value))
    }

    /// Stores `value` until `expires` (nothing when that is already past).
    pub fn insert(&self, key: K, value: V, expires: Instant) {
        if expires <= Instant::now() {
            return;
        }
        self.inner.insert(
            key.clone(),
            Expiring {
                key,
                value,
                expires,
            },
        );
    }

    /// Removes `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(key).map(|entry| entry.value)
    }

    /// Number of entries, after pending evictions are applied.
    pub fn entry_count(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}

type Answer<T> = Result<RecordSet<T>, Negative>;

/// The caches of one verifier, shared by every message it checks.
pub struct SharedCache {
    /// Raw TXT answers, keyed by lower-case FQDN: what the DNS gave, for
    /// any purpose.
    pub(crate) raw_txt: TtlCache<Box<str>, TxtAnswer>,
    /// TXT lookups that failed moments ago (timeouts, SERVFAIL).
    pub(crate) failed_txt: TtlCache<Box<str>, super::DnsFailure>,
    /// The DKIM key parse of the raw TXT answer at a name (a
    /// [`TxtRecord::DomainKey`] or the error the parse or lookup gave).
    /// Written only by [`super::Dns::dkim_key`].
    pub(crate) dkim_keys: TtlCache<Box<str>, TxtRecord>,
    /// SPF records (only [`TxtRecord::Spf`]) as mail-auth's SPF parsed
    /// them.
    pub(crate) spf_records: TtlCache<Box<str>, TxtRecord>,
    pub(crate) mx: TtlCache<Box<str>, Answer<Mx>>,
    pub(crate) ipv4: TtlCache<Box<str>, Answer<Ipv4Addr>>,
    pub(crate) ipv6: TtlCache<Box<str>, Answer<Ipv6Addr>>,
    pub(crate) ptr: TtlCache<IpAddr, Answer<Box<str>>>,
    /// Existence of a name (RFC 8020), for `np`.
    pub(crate) exists: TtlCache<Box<str>, bool>,
}

impl SharedCache {
    /// Caches of `capacity` entries each.
    pub fn new(capacity: usize) -> Self {
        SharedCache {
            raw_txt: TtlCache::new(capacity),
            failed_txt: TtlCache::new(capacity),
            dkim_keys: TtlCache::new(capacity),
            spf_records: TtlCache::new(capacity),
            mx: TtlCache::new(capacity),
            ipv4: TtlCache::new(capacity),
            ipv6: TtlCache::new(capacity),
            ptr: TtlCache::new(capacity),
            exists: TtlCache::new(capacity),
        }
    }
}

/// TXT records mail-auth stored during one message that no shared cache
/// may hold (their purpose is not known for sure); they die with the view.
type LocalTxt = Mutex<HashMap<Box<str>, TxtRecord>>;

fn local_get<Q>(local: &LocalTxt, key: &Q) -> Option<(Box<str>, TxtRecord)>
where
    Box<str>: Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    local
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_key_value(key)
        .map(|(k, v)| (k.clone(), v.clone()))
}

fn local_insert(local: &LocalTxt, key: Box<str>, value: TxtRecord) {
    local
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, value);
}

/// The TXT cache mail-auth's DKIM and ARC verification read: the DKIM key parses
/// our own lookups made (see [`super::Dns::dkim_key`]), then what mail-auth
/// itself fetched during this message.
pub(crate) struct KeyTxtView<'a> {
    shared: &'a TtlCache<Box<str>, TxtRecord>,
    local: LocalTxt,
    trail: &'a Trail,
}

impl ResolverCache<Box<str>, TxtRecord> for KeyTxtView<'_> {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // mail-auth asks with lower-case FQDNs, as our keys are.
        let (key, value) = self
            .shared
            .get_entry(name)
            .or_else(|| local_get(&self.local, name))?;
        self.trail
            .dns_with(|| DnsEvent::new(RecordType::Txt, key.name(), value.summary(), true));
        Some(value)
    }

    fn remove<Q>(&self, _name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, key: Box<str>, value: TxtRecord, _valid_until: Instant) {
        self.trail
            .dns_with(|| DnsEvent::new(RecordType::Txt, key.name(), value.summary(), false));
        local_insert(&self.local, fqdn(&key).into_boxed_str(), value);
    }
}

/// The TXT cache mail-auth's SPF reads: SPF records are shared (an entry
/// mail-auth stored as [`TxtRecord::Spf`] was asked for as an SPF record),
/// anything else (explanations, errors) stays with the message.
pub(crate) struct SpfTxtView<'a> {
    shared: &'a TtlCache<Box<str>, TxtRecord>,
    local: LocalTxt,
    trail: &'a Trail,
}

impl ResolverCache<Box<str>, TxtRecord> for SpfTxtView<'_> {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, value) = local_get(&self.local, name).or_else(|| self.shared.get_entry(name))?;
        self.trail
            .dns_with(|| DnsEvent::new(RecordType::Txt, key.name(), value.summary(), true));
        Some(value)
    }

    fn remove<Q>(&self, _name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        self.trail
            .dns_with(|| DnsEvent::new(RecordType::Txt, key.name(), value.summary(), false));
        self.store(key, value, valid_until);
    }
}

impl SpfTxtView<'_> {
    fn store(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        let key = fqdn(&key).into_boxed_str();
        if matches!(value, TxtRecord::Spf(_)) {
            self.shared.insert(key, value, valid_until);
        } else {
            local_insert(&self.local, key, value);
        }
    }
}

/// The per-message view given to mail-auth's DKIM and ARC verification:
/// both read DKIM key records (`<s>._domainkey.<d>`, RFC 8617 §4.1.3 uses
/// them for ARC), parsed once per name into [`SharedCache::dkim_keys`] by
/// [`super::Dns::dkim_key`]; whatever mail-auth fetches itself stays with
/// the message.
pub(crate) struct DkimView<'a> {
    txt: KeyTxtView<'a>,
    none: NoCache,
}

impl<'a> DkimView<'a> {
    pub(crate) fn new(shared: &'a SharedCache, trail: &'a Trail) -> Self {
        DkimView {
            txt: KeyTxtView {
                shared: &shared.dkim_keys,
                local: Mutex::default(),
                trail,
            },
            none: NoCache,
        }
    }
}

impl DnsCache for DkimView<'_> {
    type Txt = Self;
    type Mx = NoCache;
    type Ipv4 = NoCache;
    type Ipv6 = NoCache;
    type Ptr = NoCache;
    fn txt(&self) -> Option<&Self::Txt> {
        Some(self)
    }
    fn mx(&self) -> Option<&Self::Mx> {
        Some(&self.none)
    }
    fn ipv4(&self) -> Option<&Self::Ipv4> {
        Some(&self.none)
    }
    fn ipv6(&self) -> Option<&Self::Ipv6> {
        Some(&self.none)
    }
    fn ptr(&self) -> Option<&Self::Ptr> {
        Some(&self.none)
    }
}

impl ResolverCache<Box<str>, TxtRecord> for DkimView<'_> {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.txt.get(name)
    }
    fn remove<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.txt.remove(name)
    }
    fn insert(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        self.txt.insert(key, value, valid_until);
    }
}

/// Stores nothing: DKIM asks no A, AAAA, MX or PTR questions.
pub(crate) struct NoCache;

impl<K, V> ResolverCache<K, V> for NoCache {
    fn get<Q>(&self, _name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn remove<Q>(&self, _name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _key: K, _value: V, _valid_until: Instant) {}
}

/// The per-message view given to mail-auth's SPF check.
pub(crate) struct SpfView<'a> {
    txt: SpfTxtView<'a>,
    mx: TypedView<'a, Box<str>, Answer<Mx>>,
    ipv4: TypedView<'a, Box<str>, Answer<Ipv4Addr>>,
    ipv6: TypedView<'a, Box<str>, Answer<Ipv6Addr>>,
    ptr: TypedView<'a, IpAddr, Answer<Box<str>>>,
}

impl<'a> SpfView<'a> {
    pub(crate) fn new(shared: &'a SharedCache, trail: &'a Trail) -> Self {
        SpfView {
            txt: SpfTxtView {
                shared: &shared.spf_records,
                local: Mutex::default(),
                trail,
            },
            mx: TypedView {
                cache: &shared.mx,
                trail,
            },
            ipv4: TypedView {
                cache: &shared.ipv4,
                trail,
            },
            ipv6: TypedView {
                cache: &shared.ipv6,
                trail,
            },
            ptr: TypedView {
                cache: &shared.ptr,
                trail,
            },
        }
    }

    /// Stores an SPF lookup our prefetch made (and already put in the
    /// trail), as mail-auth would have.
    pub(crate) fn store_txt(&self, key: Box<str>, value: TxtRecord, valid_until: Instant) {
        self.txt.store(key, value, valid_until);
    }
}

impl<'a> DnsCache for SpfView<'a> {
    type Txt = SpfTxtView<'a>;
    type Mx = TypedView<'a, Box<str>, Answer<Mx>>;
    type Ipv4 = TypedView<'a, Box<str>, Answer<Ipv4Addr>>;
    type Ipv6 = TypedView<'a, Box<str>, Answer<Ipv6Addr>>;
    type Ptr = TypedView<'a, IpAddr, Answer<Box<str>>>;

    fn txt(&self) -> Option<&Self::Txt> {
        Some(&self.txt)
    }
    fn mx(&self) -> Option<&Self::Mx> {
        Some(&self.mx)
    }
    fn ipv4(&self) -> Option<&Self::Ipv4> {
        Some(&self.ipv4)
    }
    fn ipv6(&self) -> Option<&Self::Ipv6> {
        Some(&self.ipv6)
    }
    fn ptr(&self) -> Option<&Self::Ptr> {
        Some(&self.ptr)
    }
}

/// One record type's shared cache as seen by one message.
pub(crate) struct TypedView<'a, K, V> {
    cache: &'a TtlCache<K, V>,
    trail: &'a Trail,
}

/// A value mail-auth caches, described for the trail.
pub(crate) trait CachedAnswer: Clone {
    const TYPE: RecordType;
    fn summary(&self) -> String;
}

/// A cache key, named for the trail.
pub trait CacheKey {
    /// The name asked about, for the trail.
    fn name(&self) -> String;
    /// The key's size in bytes, for the cache's weight.
    fn bytes(&self) -> usize;
}

impl CacheKey for Box<str> {
    fn name(&self) -> String {
        self.trim_end_matches('.').to_string()
    }
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl CacheKey for String {
    fn name(&self) -> String {
        self.trim_end_matches('.').to_string()
    }
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl CacheKey for IpAddr {
    fn name(&self) -> String {
        self.to_string()
    }
    fn bytes(&self) -> usize {
        16
    }
}

impl<K, V> ResolverCache<K, V> for TypedView<'_, K, V>
where
    K: CacheKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: CachedAnswer + Weight + Send + Sync + 'static,
{
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, value) = self.cache.get_entry(name)?;
        self.trail
            .dns_with(|| DnsEvent::new(V::TYPE, key.name(), value.summary(), true));
        Some(value)
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.trail
            .dns_with(|| DnsEvent::new(V::TYPE, key.name(), value.summary(), false));
        self.cache.insert(key, value, valid_until);
    }
}

fn negative_summary(negative: &Negative) -> String {
    if negative.code == mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain {
        "NXDOMAIN".to_string()
    } else {
        "no records (NODATA)".to_string()
    }
}

impl CachedAnswer for TxtRecord {
    const TYPE: RecordType = RecordType::Txt;
    fn summary(&self) -> String {
        match self {
            TxtRecord::Spf(_) => "an SPF record".to_string(),
            TxtRecord::SpfExplanation(_) => "an SPF explanation".to_string(),
            TxtRecord::DomainKey(_) => "a DKIM key record".to_string(),
            TxtRecord::DkimReport(_) => "a DKIM reporting record".to_string(),
            TxtRecord::Dmarc(_) => "a DMARC record".to_string(),
            TxtRecord::Atps(_) => "an ATPS record".to_string(),
            TxtRecord::MtaSts(_) => "an MTA-STS record".to_string(),
            TxtRecord::TlsRpt(_) => "a TLSRPT record".to_string(),
            TxtRecord::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code))) => {
                if *code == mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain {
                    "NXDOMAIN".to_string()
                } else {
                    "no TXT records (NODATA)".to_string()
                }
            }
            TxtRecord::Error(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {
                "TXT records, none of the expected kind".to_string()
            }
            TxtRecord::Error(err) => format!("no usable record ({err})"),
        }
    }
}

impl Weight for TxtRecord {
    fn bytes(&self) -> usize {
        // Parsed records are small; their source text is bounded by the
        // raw answer, which is weighed in `raw_txt`.
        256
    }
}

impl Weight for TxtAnswer {
    fn bytes(&self) -> usize {
        match self {
            TxtAnswer::Records(records) => records.iter().map(|r| r.len() + 24).sum(),
            TxtAnswer::NxDomain | TxtAnswer::NoData => 0,
        }
    }
}

impl Weight for super::DnsFailure {
    fn bytes(&self) -> usize {
        self.name.len() + self.reason.len()
    }
}

impl Weight for bool {
    fn bytes(&self) -> usize {
        0
    }
}

impl<T> Weight for Answer<T> {
    fn bytes(&self) -> usize {
        match self {
            Ok(set) => set.records.len().saturating_mul(32),
            Err(_) => 0,
        }
    }
}

impl CachedAnswer for Answer<Mx> {
    const TYPE: RecordType = RecordType::Mx;
    fn summary(&self) -> String {
        match self {
            Ok(set) => set
                .records
                .iter()
                .map(|mx| format!("{} {}", mx.preference, mx.exchanges.join(",")))
                .collect::<Vec<_>>()
                .join("; "),
            Err(negative) => negative_summary(negative),
        }
    }
}

macro_rules! address_answer {
    ($t:ty, $rtype:expr) => {
        impl CachedAnswer for Answer<$t> {
            const TYPE: RecordType = $rtype;
            fn summary(&self) -> String {
                match self {
                    Ok(set) => set
                        .records
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    Err(negative) => negative_summary(negative),
                }
            }
        }
    };
}

address_answer!(Ipv4Addr, RecordType::A);
address_answer!(Ipv6Addr, RecordType::Aaaa);
address_answer!(Box<str>, RecordType::Ptr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache: TtlCache<Box<str>, bool> = TtlCache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        for name in ["a", "b", "c", "d", "e"] {
            cache.insert(name.into(), true, later);
        }
        assert!(cache.entry_count() <= 3);
        // Already expired answers are not stored.
        cache.insert("x".into(), true, Instant::now());
        assert_eq!(cache.get("x"), None);
        for i in 0..1000u32 {
            cache.insert(format!("n{i}").into(), true, later);
        }
        assert!(cache.entry_count() <= 3);
    }

    #[test]
    fn a_flood_of_one_off_names_does_not_evict_what_is_asked_for() {
        let cache: TtlCache<Box<str>, bool> = TtlCache::new(100);
        let later = Instant::now() + Duration::from_secs(600);
        for i in 0..100u32 {
            cache.insert(format!("hot{i}").into(), true, later);
        }
        // The answers every message needs are read again and again.
        for _ in 0..20 {
            for i in 0..100u32 {
                assert!(cache.get(format!("hot{i}").as_str()).is_some());
            }
        }
        // One sender makes us ask about 10,000 names once each.
        for i in 0..10_000u32 {
            cache.insert(format!("flood{i}").into(), true, later);
        }
        cache.entry_count();
        let kept = (0..100u32)
            .filter(|i| cache.get(format!("hot{i}").as_str()).is_some())
            .count();
        assert!(
            kept >= 90,
            "only {kept} of 100 frequently used entries survived"
        );
    }

    #[test]
    fn large_answers_weigh_more() {
        let cache: TtlCache<Box<str>, TxtAnswer> = TtlCache::new(64);
        let later = Instant::now() + Duration::from_secs(60);
        let big: std::sync::Arc<[Vec<u8>]> = vec![vec![b'x'; 60_000]].into();
        for i in 0..10u32 {
            cache.insert(
                format!("big{i}").into(),
                TxtAnswer::Records(big.clone()),
                later,
            );
        }
        // A 60 KB answer weighs 59 entries: at most one fits in 64.
        assert!(cache.entry_count() <= 1);
    }
}
