//! The library's error type: setting up a verifier (or an ARC sealer) can
//! fail, and so can sealing; checking a message cannot (every problem
//! becomes a result in the verdict).

use std::fmt;

/// Why a [`crate::Verifier`] or an [`crate::arc::ArcSealer`] could not be
/// built, or a message could not be sealed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The DNS resolver could not be set up (e.g. unreadable resolv.conf).
    Resolver(String),
    /// The Public Suffix List could not be read or parsed.
    Psl {
        /// The file (or "bundled snapshot").
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    Config {
        /// The setting.
        key: &'static str,
        /// The bad value.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// An ARC sealing key could not be used (never contains the key).
    ArcKey(String),
    /// A message could not be sealed (RFC 8617 §5.1), and why.
    ArcSeal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolver(reason) => write!(f, "cannot set up the DNS resolver: {reason}"),
            Error::Psl {
                source_name,
                reason,
            } => {
                write!(
                    f,
                    "cannot load the Public Suffix List from {source_name}: {reason}"
                )
            }
            Error::Config {
                key,
                value,
                expected,
            } => {
                write!(f, "invalid value {value:?} for {key} (expected {expected})")
            }
            Error::ArcKey(reason) => write!(f, "cannot use the ARC sealing key: {reason}"),
            Error::ArcSeal(reason) => write!(f, "message not sealed: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
