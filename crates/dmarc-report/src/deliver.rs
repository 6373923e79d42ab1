//! Report delivery: the transport (SMTP relay or a directory), external
//! destination verification (RFC 9990 §4, RFC 9991 §5), per-destination
//! rate limits for failure reports, and the delivery loop over the store's
//! pending messages.
//!
//! A message leaves the pending set only when it was delivered, or when
//! retrying cannot help (the destination refused the report, or every
//! allowed attempt failed); in both cases it stays in the store with its
//! last error for inspection until purged.

use crate::store::{MessageKind, QueuedMessage, Store, StoreError};
use dmarc_verifier::{dns::Dns, PublicSuffixList};
use lettre::{address::Envelope, Address, SmtpTransport, Transport as _};
use std::{
    collections::HashMap,
    fmt, fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

/// Where report mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An SMTP relay (plain SMTP, no authentication: a local MTA such as
    /// Postfix on 127.0.0.1:25, which then does the real delivery).
    Smtp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Write each message as `<id>.eml` (with the envelope in
    /// `X-Report-Envelope-*` files' names) into a directory, for a
    /// separate delivery step or for inspection.
    Directory(PathBuf),
}

impl Transport {
    /// Parses `smtp:HOST:PORT` (`smtp:HOST` means port 25) or `dir:PATH`.
    ///
    /// # Errors
    ///
    /// What was expected, for a configuration error message.
    pub fn parse(text: &str) -> Result<Transport, &'static str> {
        const EXPECTED: &str = "smtp:HOST[:PORT] or dir:/PATH";
        if let Some(path) = text.strip_prefix("dir:") {
            if path.is_empty() {
                return Err(EXPECTED);
            }
            return Ok(Transport::Directory(PathBuf::from(path)));
        }
        let Some(rest) = text.strip_prefix("smtp:") else {
            return Err(EXPECTED);
        };
        let (host, port) = match rest.rsplit_once(':') {
            // `smtp:[::1]:25` or `smtp:host:25`
            Some((host, port)) if !host.is_empty() && !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| EXPECTED)?)
            }
            _ => (rest, 25),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(EXPECTED);
        }
        Ok(Transport::Smtp {
            host: host.to_string(),
            port,
        })
    }

    /// Delivers one message.
    ///
    /// # Errors
    ///
    /// [`DeliveryError`], `permanent` when the relay refused the message
    /// with a 5xx reply or the addresses are unusable.
    pub fn send(
        &self,
        id: i64,
        sender: &str,
        recipient: &str,
        payload: &[u8],
    ) -> Result<(), DeliveryError> {
        let permanent = |message: String| DeliveryError {
            message,
            permanent: true,
        };
        let from: Address = sender
            .parse()
            .map_err(|e| permanent(format!("sender {sender:?}: {e}")))?;
        let to: Address = recipient
            .parse()
            .map_err(|e| permanent(format!("recipient {recipient:?}: {e}")))?;
        match self {
            Transport::Smtp { host, port } => {
                let envelope = Envelope::new(Some(from), vec![to])
                    .map_err(|e| permanent(format!("envelope: {e}")))?;
                let mailer = SmtpTransport::builder_dangerous(host.as_str())
                    .port(*port)
                    .timeout(Some(Duration::from_secs(60)))
                    .build();
                mailer
                    .send_raw(&envelope, payload)
                    .map(drop)
                    .map_err(|e| DeliveryError {
                        permanent: e.is_permanent(),
                        message: format!("SMTP relay {host}:{port}: {e}"),
                    })
            }
            Transport::Directory(dir) => write_file(dir, id, sender, recipient, payload),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Smtp { host, port } if host.contains(':') => {
                write!(f, "smtp:[{host}]:{port}")
            }
            Transport::Smtp { host, port } => write!(f, "smtp:{host}:{port}"),
            Transport::Directory(dir) => write!(f, "dir:{}", dir.display()),
        }
    }
}

/// Writes `<dir>/<id>.eml` with `Return-Path` and `X-Original-To` giving
/// the envelope, through a temporary file and a rename so a reader never
/// sees half a message.
fn write_file(
    dir: &Path,
    id: i64,
    sender: &str,
    recipient: &str,
    payload: &[u8],
) -> Result<(), DeliveryError> {
    let fail = |what: &str, e: std::io::Error| DeliveryError {
        message: format!("{what} {}: {e}", dir.display()),
        permanent: false,
    };
    fs::create_dir_all(dir).map_err(|e| fail("cannot create", e))?;
    let path = dir.join(format!("{id}.eml"));
    let temporary = dir.join(format!(".{id}.eml.tmp"));
    let mut file = fs::File::create(&temporary).map_err(|e| fail("cannot write into", e))?;
    let header = format!(
        "Return-Path: <{}>\r\nX-Original-To: {}\r\n",
        one_line(sender),
        one_line(recipient)
    );
    file.write_all(header.as_bytes())
        .and_then(|()| file.write_all(payload))
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("cannot write into", e))?;
    fs::rename(&temporary, &path).map_err(|e| fail("cannot write into", e))
}

fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// A delivery attempt that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// What went wrong.
    pub message: String,
    /// True when retrying cannot help.
    pub permanent: bool,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeliveryError {}

/// Whether a report destination accepts reports about a policy domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Same organization, or the destination published its consent.
    Authorized,
    /// The destination is outside the policy domain's organization and
    /// published no consent: never send (RFC 9990 §4).
    Refused,
    /// The DNS question failed: try again on a later run.
    Unknown(String),
}

/// Answers the RFC 9990 §4 question: may reports about `policy_domain`
/// go to an address at `destination_host`?
pub trait DestinationCheck {
    /// The answer for one pair.
    fn check(&mut self, policy_domain: &str, destination_host: &str) -> Authorization;
}

/// The RFC 9990 §4 check over DNS: a destination outside the policy
/// domain's Organizational Domain (Public Suffix List) must publish a TXT
/// record beginning `v=DMARC1` at
/// `<policy-domain>._report._dmarc.<destination-host>` (a wildcard
/// `*._report._dmarc.<destination-host>` answers for every domain).
/// Answers are remembered for the run.
pub struct DnsDestinationCheck<'a> {
    dns: &'a Dns,
    psl: &'a PublicSuffixList,
    runtime: &'a tokio::runtime::Runtime,
    answers: HashMap<(String, String), Authorization>,
}

impl fmt::Debug for DnsDestinationCheck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDestinationCheck")
            .field("answers", &self.answers)
            .finish_non_exhaustive()
    }
}

impl<'a> DnsDestinationCheck<'a> {
    /// A check asking `dns`, deciding organizations with `psl`, running
    /// the lookups on `runtime` (the caller must not be inside it).
    pub fn new(
        dns: &'a Dns,
        psl: &'a PublicSuffixList,
        runtime: &'a tokio::runtime::Runtime,
    ) -> DnsDestinationCheck<'a> {
        DnsDestinationCheck {
            dns,
            psl,
            runtime,
            answers: HashMap::new(),
        }
    }
}

impl DestinationCheck for DnsDestinationCheck<'_> {
    fn check(&mut self, policy_domain: &str, destination_host: &str) -> Authorization {
        let policy_domain = policy_domain.trim_end_matches('.').to_ascii_lowercase();
        let host = destination_host.trim_end_matches('.').to_ascii_lowercase();
        // RFC 9990 §4: only a destination outside the policy domain's
        // Organizational Domain needs to consent.
        if self.psl.org_domain(&policy_domain) == self.psl.org_domain(&host) {
            return Authorization::Authorized;
        }
        let key = (policy_domain, host);
        if let Some(answer) = self.answers.get(&key) {
            return answer.clone();
        }
        let name = format!("{}._report._dmarc.{}", key.0, key.1);
        let answer = match self.runtime.block_on(self.dns.lookup_txt(&name)) {
            Ok(Some(records)) if records.iter().any(|r| is_dmarc1(r)) => Authorization::Authorized,
            Ok(_) => Authorization::Refused,
            Err(failure) => Authorization::Unknown(failure.to_string()),
        };
        self.answers.insert(key, answer.clone());
        answer
    }
}

/// RFC 9990 §4: the record "MUST begin with `v=DMARC1`" (white space and
/// case tolerated as in the DMARC record grammar of RFC 9989 §4.7).
fn is_dmarc1(record: &[u8]) -> bool {
    let text = String::from_utf8_lossy(record);
    let mut first = text.split(';').next().unwrap_or_default().splitn(2, '=');
    let tag = first.next().unwrap_or_default().trim();
    let value = first.next().unwrap_or_default().trim();
    tag == "v" && value.eq_ignore_ascii_case("DMARC1")
}

/// How long a run holds a message it is delivering: longer than the SMTP
/// timeout, so a slow delivery is not taken over, short enough that a
/// crashed run's messages go out with the next.
const CLAIM_SECONDS: i64 = 600;

/// How the delivery loop behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Attempts before a message is given up (default 24: a day of hourly
    /// runs).
    pub max_attempts: u32,
    /// Failure reports sent to one recipient per hour, at most (RFC 9991
    /// §5 asks receivers to limit them; default 10). Over the limit a
    /// failure report is dropped, not delayed: a late one has little use.
    pub failure_reports_per_hour: u64,
    /// Messages read from the store at a time (default 100).
    pub batch: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: 24,
            failure_reports_per_hour: 10,
            batch: 100,
        }
    }
}

/// What one delivery run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Delivered.
    pub sent: u64,
    /// Failed this time, to be retried.
    pub deferred: u64,
    /// Given up: refused by the relay, out of attempts, or unusable.
    pub given_up: u64,
    /// Not sent: the destination did not consent (RFC 9990 §4).
    pub unauthorized: u64,
    /// Failure reports dropped by the per-recipient rate limit.
    pub rate_limited: u64,
    /// Left to another run that holds them (several MX hosts sharing a
    /// store).
    pub claimed_elsewhere: u64,
}

/// Delivers every pending message once: each is checked (destination
/// consent, rate limit) and sent, then marked sent, failed or given up.
/// Messages that fail stay pending for the next run until `max_attempts`.
///
/// # Errors
///
/// [`StoreError`] when the store cannot be read or updated; whatever was
/// marked before stays marked.
pub fn deliver_pending(
    store: &mut dyn Store,
    transport: &Transport,
    destinations: &mut dyn DestinationCheck,
    settings: &DeliverySettings,
    now: i64,
) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    // Messages deferred in this run are not offered again by the store
    // until the next run: remember them so the loop ends.
    let mut seen = std::collections::HashSet::new();
    loop {
        let batch = store.pending_messages(settings.batch.max(1) + seen.len())?;
        let fresh: Vec<QueuedMessage> = batch
            .into_iter()
            .filter(|m| !seen.contains(&m.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for queued in fresh {
            seen.insert(queued.id);
            deliver_one(
                store,
                transport,
                destinations,
                settings,
                now,
                &queued,
                &mut summary,
            )?;
        }
    }
    Ok(summary)
}

fn deliver_one(
    store: &mut dyn Store,
    transport: &Transport,
    destinations: &mut dyn DestinationCheck,
    settings: &DeliverySettings,
    now: i64,
    queued: &QueuedMessage,
    summary: &mut DeliverySummary,
) -> Result<(), StoreError> {
    let message = &queued.message;
    // Another run (another MX host on a shared store) may be delivering it.
    if !store.claim(queued.id, now, now + CLAIM_SECONDS)? {
        summary.claimed_elsewhere += 1;
        return Ok(());
    }
    let Some((_, host)) = message.recipient.rsplit_once('@') else {
        summary.given_up += 1;
        return store.mark_failed(queued.id, "recipient without a domain", true);
    };
    match destinations.check(&message.policy_domain, host) {
        Authorization::Authorized => {}
        Authorization::Refused => {
            summary.unauthorized += 1;
            tracing::info!(
                recipient = %message.recipient,
                policy_domain = %message.policy_domain,
                "report not sent: the destination publishes no {}._report._dmarc.{} record (RFC 9990 §4)",
                message.policy_domain,
                host
            );
            return store.mark_failed(
                queued.id,
                "destination did not authorize reports for this domain (RFC 9990 §4)",
                true,
            );
        }
        Authorization::Unknown(reason) => {
            return defer(
                store,
                settings,
                queued,
                &format!("destination check: {reason}"),
                summary,
            );
        }
    }
    if message.kind == MessageKind::Failure {
        let sent = store.sent_since(MessageKind::Failure, &message.recipient, now - 3600)?;
        if sent >= settings.failure_reports_per_hour {
            summary.rate_limited += 1;
            return store.mark_failed(
                queued.id,
                &format!("rate limit: {sent} failure reports to this recipient in the last hour"),
                true,
            );
        }
    }
    match transport.send(
        queued.id,
        &message.sender,
        &message.recipient,
        &message.payload,
    ) {
        Ok(()) => {
            summary.sent += 1;
            tracing::info!(
                id = queued.id,
                recipient = %message.recipient,
                policy_domain = %message.policy_domain,
                "report delivered"
            );
            store.mark_sent(queued.id, now)
        }
        Err(error) if error.permanent => {
            summary.given_up += 1;
            tracing::warn!(id = queued.id, recipient = %message.recipient, "report refused: {error}");
            store.mark_failed(queued.id, &error.message, true)
        }
        Err(error) => defer(store, settings, queued, &error.message, summary),
    }
}

fn defer(
    store: &mut dyn Store,
    settings: &DeliverySettings,
    queued: &QueuedMessage,
    error: &str,
    summary: &mut DeliverySummary,
) -> Result<(), StoreError> {
    let give_up = queued.attempts.saturating_add(1) >= settings.max_attempts;
    if give_up {
        summary.given_up += 1;
        tracing::warn!(
            id = queued.id,
            recipient = %queued.message.recipient,
            attempts = queued.attempts.saturating_add(1),
            "report given up: {error}"
        );
    } else {
        summary.deferred += 1;
        tracing::warn!(
            id = queued.id,
            recipient = %queued.message.recipient,
            "report delivery failed, will retry: {error}"
        );
    }
    store.mark_failed(queued.id, error, give_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse() {
        assert_eq!(
            Transport::parse("smtp:127.0.0.1:2525"),
            Ok(Transport::Smtp {
                host: "127.0.0.1".into(),
                port: 2525
            })
        );
        assert_eq!(
            Transport::parse("smtp:mail.example.net"),
            Ok(Transport::Smtp {
                host: "mail.example.net".into(),
                port: 25
            })
        );
        assert_eq!(
            Transport::parse("smtp:[::1]:25"),
            Ok(Transport::Smtp {
                host: "::1".into(),
                port: 25
            })
        );
        assert_eq!(
            Transport::parse("dir:/var/spool/dmarc"),
            Ok(Transport::Directory("/var/spool/dmarc".into()))
        );
        for bad in [
            "",
            "smtp:",
            "dir:",
            "http://x",
            "smtp:host:99999",
            "smtp:a b",
        ] {
            assert!(Transport::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Transport::parse("smtp:[::1]:25").unwrap().to_string(),
            "smtp:[::1]:25"
        );
    }

    #[test]
    fn consent_records_begin_with_v_dmarc1() {
        assert!(is_dmarc1(b"v=DMARC1"));
        assert!(is_dmarc1(b"v = dmarc1 ; rua=mailto:x@y"));
        assert!(!is_dmarc1(b"v=DMARC2"));
        assert!(!is_dmarc1(b"p=none; v=DMARC1"));
        assert!(!is_dmarc1(b""));
    }
}
