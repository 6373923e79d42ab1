//! What the SPF benchmark (`benches/spf.rs`) and the instruction count
//! (`examples/spf-callgrind.rs`, `bench/callgrind-spf.sh`) share: the
//! synthetic zone's scenarios, and warm in-memory caches for our engine and
//! for mail-auth's, filled once from the zone (mail-auth through a test-dns
//! server), then only read.

#![allow(dead_code)] // Each user takes what it needs.

use dmarc_verifier::{
    dns::zone::Zone,
    spf::{check_host, Answer, LookupError, SpfLookup, SpfOptions, SpfRequest},
    SpfResult,
};
use mail_auth::{
    hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    spf::verify::SpfParameters,
    DnsCache, MessageAuthenticator, Mx, Negative, Parameters, RecordSet, ResolverCache,
    SpfResult as MaSpf, TxtRecord,
};
use std::{
    borrow::Borrow,
    collections::HashMap,
    future::{ready, Future},
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    sync::RwLock,
    time::{Duration, Instant},
};
use test_dns::TestDns;

/// A map behind a read-write lock; what both engines read answers from.
pub struct Map<K, V>(RwLock<HashMap<K, V>>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map(RwLock::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> Map<K, V> {
    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.0.read().expect("lock").get(key).cloned()
    }

    fn put(&self, key: K, value: V) {
        self.0.write().expect("lock").insert(key, value);
    }
}

// ---- Our engine: a warm cache of `Answer`s, filled once from the zone.

type Result<T> = std::result::Result<Answer<T>, LookupError>;

/// The answers our engine asked for, filled on the first run from `zone`
/// (when set) and then only read.
#[derive(Default)]
pub struct Warm {
    zone: Option<Zone>,
    txt: Map<Box<str>, Answer<Box<[u8]>>>,
    a: Map<Box<str>, Answer<Ipv4Addr>>,
    aaaa: Map<Box<str>, Answer<Ipv6Addr>>,
    mx: Map<Box<str>, Answer<(u16, Box<str>)>>,
    ptr: Map<IpAddr, Answer<Box<str>>>,
}

impl Warm {
    fn answer<K, T, Q>(
        &self,
        map: &Map<K, Answer<T>>,
        key: &Q,
        owned: impl FnOnce() -> K,
        fill: impl FnOnce(&Zone) -> Answer<T>,
    ) -> Result<T>
    where
        K: Hash + Eq + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        T: Clone,
    {
        if let Some(answer) = map.get(key) {
            return Ok(answer);
        }
        match &self.zone {
            Some(zone) => {
                let answer = fill(zone);
                map.put(owned(), answer.clone());
                Ok(answer)
            }
            None => Err(LookupError::new("not in the warm cache")),
        }
    }
}

/// The value of a future that is ready at once (the zone's).
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the zone answers at once"),
    }
}

fn zone_answer<T>(answer: Result<T>) -> Answer<T> {
    answer.unwrap_or(Answer::NoData)
}

impl SpfLookup for Warm {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Box<[u8]>>> + Send {
        ready(self.answer(
            &self.txt,
            name,
            || name.into(),
            |zone| zone_answer(now(zone.txt(name))),
        ))
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Ipv4Addr>> + Send {
        ready(self.answer(
            &self.a,
            name,
            || name.into(),
            |zone| zone_answer(now(zone.a(name))),
        ))
    }
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Ipv6Addr>> + Send {
        ready(self.answer(
            &self.aaaa,
            name,
            || name.into(),
            |zone| zone_answer(now(zone.aaaa(name))),
        ))
    }
    fn mx(&self, name: &str) -> impl Future<Output = Result<(u16, Box<str>)>> + Send {
        ready(self.answer(
            &self.mx,
            name,
            || name.into(),
            |zone| zone_answer(now(zone.mx(name))),
        ))
    }
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Box<str>>> + Send {
        ready(self.answer(&self.ptr, &ip, || ip, |zone| zone_answer(now(zone.ptr(ip)))))
    }
}

// ---- mail-auth: its own DnsCache over the same kind of map.

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Map<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Map::get(self, name)
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.write().expect("lock").remove(name)
    }

    fn insert(&self, key: K, value: V, _valid_until: Instant) {
        self.put(key, value);
    }
}

#[derive(Default)]
pub struct MailAuthCache {
    txt: Map<Box<str>, TxtRecord>,
    mx: Map<Box<str>, std::result::Result<RecordSet<Mx>, Negative>>,
    ipv4: Map<Box<str>, std::result::Result<RecordSet<Ipv4Addr>, Negative>>,
    ipv6: Map<Box<str>, std::result::Result<RecordSet<Ipv6Addr>, Negative>>,
    ptr: Map<IpAddr, std::result::Result<RecordSet<Box<str>>, Negative>>,
}

impl DnsCache for MailAuthCache {
    type Txt = Map<Box<str>, TxtRecord>;
    type Mx = Map<Box<str>, std::result::Result<RecordSet<Mx>, Negative>>;
    type Ipv4 = Map<Box<str>, std::result::Result<RecordSet<Ipv4Addr>, Negative>>;
    type Ipv6 = Map<Box<str>, std::result::Result<RecordSet<Ipv6Addr>, Negative>>;
    type Ptr = Map<IpAddr, std::result::Result<RecordSet<Box<str>>, Negative>>;

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

pub fn authenticator(dns: &TestDns) -> MessageAuthenticator {
    let addr = dns.addr();
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])],
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts.ndots = 0;
    MessageAuthenticator::new(config, opts).expect("resolver")
}

/// One policy to check: the client and the sender; both engines pass it.
pub struct Scenario {
    pub name: &'static str,
    pub ip: IpAddr,
    pub sender: &'static str,
}

impl Scenario {
    pub fn request(&self) -> SpfRequest<'static> {
        SpfRequest::mail_from(self.ip, "mail.example", self.sender)
    }

    pub fn mail_auth_params(&self) -> SpfParameters<'static> {
        SpfParameters::mail_from(self.ip, "mail.example", "mx.bench", self.sender)
    }
}

/// The scenarios of `benches/data/spf.zone`.
pub fn scenarios() -> [Scenario; 2] {
    [
        Scenario {
            name: "layered",
            ip: "192.0.2.10".parse().expect("ip"),
            sender: "bounce@layered.example",
        },
        Scenario {
            name: "esp",
            ip: "172.217.32.9".parse().expect("ip"),
            sender: "news@esp.example",
        },
    ]
}

/// Both engines with warm caches.
pub struct Setup {
    pub runtime: tokio::runtime::Runtime,
    /// Our engine's answers.
    pub warm: Warm,
    pub auth: MessageAuthenticator,
    pub mail_auth_cache: MailAuthCache,
    pub options: SpfOptions,
}

impl Setup {
    /// Fills both caches from the zone and checks that both engines pass
    /// every scenario, then again from the caches alone (the DNS server
    /// stopped, our engine reading only what it stored).
    pub fn new() -> Setup {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/data/spf.zone");
        let zone = Zone::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let dns = runtime
            .block_on(TestDns::start_with_zone(zone.clone()))
            .expect("test DNS server");
        let auth = authenticator(&dns);
        let options = SpfOptions::default();
        let filling = Warm {
            zone: Some(zone),
            ..Warm::default()
        };
        let mail_auth_cache = MailAuthCache::default();
        for scenario in &scenarios() {
            let outcome = runtime.block_on(check_host(&filling, &scenario.request(), &options));
            assert_eq!(
                outcome.result,
                SpfResult::Pass,
                "{}: {outcome}",
                scenario.name
            );
            let params = Parameters::new(scenario.mail_auth_params()).with_cache(&mail_auth_cache);
            let output = runtime.block_on(auth.check_host(params));
            assert_eq!(output.result(), MaSpf::Pass, "{}: mail-auth", scenario.name);
        }
        drop(dns);
        let setup = Setup {
            runtime,
            warm: Warm {
                zone: None,
                ..filling
            },
            auth,
            mail_auth_cache,
            options,
        };
        for scenario in &scenarios() {
            assert_eq!(
                setup.ours(scenario),
                SpfResult::Pass,
                "{} warm",
                scenario.name
            );
            assert_eq!(
                setup.mail_auth(scenario),
                MaSpf::Pass,
                "{} warm: mail-auth",
                scenario.name
            );
        }
        setup
    }

    /// One check by our engine.
    pub fn ours(&self, scenario: &Scenario) -> SpfResult {
        self.runtime
            .block_on(check_host(&self.warm, &scenario.request(), &self.options))
            .result
    }

    /// One check by mail-auth's.
    pub fn mail_auth(&self, scenario: &Scenario) -> MaSpf {
        let params = Parameters::new(scenario.mail_auth_params()).with_cache(&self.mail_auth_cache);
        self.runtime.block_on(self.auth.check_host(params)).result()
    }
}
