//! SPF (RFC 7208) of the envelope, by our own engine ([`crate::spf`])
//! asking our DNS layer: every lookup cached per record type and shared by
//! concurrent messages (see the `dns` module).

use crate::{
    dns::{Dns, DnsFailure},
    envelope::Envelope,
    spf::{self, Answer, LookupError, SpfLookup, SpfOptions, SpfRequest},
    trail::Trail,
    verdict::{SpfCheck, SpfResult, SpfScope},
};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

/// The SPF domain and scope of `envelope`: the MAIL FROM domain, or for a
/// null reverse-path the HELO name (RFC 7208 §2.4: checked as
/// `postmaster@<HELO>`), lower case without a trailing dot.
pub(crate) fn identity(envelope: &Envelope) -> (SpfScope, String) {
    let (scope, domain) = match envelope.mail_from_domain() {
        Some(domain) => (SpfScope::MailFrom, domain),
        None => (SpfScope::Helo, envelope.helo.as_str()),
    };
    (scope, domain.trim_end_matches('.').to_ascii_lowercase())
}

/// Checks SPF for `envelope` within `time_budget` (RFC 7208 §4.6.4), with
/// `host_name` for `%{r}`.
pub(crate) async fn check(
    dns: &Dns,
    host_name: &str,
    time_budget: Duration,
    envelope: &Envelope,
    trail: &Trail,
) -> SpfCheck {
    let (scope, domain) = identity(envelope);
    let none = |reason: &str| SpfCheck {
        result: SpfResult::None,
        domain: domain.clone(),
        scope,
        reason: Some(reason.to_string()),
        record: None,
    };
    // RFC 7208 §5: an IPv4-mapped IPv6 address is checked as IPv4 (the
    // engine does it too; the trail says the address checked).
    let Some(ip) = envelope.client_ip.map(|ip| ip.to_canonical()) else {
        trail.decide("SPF not checked: no client IP");
        return none("no client IP");
    };
    if domain.is_empty() {
        trail.decide("SPF not checked: null sender and no HELO name");
        return none("no identity");
    }
    let request = SpfRequest::mail_from(ip, &envelope.helo, &envelope.mail_from);
    let options = SpfOptions {
        time_budget,
        receiver: Some(host_name.to_string()),
    };
    let outcome = spf::check_host(&SpfDns { dns, trail }, &request, &options).await;
    trail.decide_with(|| {
        format!(
            "SPF {} for {} ({}) from {ip}: {}",
            outcome.result.as_str(),
            outcome.domain,
            outcome.scope.as_str(),
            outcome.reason
        )
    });
    SpfCheck {
        result: outcome.result,
        domain,
        scope,
        // The reason quotes records and names (the sender's text): the
        // header gets it only for errors, as RFC 8601 `reason`, quoted.
        reason: matches!(outcome.result, SpfResult::PermError | SpfResult::TempError)
            .then(|| outcome.reason.clone()),
        record: outcome.record.map(|record| record.to_string()),
    }
}

/// The SPF engine's view of our DNS layer for one message: every answer
/// from the shared per-type caches, every question in the trail.
pub(crate) struct SpfDns<'a> {
    pub(crate) dns: &'a Dns,
    pub(crate) trail: &'a Trail,
}

fn failed(failure: DnsFailure) -> LookupError {
    LookupError::new(failure.reason)
}

impl SpfLookup for SpfDns<'_> {
    async fn txt(&self, name: &str) -> Result<Answer<Box<[u8]>>, LookupError> {
        self.dns.txt(name, self.trail).await.map_err(failed)
    }

    async fn a(&self, name: &str) -> Result<Answer<Ipv4Addr>, LookupError> {
        self.dns.a(name, self.trail).await.map_err(failed)
    }

    async fn aaaa(&self, name: &str) -> Result<Answer<Ipv6Addr>, LookupError> {
        self.dns.aaaa(name, self.trail).await.map_err(failed)
    }

    async fn mx(&self, name: &str) -> Result<Answer<(u16, Box<str>)>, LookupError> {
        self.dns.mx(name, self.trail).await.map_err(failed)
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Answer<Box<str>>, LookupError> {
        self.dns.ptr(ip, self.trail).await.map_err(failed)
    }
}
