//! SPF (RFC 7208) of the envelope, through mail-auth's `check_host`, with
//! our DNS cache (see the `dns` module: mail-auth's SPF reads a per-message
//! view in which only SPF records it parsed as such are shared).

use crate::{
    dns::{Dns, SpfView},
    envelope::Envelope,
    trail::Trail,
    verdict::{SpfCheck, SpfResult, SpfScope},
};
use mail_auth::{spf::verify::SpfParameters, Parameters, SpfResult as MaSpf};

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

/// Checks SPF for `envelope`. The SPF record of the checked domain is
/// fetched through our coalescing path first, so that many messages from
/// one sender cause one query.
pub(crate) async fn check(
    dns: &Dns,
    host_name: &str,
    envelope: &Envelope,
    trail: &Trail,
) -> SpfCheck {
    let (scope, domain) = identity(envelope);
    // RFC 7208 §5: an IPv4-mapped IPv6 address is checked as IPv4.
    let Some(ip) = envelope.client_ip.map(|ip| ip.to_canonical()) else {
        trail.decide("SPF not checked: no client IP");
        return SpfCheck {
            result: SpfResult::None,
            domain,
            scope,
            reason: Some("no client IP".to_string()),
        };
    };
    if domain.is_empty() {
        trail.decide("SPF not checked: null sender and no HELO name");
        return SpfCheck {
            result: SpfResult::None,
            domain,
            scope,
            reason: Some("no identity".to_string()),
        };
    }
    let view = SpfView::new(&dns.cache, trail);
    dns.prefetch_spf(&domain, &view, trail).await;
    let params = SpfParameters::mail_from(ip, &envelope.helo, host_name, &envelope.mail_from);
    let output = dns
        .authenticator
        .check_host(Parameters::new(params).with_cache(&view))
        .await;
    let result = match output.result() {
        MaSpf::Pass => SpfResult::Pass,
        MaSpf::Fail => SpfResult::Fail,
        MaSpf::SoftFail => SpfResult::SoftFail,
        MaSpf::Neutral => SpfResult::Neutral,
        MaSpf::TempError => SpfResult::TempError,
        MaSpf::PermError => SpfResult::PermError,
        MaSpf::None => SpfResult::None,
    };
    trail.decide_with(|| {
        format!(
            "SPF {} for {domain} ({}) from {ip}{}",
            result.as_str(),
            scope.as_str(),
            output
                .explanation()
                .map(|e| format!(": {}", e.escape_debug()))
                .unwrap_or_default()
        )
    });
    SpfCheck {
        result,
        domain,
        scope,
        reason: None,
    }
}
