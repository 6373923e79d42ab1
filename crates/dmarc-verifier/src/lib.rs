//! # dmarc-verifier
//!
//! Checks inbound mail against DMARC: SPF (RFC 7208) of the envelope, every
//! DKIM signature (RFC 6376, RFC 8301, RFC 8463, verified by
//! [mail-auth](https://crates.io/crates/mail-auth)), the DMARC Policy Record
//! of each Author Domain found by the Public Suffix List (RFC 7489) or the
//! DNS tree walk (RFC 9989), identifier alignment, `p`/`sp`/`np`, `pct` and
//! `t`, the ARC chain (RFC 8617), and local policy, including the overrides
//! of indirect mail flows (trusted ARC sealers, trusted forwarders,
//! mailing lists, per-domain policy). The outcome is a typed [`Verdict`]: every result,
//! the decisive record, a [`Disposition`] (accept, quarantine, reject,
//! tempfail), an RFC 8601 Authentication-Results header and the decision
//! trail.
//!
//! ```no_run
//! use dmarc_verifier::{Disposition, Envelope, Verifier, VerifierConfig};
//!
//! # async fn run(raw_message: &[u8]) -> Result<(), dmarc_verifier::Error> {
//! let verifier = Verifier::new(VerifierConfig {
//!     authserv_id: "mx.example.net".to_string(),
//!     ..VerifierConfig::default()
//! })?;
//! let envelope = Envelope::new("192.0.2.10".parse().unwrap(), "mail.example.com", "bounce@example.com");
//! let verdict = verifier.verify(&envelope, raw_message).await;
//! println!("{}", verdict.authentication_results_header("\r\n"));
//! if verdict.disposition == Disposition::Reject {
//!     // refuse with 550 5.7.1
//! }
//! # Ok(()) }
//! ```
//!
//! SPF is our own RFC 7208 `check_host()` ([`spf`]: all of the RFC 7208
//! test suite, asking the DNS through [`spf::SpfLookup`], which the
//! verifier answers from its shared cache); DKIM verification is
//! mail-auth's, with our key lookups and the rules of RFC 6376 §6.1 it
//! leaves to us.
//!
//! Logging goes through `tracing`: `debug` carries the decision trail
//! (target `dmarc_verifier::trail`), `info` the shadow-discovery
//! disagreements. The library never logs above `info` for a message: what
//! happened is in the verdict.

#![warn(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod alignment;
pub mod arc;
pub mod auth_results;
mod conclude;
pub mod config;
pub mod discovery;
mod dkim;
mod dkim_key;
pub mod dns;
pub mod envelope;
mod error;
mod evaluate;
pub mod message;
pub mod overrides;
pub mod policy;
pub mod record;
pub mod spf;
mod spf_check;
pub mod trail;
pub mod verdict;
mod verifier;

pub use config::{Enforcement, InvalidFromResult, TempErrorAction, VerifierConfig};
pub use discovery::{DiscoveryMethod, PublicSuffixList};
pub use dns::{DnsConfig, Nameservers};
pub use envelope::Envelope;
pub use error::Error;
pub use overrides::{OverrideConfig, PolicyOverride, TrustedForwarder};
pub use policy::{Disposition, OverrideReason, PctMode};
pub use record::{DmarcRecord, Policy};
pub use verdict::{
    DkimCheck, DkimResult, DmarcResult, Evaluation, SpfCheck, SpfResult, SpfScope, Verdict,
};
pub use verifier::{Verifier, VerifyOptions};

/// The workspace README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
