//! # dmarc-report
//!
//! DMARC reporting, the receiver side: what is recorded for every evaluated
//! message ([`EvaluationRecord`]), where it is kept ([`store`]: SQLite by
//! default, PostgreSQL for several MX hosts sharing one report set), and the
//! reports built from it: RFC 9990 aggregate reports and RFC 9991 failure
//! reports.

#![warn(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod aggregate;
pub mod counters;
pub mod deliver;
pub mod destination;
pub mod failure;
pub mod logging;
pub mod model;
pub mod redact;
pub mod run;
pub mod store;

pub use model::EvaluationRecord;
