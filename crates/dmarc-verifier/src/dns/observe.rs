//! What the DNS layer tells an observer: every question it sends (record
//! type, outcome, time taken), every cache lookup (hit or miss) and every
//! eviction. A daemon turns them into metrics; the library keeps no
//! counters of its own. Label values come from closed sets (the enums
//! below): never a name asked about. Also the start-up check that the
//! resolver answers ([`Dns::probe`](super::Dns::probe)) and the servers in
//! use ([`nameserver_addresses`]), for the daemon's DNS health warnings.

use super::zone::RecordType;
use std::time::Duration;

/// How one DNS question ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsOutcome {
    /// Records of the type asked.
    Answer,
    /// The name does not exist.
    NxDomain,
    /// The name exists, without records of the type asked.
    NoData,
    /// No answer in time.
    Timeout,
    /// The server answered SERVFAIL.
    ServFail,
    /// Any other failure (REFUSED, a network error, a malformed answer).
    Other,
}

impl DnsOutcome {
    /// Every outcome, for exporters that declare their label values.
    pub const ALL: [DnsOutcome; 6] = [
        DnsOutcome::Answer,
        DnsOutcome::NxDomain,
        DnsOutcome::NoData,
        DnsOutcome::Timeout,
        DnsOutcome::ServFail,
        DnsOutcome::Other,
    ];

    /// `answer`, `nxdomain`, `nodata`, `timeout`, `servfail` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsOutcome::Answer => "answer",
            DnsOutcome::NxDomain => "nxdomain",
            DnsOutcome::NoData => "nodata",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::ServFail => "servfail",
            DnsOutcome::Other => "other",
        }
    }

    /// True for the outcomes that are failures (no answer at all).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            DnsOutcome::Timeout | DnsOutcome::ServFail | DnsOutcome::Other
        )
    }
}

/// The shared caches of a verifier (see `SharedCache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheName {
    /// TXT answers (or failures moments ago), any purpose.
    Txt,
    /// Parsed DKIM (and ARC) key records.
    DkimKeys,
    /// MX answers.
    Mx,
    /// A answers (also whether a name exists, RFC 8020).
    A,
    /// AAAA answers.
    Aaaa,
    /// PTR answers.
    Ptr,
}

impl CacheName {
    /// Every cache, for exporters that declare their label values.
    pub const ALL: [CacheName; 6] = [
        CacheName::Txt,
        CacheName::DkimKeys,
        CacheName::Mx,
        CacheName::A,
        CacheName::Aaaa,
        CacheName::Ptr,
    ];

    /// A stable lower-case name: `txt`, `dkim_keys`, `mx`, `a`, `aaaa`,
    /// `ptr`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheName::Txt => "txt",
            CacheName::DkimKeys => "dkim_keys",
            CacheName::Mx => "mx",
            CacheName::A => "a",
            CacheName::Aaaa => "aaaa",
            CacheName::Ptr => "ptr",
        }
    }
}

/// Receives what the DNS layer does. Every method has an empty default;
/// calls happen on the message's task, so they must be cheap (an atomic
/// increment, a histogram observation).
pub trait DnsObserver: Send + Sync {
    /// One question sent to the resolver (not answered from our cache),
    /// with its outcome and how long it took (all of hickory's tries).
    fn question(&self, rtype: RecordType, outcome: DnsOutcome, elapsed: Duration) {
        let _ = (rtype, outcome, elapsed);
    }

    /// One lookup in a shared cache.
    fn cache_lookup(&self, cache: CacheName, hit: bool) {
        let _ = (cache, hit);
    }

    /// An entry evicted from a full cache (not an expiry).
    fn cache_eviction(&self, cache: CacheName) {
        let _ = cache;
    }
}

/// The observer that ignores everything (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl DnsObserver for NoObserver {}

/// The servers DNS questions go to: the configured ones, or those of the
/// system configuration (`/etc/resolv.conf`, empty when it cannot be
/// read). For log lines about the resolver's health.
pub fn nameserver_addresses(nameservers: &super::Nameservers) -> Vec<std::net::SocketAddr> {
    match nameservers {
        super::Nameservers::Explicit(addrs) => addrs.clone(),
        super::Nameservers::System => super::read_system_conf()
            .map(|(config, _)| {
                config
                    .name_servers()
                    .iter()
                    .map(|server| {
                        let port = server.connections.first().map_or(53, |c| c.port);
                        std::net::SocketAddr::new(server.ip, port)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl super::Dns {
    /// Asks the resolver once for the root zone's name servers (`. NS`),
    /// past our cache: the start-up check that the resolver answers at
    /// all. The question is reported to the observer like any other.
    /// Returns how it ended: any answer, even NXDOMAIN, shows a working
    /// resolver; a timeout, SERVFAIL or other failure does not.
    pub async fn probe(&self) -> DnsOutcome {
        let started = std::time::Instant::now();
        let result = self
            .authenticator
            .resolver()
            .lookup(
                super::Name::root(),
                mail_auth::hickory_resolver::proto::rr::RecordType::NS,
            )
            .await;
        let outcome = super::outcome_of(result.as_ref().map(|l| l.answers().is_empty()));
        self.observer
            .question(RecordType::Ns, outcome, started.elapsed());
        outcome
    }
}
