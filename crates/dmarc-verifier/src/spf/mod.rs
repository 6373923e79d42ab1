//! SPF: the `check_host()` function of RFC 7208 §4, written from the RFC.
//!
//! [`check_host`] evaluates the SPF record of a domain for a client IP
//! address and returns an [`SpfOutcome`]: one of the seven results of
//! RFC 7208 §2.6 ([`SpfResult`]), the reason in words for the decision
//! trail, the explanation of a `fail` (§6.2) and the text of the record
//! evaluated. It asks the DNS through [`SpfLookup`], so that the caller
//! decides where answers come from (a cache, a resolver, a [`Zone`]).
//!
//! What it follows, section by section:
//!
//! - The identity (§2.3, §2.4): [`SpfRequest::mail_from`] checks the MAIL
//!   FROM domain, or for the null reverse-path `postmaster@<HELO>`;
//!   [`SpfRequest::helo`] checks the HELO identity.
//! - Initial processing (§4.3): a `<domain>` that is not a multi-label name
//!   of labels of 1 to 63 octets ending in a top-level label (§7.1), at
//!   most 253 octets, gives `none` without a query. A `<sender>` without
//!   local-part is `postmaster@<domain>`.
//! - Records (§4.4, §4.5): the TXT records of `<domain>` (never type SPF);
//!   none starting with `v=spf1` (any case, then a space or the end) is
//!   `none`, more than one is `permerror`. NXDOMAIN is `none`, a lookup
//!   failure `temperror`.
//! - Terms (§4.6, §12): the whole record is read before any term is
//!   evaluated; a term outside the ABNF, an unknown mechanism, `redirect`
//!   or `exp` twice, is `permerror`. Unknown modifiers are ignored.
//! - Mechanisms (§5): `all`, `include` (pass matches; fail, softfail and
//!   neutral do not; temperror and permerror are the result; none is
//!   permerror), `a` and `mx` with dual CIDR lengths, `ptr`, `ip4`, `ip6`
//!   (never matching an IPv4 client: an IPv4-mapped IPv6 client is an
//!   IPv4 client, §5), `exists` (A records, whatever the client's family).
//! - Modifiers (§6): `redirect` when no mechanism matched (and the
//!   record's `exp` is then not used), `exp` for a `fail` of the top-level
//!   record (not of an included one).
//! - Macros (§7): every letter, transformer and delimiter; `c`, `r`, `t`
//!   only in explanations; upper-case letters URL-escaped; `%{p}` a
//!   validated name of the client, or `unknown`. An expanded name has its
//!   trailing dot removed and is shortened from the left to 253 octets.
//! - A target name that cannot be queried (an empty label, a label over 63
//!   octets, §4.3 by analogy) matches nothing in `a`, `mx`, `ptr` and
//!   `exists`, and is `permerror` in `include` and `redirect` (their
//!   check_host() of it would be `none`).
//! - Limits (§4.6.4): at most [`DNS_LOOKUP_LIMIT`] terms that ask the DNS
//!   (`include`, `a`, `mx`, `ptr`, `exists`, `redirect`), at most
//!   [`VOID_LOOKUP_LIMIT`] of them answered NXDOMAIN or NODATA (the `ptr`
//!   mechanism, whose PTR records are the client's and not the domain's,
//!   does not count), the addresses of at most [`MX_NAME_LIMIT`] MX names
//!   per `mx`, at most the first [`PTR_NAME_LIMIT`] PTR names; beyond the
//!   first three limits the result is `permerror`. The time spent waiting on the DNS is bounded by
//!   [`SpfOptions::time_budget`] (`temperror` when exceeded).
//!
//! Where the RFC leaves an order open, the engine fixes one, so that the
//! result does not depend on the order of DNS answers: MX names are tried
//! by preference then name, and the "first 10" PTR names are the 10
//! smallest in name order.
//!
//! Reading a record depends on its text alone: records read are kept in a
//! process-wide memo keyed by their text (compared whole; about 4 MiB,
//! oldest first out), so that a record met again, such as an ESP's
//! include chain, is not read again. The memo only saves work: it cannot
//! make one message's result depend on another's.
//!
//! # Examples
//!
//! ```
//! use dmarc_verifier::{
//!     dns::zone::Zone,
//!     spf::{check_host, SpfOptions, SpfRequest},
//!     SpfResult,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), dmarc_verifier::dns::zone::ZoneError> {
//! let zone = Zone::parse(
//!     "example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n",
//!     None,
//! )?;
//! let request = SpfRequest::mail_from(
//!     "192.0.2.10".parse().unwrap(),
//!     "mail.example.com",
//!     "bounce@example.com",
//! );
//! let outcome = check_host(&zone, &request, &SpfOptions::default()).await;
//! assert_eq!(outcome.result, SpfResult::Pass);
//! assert_eq!(outcome.reason, "mechanism ip4:192.0.2.0/24 of example.com matched");
//! assert_eq!(outcome.record.as_deref(), Some("v=spf1 ip4:192.0.2.0/24 -all"));
//! # Ok(()) }
//! ```
//!
//! [`Zone`]: crate::dns::zone::Zone

mod eval;
mod lookup;
mod macros;
mod name;
mod record;

#[cfg(test)]
mod tests;

pub use crate::verdict::{SpfResult, SpfScope};
pub use lookup::{reverse_name, Answer, LookupError, SpfLookup};

use std::{fmt, net::IpAddr, ops::Deref, sync::Arc, time::Duration};

/// RFC 7208 §4.6.4: at most 10 terms that ask the DNS per check.
pub const DNS_LOOKUP_LIMIT: u8 = 10;
/// RFC 7208 §4.6.4: at most 2 of those terms answered NXDOMAIN or NODATA
/// (the RFC's recommended default).
pub const VOID_LOOKUP_LIMIT: u8 = 2;
/// RFC 7208 §4.6.4: an `mx` mechanism that would look up the addresses
/// of more MX names is `permerror` (one that matches before does not).
pub const MX_NAME_LIMIT: usize = 10;
/// RFC 7208 §4.6.4: `ptr` and `%{p}` look at this many PTR names, and
/// ignore the others.
pub const PTR_NAME_LIMIT: usize = 10;
/// RFC 7208 §4.6.4 suggests allowing at least 20 seconds.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(20);

/// What check_host() is asked: RFC 7208 §4.1's `<ip>`, `<domain>` and
/// `<sender>`, the HELO name, and which identity this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpfRequest<'a> {
    /// `<ip>`: the SMTP client's address. An IPv4-mapped IPv6 address is
    /// checked as the IPv4 address (RFC 7208 §5).
    pub ip: IpAddr,
    /// Which identity `<domain>` and `<sender>` come from.
    pub scope: SpfScope,
    /// `<domain>`: the domain whose record is evaluated. One trailing dot is
    /// ignored; case does not matter.
    pub domain: &'a str,
    /// `<sender>`: `local-part@domain`. Empty, or with an empty local-part,
    /// it is `postmaster@<domain>` (§4.3); without `@`, all of it is the
    /// local-part and `%{o}` is `<domain>`.
    pub sender: &'a str,
    /// The HELO/EHLO name (`%{h}`).
    pub helo: &'a str,
}

impl<'a> SpfRequest<'a> {
    /// The MAIL FROM identity (RFC 7208 §2.4): the domain of `mail_from`.
    /// For the null reverse-path (`mail_from` empty), the HELO identity
    /// with `<sender>` `postmaster@<helo>`, as §2.4 defines it. A
    /// `mail_from` without `@` has no domain: the check is `none`.
    pub fn mail_from(ip: IpAddr, helo: &'a str, mail_from: &'a str) -> SpfRequest<'a> {
        if mail_from.is_empty() {
            return SpfRequest::helo(ip, helo);
        }
        SpfRequest {
            ip,
            scope: SpfScope::MailFrom,
            domain: mail_from.rsplit_once('@').map_or("", |(_, domain)| domain),
            sender: mail_from,
            helo,
        }
    }

    /// The HELO identity (RFC 7208 §2.3): `<domain>` is the HELO name,
    /// `<sender>` `postmaster@<helo>`.
    pub fn helo(ip: IpAddr, helo: &'a str) -> SpfRequest<'a> {
        SpfRequest {
            ip,
            scope: SpfScope::Helo,
            domain: helo,
            sender: "",
            helo,
        }
    }
}

/// How check_host() runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOptions {
    /// The longest time the whole check may wait on the DNS (RFC 7208
    /// §4.6.4); beyond it the result is `temperror`, with what was awaited
    /// in the reason. The clock starts at the first lookup that has to
    /// wait (answers at hand, from a warm cache, cost no clock reading and
    /// no timer). Enforced with Tokio's timer inside a Tokio runtime, which
    /// must then have its time driver (`enable_time`, `enable_all`);
    /// outside one, the lookups' own timeouts are the only bound. An
    /// explanation (§6.2) is looked up within what is left and dropped
    /// when time runs out.
    pub time_budget: Duration,
    /// The name of the host checking, for `%{r}` in explanations; `None`
    /// expands to `unknown` (RFC 7208 §7.3).
    pub receiver: Option<String>,
}

impl Default for SpfOptions {
    /// [`DEFAULT_TIME_BUDGET`], no receiver name.
    fn default() -> Self {
        SpfOptions {
            time_budget: DEFAULT_TIME_BUDGET,
            receiver: None,
        }
    }
}

/// The outcome of check_host().
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result (RFC 7208 §2.6).
    pub result: SpfResult,
    /// The identity checked.
    pub scope: SpfScope,
    /// `<domain>` as checked: lower case, without trailing dot.
    pub domain: String,
    /// Why, in words, for the decision trail: the matching mechanism and
    /// the record it is in (`mechanism ip4:192.0.2.0/24 of example.com
    /// matched`), the limit exceeded and where, the lookup that failed, the
    /// syntax error. It quotes records and DNS names: attacker-controlled
    /// text, not for headers.
    pub reason: String,
    /// For `fail`: the explanation string of the top-level record's
    /// `exp=` (RFC 7208 §6.2), expanded; `None` without `exp=`, or when its
    /// lookup or text fails (the caller's default applies).
    pub explanation: Option<String>,
    /// The SPF record of `<domain>` as published (its strings joined, §3.3;
    /// any octet that is not UTF-8 replaced), when one was selected: the
    /// `SPF-DNS` field of RFC 9991 failure reports. A `redirect=` target's
    /// record is not this one.
    pub record: Option<SpfRecordText>,
    /// How many terms asked the DNS (at most [`DNS_LOOKUP_LIMIT`], one more
    /// when that limit was exceeded).
    pub dns_lookups: u8,
    /// How many of them were void (NXDOMAIN or NODATA).
    pub void_lookups: u8,
}

/// The text of an SPF record, shared with the engine's memo of records
/// read (cloning it copies no text).
#[derive(Clone)]
pub struct SpfRecordText(Arc<record::Parsed>);

impl SpfRecordText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

impl Deref for SpfRecordText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SpfRecordText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SpfRecordText {}

impl PartialEq<str> for SpfRecordText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SpfRecordText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for SpfRecordText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SpfRecordText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SpfOutcome {
    /// `<result> for <domain> (<scope>): <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} for {} ({}): {}",
            self.result.as_str(),
            self.domain,
            self.scope.as_str(),
            self.reason
        )
    }
}

/// Runs check_host() (RFC 7208 §4) for `request`, asking `lookup`.
///
/// DNS lookups, each only when the evaluation reaches it: TXT at
/// `<domain>` and at each `include:` and `redirect=` target; A (IPv4
/// client) or AAAA (IPv6 client) for `a`, for each MX name of `mx` and
/// each PTR name `ptr` or `%{p}` validates; MX for `mx`; PTR of `<ip>` for
/// `ptr` and `%{p}`; A for `exists`; TXT for the explanation of a `fail`.
/// A name that cannot be queried is never sent.
///
/// Every result of RFC 7208 §2.6 can come back; see the
/// [module documentation](self) for which rule gives which. Never panics;
/// inside a Tokio runtime, the time budget is enforced with its timer.
pub async fn check_host<L: SpfLookup>(
    lookup: &L,
    request: &SpfRequest<'_>,
    options: &SpfOptions,
) -> SpfOutcome {
    eval::check_host(lookup, request, options).await
}
