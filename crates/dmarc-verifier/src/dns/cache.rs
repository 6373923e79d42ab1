//! The shared DNS cache: bounded, honouring TTLs, holding parsed records and
//! negative answers, and the per-message view that records every question
//! for the decision trail.
//!
//! mail-auth asks its [`DnsCache`] before every query and stores what it got
//! after (RFC 2308 negative answers included), so one [`SharedCache`] serves
//! all messages.

use super::zone::RecordType;
use super::{DnsEvent, TxtAnswer};
use crate::trail::Trail;
use mail_auth::{DnsCache, Mx, Negative, RecordSet, ResolverCache, TxtRecord};
use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Mutex, MutexGuard},
    time::Instant,
};

/// A bounded map whose entries expire: the oldest entries are evicted first
/// when it is full (FIFO; every entry also dies at its TTL), expired ones
/// when read.
pub struct BoundedCache<K: Hash + Eq, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Insertion order with the generation of each insert, for eviction.
    order: VecDeque<(K, u64)>,
    generation: u64,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// A cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        BoundedCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                generation: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        // Every operation leaves the map consistent before it could panic,
        // so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live value for `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_entry(key).map(|(_, value)| value)
    }

    /// The stored key and live value for `key`, if any.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.lock();
        let (stored, entry) = inner.map.get_key_value(key)?;
        if entry.expires > Instant::now() {
            return Some((stored.clone(), entry.value.clone()));
        }
        inner.map.remove(key);
        None
    }

    /// The live value for `key` with the time it expires.
    pub fn get_with_expiry<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.lock();
        let entry = inner.map.get(key)?;
        if entry.expires > Instant::now() {
            return Some((entry.value.clone(), entry.expires));
        }
        inner.map.remove(key);
        None
    }

    /// Stores `value` until `expires`.
    pub fn insert(&self, key: K, value: V, expires: Instant) {
        if expires <= Instant::now() {
            return;
        }
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        inner.order.push_back((key.clone(), generation));
        inner.map.insert(
            key,
            Entry {
                value,
                expires,
                generation,
            },
        );
        while inner.map.len() > self.capacity {
            let Some((old, old_generation)) = inner.order.pop_front() else {
                break;
            };
            // Only evict if this queue slot is the entry's latest insert.
            if inner
                .map
                .get(&old)
                .is_some_and(|e| e.generation == old_generation)
            {
                inner.map.remove(&old);
            }
        }
        // Keep the order queue from growing without bound on re-inserts.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Removes `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().map.remove(key).map(|entry| entry.value)
    }

    /// Number of entries (expired ones included until read or evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Answer<T> = Result<RecordSet<T>, Negative>;

/// One cache per record type, shared by every message a verifier checks.
pub struct SharedCache {
    pub(crate) txt: BoundedCache<Box<str>, TxtRecord>,
    pub(crate) mx: BoundedCache<Box<str>, Answer<Mx>>,
    pub(crate) ipv4: BoundedCache<Box<str>, Answer<Ipv4Addr>>,
    pub(crate) ipv6: BoundedCache<Box<str>, Answer<Ipv6Addr>>,
    pub(crate) ptr: BoundedCache<IpAddr, Answer<Box<str>>>,
    /// Raw TXT answers of our own DMARC lookups, keyed by lower-case FQDN.
    pub(crate) raw_txt: BoundedCache<Box<str>, TxtAnswer>,
    /// Existence of a name (RFC 8020), for `np`.
    pub(crate) exists: BoundedCache<Box<str>, bool>,
    /// TXT lookups that failed moments ago (timeouts, SERVFAIL).
    pub(crate) failed_txt: BoundedCache<Box<str>, super::DnsFailure>,
}

impl SharedCache {
    /// Caches of `capacity` entries each.
    pub fn new(capacity: usize) -> Self {
        SharedCache {
            txt: BoundedCache::new(capacity),
            mx: BoundedCache::new(capacity),
            ipv4: BoundedCache::new(capacity),
            ipv6: BoundedCache::new(capacity),
            ptr: BoundedCache::new(capacity),
            raw_txt: BoundedCache::new(capacity),
            exists: BoundedCache::new(capacity),
            failed_txt: BoundedCache::new(capacity),
        }
    }
}

/// The per-message view given to mail-auth: reads and writes the shared
/// cache and records each question for the decision trail.
pub(crate) struct MessageView<'a> {
    txt: TypedView<'a, Box<str>, TxtRecord>,
    mx: TypedView<'a, Box<str>, Answer<Mx>>,
    ipv4: TypedView<'a, Box<str>, Answer<Ipv4Addr>>,
    ipv6: TypedView<'a, Box<str>, Answer<Ipv6Addr>>,
    ptr: TypedView<'a, IpAddr, Answer<Box<str>>>,
}

impl<'a> MessageView<'a> {
    pub(crate) fn new(shared: &'a SharedCache, trail: &'a Trail) -> Self {
        MessageView {
            txt: TypedView {
                cache: &shared.txt,
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
}

impl<'a> DnsCache for MessageView<'a> {
    type Txt = TypedView<'a, Box<str>, TxtRecord>;
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

/// One record type's cache as seen by one message.
pub(crate) struct TypedView<'a, K: Hash + Eq, V> {
    cache: &'a BoundedCache<K, V>,
    trail: &'a Trail,
}

/// A value mail-auth caches, described for the trail.
pub(crate) trait CachedAnswer: Clone {
    const TYPE: RecordType;
    fn summary(&self) -> String;
}

/// A cache key, named for the trail.
pub(crate) trait CacheKey: Hash + Eq + Clone {
    fn name(&self) -> String;
}

impl CacheKey for Box<str> {
    fn name(&self) -> String {
        self.trim_end_matches('.').to_string()
    }
}

impl CacheKey for IpAddr {
    fn name(&self) -> String {
        self.to_string()
    }
}

impl<K: CacheKey, V: CachedAnswer> ResolverCache<K, V> for TypedView<'_, K, V> {
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
    use std::time::Duration;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache: BoundedCache<Box<str>, u32> = BoundedCache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(name.into(), i as u32, later);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("a"), None, "the oldest entry was evicted");
        assert_eq!(cache.get("d"), Some(3));
        assert_eq!(cache.get_entry("b"), Some(("b".into(), 1)));
        // Re-inserting refreshes an entry's place in the eviction order.
        cache.insert("b".into(), 10, later);
        cache.insert("e".into(), 4, later);
        assert_eq!(cache.get("b"), Some(10));
        assert_eq!(cache.get("c"), None);
        // Already expired answers are not stored; expired entries are dropped.
        cache.insert("x".into(), 5, Instant::now());
        assert_eq!(cache.get("x"), None);
        for i in 0..1000u32 {
            cache.insert(format!("n{i}").into(), i, later);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.lock().order.len() <= 6);
    }
}
