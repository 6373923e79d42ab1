//! The SMTP envelope of a message, and reading it back from a saved
//! message: [`SavedMessage`] splits a message file into its header fields,
//! [`infer`] takes MAIL FROM from `Return-Path` and the client's address
//! and HELO name from the topmost `Received` field, for the values the
//! caller does not know. `check-eml` and `dmarc-check` both read messages
//! this way.

mod infer;
mod saved;

pub use infer::{infer, parse_received, Inferred, KnownEnvelope, ReceivedFrom, Source};
pub use saved::{HeaderField, NotAMessage, SavedMessage};

use std::net::IpAddr;

/// What the SMTP session told us about a message.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::Envelope;
/// let envelope = Envelope::new("192.0.2.10".parse().unwrap(), "mail.example.com", "bounce@example.com");
/// assert_eq!(envelope.mail_from_domain(), Some("example.com"));
/// assert_eq!(Envelope::default().mail_from_domain(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The SMTP client's address; without it SPF is `none`.
    pub client_ip: Option<IpAddr>,
    /// The HELO/EHLO name.
    pub helo: String,
    /// The MAIL FROM address without angle brackets; empty for the null
    /// reverse-path `<>`.
    pub mail_from: String,
    /// The RCPT TO addresses.
    pub recipients: Vec<String>,
    /// The SASL user name, when the client authenticated.
    pub authenticated_user: Option<String>,
}

impl Envelope {
    /// An envelope with a client address, HELO name and MAIL FROM.
    pub fn new(client_ip: IpAddr, helo: &str, mail_from: &str) -> Envelope {
        Envelope {
            client_ip: Some(client_ip),
            helo: helo.to_string(),
            mail_from: mail_from.to_string(),
            ..Envelope::default()
        }
    }

    /// The domain of MAIL FROM, or `None` for the null reverse-path or an
    /// address without `@`.
    pub fn mail_from_domain(&self) -> Option<&str> {
        self.mail_from
            .rsplit_once('@')
            .map(|(_, domain)| domain)
            .filter(|d| !d.is_empty())
    }
}
