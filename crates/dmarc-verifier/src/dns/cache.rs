//! The shared DNS cache: bounded, honouring TTLs, keyed by everything that
//! makes an answer different, and the per-message view mail-auth's DKIM
//! verification reads.
//!
//! # Design: an answer is what the DNS would give, whoever asked first
//!
//! One cache serves every message a verifier checks, and every sender can
//! make us ask questions about names of its choosing (an `include:` of the
//! victim's names, a DKIM signature with `d=` and `s=` of its choosing). So
//! nothing cached may depend on *why* a name was asked about:
//!
//! - Answers are cached raw, per record type (TXT, A, AAAA, MX, PTR),
//!   keyed by name: that is exactly what the DNS gives to any question of
//!   that type, for any purpose. DMARC records, SPF records, DKIM keys and
//!   report authorisations are parsed from the raw TXT answer by the code
//!   that asked. A lookup that failed moments ago (a timeout, SERVFAIL) is
//!   remembered for a few seconds in the same place.
//! - The only parsed records cached are DKIM keys, in
//!   [`SharedCache::dkim_keys`]: the DKIM key parse of the raw TXT answer
//!   at a name, filled by our own code ([`super::Dns::dkim_key`]) for DKIM
//!   signatures, ARC-Seals and ARC-Message-Signatures alike (all are DKIM
//!   key records), and read by mail-auth's DKIM and ARC verification
//!   through a per-message [`DkimView`].
//!   What mail-auth stores itself goes to a per-message map that dies with
//!   the message.
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

use super::observe::{CacheName, DnsObserver, NoObserver};
use super::zone::RecordType;
use super::{fqdn, Cached, DnsEvent, DnsFailure};
use crate::{spf::Answer, trail::Trail};
use mail_auth::{DnsCache, ResolverCache, TxtRecord};
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
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
    name: CacheName,
    observer: Arc<dyn DnsObserver>,
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + CacheKey + 'static,
    V: Clone + Send + Sync + Weight + 'static,
{
    /// A cache of `capacity` entries (at least one), unobserved.
    pub fn new(capacity: usize) -> Self {
        Self::observed(capacity, CacheName::Txt, Arc::new(NoObserver))
    }

    /// A cache of `capacity` entries (at least one) that reports its
    /// lookups and evictions to `observer` as `name`.
    pub fn observed(capacity: usize, name: CacheName, observer: Arc<dyn DnsObserver>) -> Self {
        let capacity = u64::try_from(capacity.max(1)).unwrap_or(u64::MAX);
        let on_evict = observer.clone();
        TtlCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|key: &K, entry: &Expiring<K, V>| {
                    weight_of(key.bytes(), entry.value.bytes())
                })
                .expire_after(ByEntry)
                .eviction_listener(move |_key, _value, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        on_evict.cache_eviction(name);
                    }
                })
                .build(),
            name,
            observer,
        }
    }

    /// Which cache this is.
    pub fn name(&self) -> CacheName {
        self.name
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
        let live = self
            .inner
            .get(key)
            .filter(|entry| entry.expires > Instant::now());
        self.observer.cache_lookup(self.name, live.is_some());
        live.map(|entry| (entry.value, entry.expires))
    }

    /// The stored key and live value for `key`, if any.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let live = self
            .inner
            .get(key)
            .filter(|entry| entry.expires > Instant::now());
        self.observer.cache_lookup(self.name, live.is_some());
        live.map(|entry| (entry.key, entry.value))
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

/// The caches of one verifier, shared by every message it checks.
pub struct SharedCache {
    /// TXT answers (each record's strings joined), or the failure of a
    /// lookup moments ago, keyed by lower-case FQDN: for any purpose.
    pub(crate) txt: TtlCache<Box<str>, Cached<Box<[u8]>>>,
    /// A answers (also whether a name exists, RFC 8020).
    pub(crate) a: TtlCache<Box<str>, Cached<Ipv4Addr>>,
    /// AAAA answers.
    pub(crate) aaaa: TtlCache<Box<str>, Cached<Ipv6Addr>>,
    /// MX answers: (preference, exchange).
    pub(crate) mx: TtlCache<Box<str>, Cached<(u16, Box<str>)>>,
    /// PTR answers, keyed by the reverse name.
    pub(crate) ptr: TtlCache<Box<str>, Cached<Box<str>>>,
    /// The DKIM key parse of the TXT answer at a name (a
    /// [`TxtRecord::DomainKey`] or the error the parse or lookup gave).
    /// Written only by [`super::Dns::dkim_key`].
    pub(crate) dkim_keys: TtlCache<Box<str>, TxtRecord>,
}

impl SharedCache {
    /// Caches of `capacity` entries each, reporting to `observer`.
    pub fn new(capacity: usize, observer: Arc<dyn DnsObserver>) -> Self {
        let o = || observer.clone();
        SharedCache {
            txt: TtlCache::observed(capacity, CacheName::Txt, o()),
            a: TtlCache::observed(capacity, CacheName::A, o()),
            aaaa: TtlCache::observed(capacity, CacheName::Aaaa, o()),
            mx: TtlCache::observed(capacity, CacheName::Mx, o()),
            ptr: TtlCache::observed(capacity, CacheName::Ptr, o()),
            dkim_keys: TtlCache::observed(capacity, CacheName::DkimKeys, o()),
        }
    }

    /// The number of entries in each cache.
    pub fn entry_counts(&self) -> Vec<(CacheName, u64)> {
        vec![
            (CacheName::Txt, self.txt.entry_count()),
            (CacheName::A, self.a.entry_count()),
            (CacheName::Aaaa, self.aaaa.entry_count()),
            (CacheName::Mx, self.mx.entry_count()),
            (CacheName::Ptr, self.ptr.entry_count()),
            (CacheName::DkimKeys, self.dkim_keys.entry_count()),
        ]
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

/// A value mail-auth caches, described for the trail.
pub(crate) trait CachedAnswer: Clone {
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

impl CachedAnswer for TxtRecord {
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
        // Parsed keys are small; their source text is bounded by the raw
        // answer, which is weighed in the TXT cache.
        256
    }
}

/// The size of one record of a cached answer.
pub(crate) trait ItemBytes {
    fn item_bytes(&self) -> usize;
}

impl ItemBytes for Box<[u8]> {
    fn item_bytes(&self) -> usize {
        self.len() + 16
    }
}

impl ItemBytes for Box<str> {
    fn item_bytes(&self) -> usize {
        self.len() + 16
    }
}

impl ItemBytes for (u16, Box<str>) {
    fn item_bytes(&self) -> usize {
        self.1.len() + 24
    }
}

impl ItemBytes for Ipv4Addr {
    fn item_bytes(&self) -> usize {
        4
    }
}

impl ItemBytes for Ipv6Addr {
    fn item_bytes(&self) -> usize {
        16
    }
}

impl<T: ItemBytes> Weight for Cached<T> {
    fn bytes(&self) -> usize {
        match self {
            Ok(Answer::Records(records)) => records.iter().map(ItemBytes::item_bytes).sum(),
            Ok(Answer::NxDomain | Answer::NoData) => 0,
            Err(failure) => failure.name.len() + failure.reason.len(),
        }
    }
}

impl Weight for bool {
    fn bytes(&self) -> usize {
        0
    }
}

impl Weight for DnsFailure {
    fn bytes(&self) -> usize {
        self.name.len() + self.reason.len()
    }
}

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
        let cache: TtlCache<Box<str>, Cached<Box<[u8]>>> = TtlCache::new(64);
        let later = Instant::now() + Duration::from_secs(60);
        let big: Arc<[Box<[u8]>]> = vec![vec![b'x'; 60_000].into_boxed_slice()].into();
        for i in 0..10u32 {
            cache.insert(
                format!("big{i}").into(),
                Ok(Answer::Records(big.clone())),
                later,
            );
        }
        // A 60 KB answer weighs 59 entries: at most one fits in 64.
        assert!(cache.entry_count() <= 1);
    }
}
