//! The library's error type: setting up a verifier can fail; checking a
//! message cannot (every problem becomes a result in the verdict).

use std::fmt;

/// Why a [`crate::Verifier`] could not be built.
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
        }
    }
}

impl std::error::Error for Error {}
