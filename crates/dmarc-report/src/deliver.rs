//! Report delivery: the transport (SMTP relay or a directory), external
//! destination verification (RFC 9990 §4, RFC 9991 §5), per-destination
//! rate limits for failure reports, and the delivery loop over the store's
//! pending messages.
//!
//! A message leaves the pending set only when it was delivered, or when
//! retrying cannot help (the destination refused the report, or every
//! allowed attempt failed); in both cases it stays in the store with its
//! last error for inspection until purged.

use crate::{
    destination::{address_domain, usable_address},
    logging::Escaped,
    store::{MessageKind, QueuedMessage, Store, StoreError},
};
use dmarc_verifier::{dns::Dns, PublicSuffixList};
use futures_util::StreamExt as _;
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

    /// Delivers one message to one recipient.
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
        self.send_to(id, sender, &[recipient.to_string()], payload)
    }

    /// Delivers one message to several recipients (one SMTP transaction,
    /// or one file).
    ///
    /// # Errors
    ///
    /// As [`Transport::send`].
    pub fn send_to(
        &self,
        id: i64,
        sender: &str,
        recipients: &[String],
        payload: &[u8],
    ) -> Result<(), DeliveryError> {
        let permanent = |message: String| DeliveryError {
            message,
            permanent: true,
        };
        let from: Address = sender
            .parse()
            .map_err(|e| permanent(format!("sender {sender:?}: {e}")))?;
        let to = recipients
            .iter()
            .map(|recipient| {
                recipient
                    .parse::<Address>()
                    .map_err(|e| permanent(format!("recipient {recipient:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self {
            Transport::Smtp { host, port } => {
                let envelope = Envelope::new(Some(from), to)
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
            Transport::Directory(dir) => {
                write_file(dir, id, sender, &recipients.join(", "), payload)
            }
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
    /// Same organization, or the destination published its consent
    /// without naming other addresses.
    Authorized,
    /// The destination consented and its consent record names the
    /// addresses to use instead (RFC 9990 §4 step 9, RFC 9991 §5 for
    /// `ruf`).
    Consented(Consent),
    /// The destination is outside the policy domain's organization and
    /// published no consent: never send (RFC 9990 §4).
    Refused,
    /// The DNS question failed: try again on a later run (counts as an
    /// attempt).
    Unknown(String),
    /// Not checked in this run: the run's budget for consent checks was
    /// spent. The message waits for the next run (no attempt counted).
    Skipped,
}

/// What a consent record says about each kind of report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// For aggregate reports (its `rua` tag).
    pub rua: Redirect,
    /// For failure reports (its `ruf` tag).
    pub ruf: Redirect,
}

/// The destination's own choice of addresses for one kind of report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// No such tag: the address of the policy record is used.
    Keep,
    /// Use these addresses instead (normalised, at the destination host,
    /// at most [`MAX_REDIRECTS`]).
    To(Vec<String>),
    /// The tag names an address elsewhere, or one not usable: RFC 9990 §4
    /// "MUST NOT generate a report to either the original or the
    /// override URI".
    Refused,
}

/// The most addresses a consent record may redirect one report to.
pub const MAX_REDIRECTS: usize = 10;

/// Answers the RFC 9990 §4 question: may reports about `policy_domain`
/// go to an address at `destination_host`?
pub trait DestinationCheck {
    /// Looks the answers for `pairs` (policy domain, destination host) up
    /// ahead of [`DestinationCheck::check`], concurrently where it can,
    /// within its budget. The default does nothing.
    fn prepare(&mut self, pairs: &[(String, String)]) {
        let _ = pairs;
    }

    /// The answer for one pair.
    fn check(&mut self, policy_domain: &str, destination_host: &str) -> Authorization;
}

/// The default budget of one run's consent checks.
pub const DEFAULT_CHECK_BUDGET: Duration = Duration::from_secs(60);

/// The default number of consent questions in flight at once.
pub const DEFAULT_CHECK_CONCURRENCY: usize = 32;

/// The RFC 9990 §4 check over DNS: a destination outside the policy
/// domain's Organizational Domain (Public Suffix List) must publish a TXT
/// record beginning `v=DMARC1` at
/// `<policy-domain>._report._dmarc.<destination-host>` (a wildcard
/// `*._report._dmarc.<destination-host>` answers for every domain); its
/// `rua`/`ruf` tags, when present, redirect the reports to addresses at
/// the same host, or forbid them when they name another host (step 9).
///
/// The questions of a batch are asked concurrently (at most
/// [`DEFAULT_CHECK_CONCURRENCY`] in flight), and the run has one budget
/// for all of them ([`DEFAULT_CHECK_BUDGET`]): a question not answered
/// when it is spent gives [`Authorization::Skipped`], and its messages
/// wait for the next run. Answers are remembered for the run.
pub struct DnsDestinationCheck<'a> {
    dns: &'a Dns,
    psl: &'a PublicSuffixList,
    runtime: &'a tokio::runtime::Runtime,
    answers: HashMap<(String, String), Authorization>,
    deadline: std::time::Instant,
    concurrency: usize,
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
    /// the lookups on `runtime` (the caller must not be inside it), with
    /// the default budget, which starts now.
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
            deadline: std::time::Instant::now() + DEFAULT_CHECK_BUDGET,
            concurrency: DEFAULT_CHECK_CONCURRENCY,
        }
    }

    /// The same with a budget of `budget` from now and at most
    /// `concurrency` questions in flight (at least one).
    pub fn with_budget(mut self, budget: Duration, concurrency: usize) -> Self {
        self.deadline = std::time::Instant::now() + budget;
        self.concurrency = concurrency.max(1);
        self
    }

    /// The pair normalised, and whether it needs a question (outside the
    /// policy domain's organization).
    fn key(&self, policy_domain: &str, host: &str) -> ((String, String), bool) {
        let policy_domain = policy_domain.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        // RFC 9990 §4: only a destination outside the policy domain's
        // Organizational Domain needs to consent.
        let external = self.psl.org_domain(&policy_domain) != self.psl.org_domain(&host);
        ((policy_domain, host), external)
    }

    /// Asks the questions of `keys` concurrently, until the budget is
    /// spent; remembers every answer (a question cut by the budget is
    /// not remembered: [`DestinationCheck::check`] gives `Skipped`).
    fn ask(&mut self, keys: Vec<(String, String)>) {
        let now = std::time::Instant::now();
        if keys.is_empty() || now >= self.deadline {
            return;
        }
        let deadline = tokio::time::Instant::now() + (self.deadline - now);
        let dns = self.dns;
        let concurrency = self.concurrency;
        let answers: Vec<((String, String), Option<Authorization>)> =
            self.runtime.block_on(async move {
                futures_util::stream::iter(keys)
                    .map(|key| async move {
                        let name = format!("{}._report._dmarc.{}", key.0, key.1);
                        // RFC 9990 §4 step 4: a name over DNS limits cannot
                        // make a positive determination.
                        if !fits_dns(&name) {
                            return (key, Some(Authorization::Refused));
                        }
                        let answer = tokio::time::timeout_at(deadline, dns.lookup_txt(&name)).await;
                        let answer = match answer {
                            Err(_) => None,
                            Ok(Ok(Some(records))) => Some(consent_of(&records, &key.1)),
                            Ok(Ok(None)) => Some(Authorization::Refused),
                            Ok(Err(failure)) => Some(Authorization::Unknown(failure.to_string())),
                        };
                        (key, answer)
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await
            });
        for (key, answer) in answers {
            if let Some(answer) = answer {
                self.answers.insert(key, answer);
            }
        }
    }
}

impl DestinationCheck for DnsDestinationCheck<'_> {
    fn prepare(&mut self, pairs: &[(String, String)]) {
        let mut keys: Vec<(String, String)> = pairs
            .iter()
            .filter_map(|(policy_domain, host)| {
                let (key, external) = self.key(policy_domain, host);
                (external && !self.answers.contains_key(&key)).then_some(key)
            })
            .collect();
        keys.sort();
        keys.dedup();
        self.ask(keys);
    }

    fn check(&mut self, policy_domain: &str, destination_host: &str) -> Authorization {
        let (key, external) = self.key(policy_domain, destination_host);
        if !external {
            return Authorization::Authorized;
        }
        if !self.answers.contains_key(&key) {
            self.ask(vec![key.clone()]);
        }
        self.answers
            .get(&key)
            .cloned()
            .unwrap_or(Authorization::Skipped)
    }
}

/// Whether `name` fits DNS (RFC 1035 §2.3.4: labels of 1 to 63 octets,
/// at most 253 in all as text).
fn fits_dns(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(|label| (1..=63).contains(&label.len()))
}

/// The answer of the TXT records at a consent name (RFC 9990 §4 steps 6 to
/// 9): no record starting with `v=DMARC1` is a refusal; the first that
/// does gives the consent, with its `rua` and `ruf` redirections.
fn consent_of(records: &[Vec<u8>], host: &str) -> Authorization {
    let Some(record) = records.iter().find(|record| is_dmarc1(record)) else {
        return Authorization::Refused;
    };
    let text = String::from_utf8_lossy(record);
    let mut rua = Redirect::Keep;
    let mut ruf = Redirect::Keep;
    for tag in text.split(';') {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "rua" => &mut rua,
            "ruf" => &mut ruf,
            _ => continue,
        };
        *slot = redirect_of(value, host);
    }
    if rua == Redirect::Keep && ruf == Redirect::Keep {
        Authorization::Authorized
    } else {
        Authorization::Consented(Consent { rua, ruf })
    }
}

/// One `rua`/`ruf` value of a consent record: every URI must be a usable
/// `mailto:` address at `host` (step 9: "the overriding URI MUST use the
/// same destination host"), else the reports are refused.
fn redirect_of(value: &str, host: &str) -> Redirect {
    let mut addresses = Vec::new();
    for uri in value.split(',') {
        let uri = uri.trim();
        // A size limit (`!10m`) is not ours to honour here.
        let uri = uri.rsplit_once('!').map_or(uri, |(uri, _)| uri);
        let Some(address) = usable_address(uri) else {
            return Redirect::Refused;
        };
        if !address_domain(&address).eq_ignore_ascii_case(host.trim_end_matches('.')) {
            return Redirect::Refused;
        }
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() || addresses.len() > MAX_REDIRECTS {
        return Redirect::Refused;
    }
    Redirect::To(addresses)
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
pub const CLAIM_SECONDS: i64 = 600;

/// At most this many warnings per kind in one delivery run; the rest are
/// in the run's summary.
const WARNINGS_PER_RUN: u32 = 10;

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
    /// Failure reports about one policy domain per hour, at most (default
    /// 20), counted like the per-recipient limit.
    pub failure_reports_per_domain_per_hour: u64,
    /// Messages listed from the store at a time (default 100).
    pub batch: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: 24,
            failure_reports_per_hour: 10,
            failure_reports_per_domain_per_hour: 20,
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
    /// Sent to the addresses the destination's consent record names
    /// instead (RFC 9990 §4 step 9).
    pub redirected: u64,
    /// Failure reports dropped by the per-recipient or per-domain rate
    /// limit.
    pub rate_limited: u64,
    /// Left to another run that holds them (several MX hosts sharing a
    /// store).
    pub claimed_elsewhere: u64,
    /// Left for the next run: the run's budget for consent checks was
    /// spent before their destination was checked.
    pub skipped: u64,
    /// Given up: their policy domain is excluded from reporting.
    pub excluded: u64,
}

/// Delivers every pending message once: each is checked (exclusions,
/// destination consent, rate limits) and sent, then marked sent, failed or
/// given up. Messages that fail stay pending for the next run until
/// `max_attempts`; messages whose consent could not be checked within the
/// run's budget stay pending without an attempt counted.
///
/// Pending messages are read by a cursor on their ids, a batch at a time
/// and without their payloads (each payload is read just before it is
/// sent), so the memory of a run does not grow with the number pending.
/// Every time written (a claim, a delivery, the rate-limit windows) is
/// read from `clock` when it is written: a claim taken late in a long run
/// still lasts [`CLAIM_SECONDS`] from then, so another host cannot take
/// it over while it is being sent. `excluded` tells the policy domains no
/// report may go to (`report_exclude_domains`).
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
    clock: &dyn Fn() -> i64,
    excluded: &dyn Fn(&str) -> bool,
) -> Result<DeliverySummary, StoreError> {
    let mut run = Run {
        summary: DeliverySummary::default(),
        warnings: 0,
    };
    let mut after = 0;
    loop {
        let batch = store.pending_messages(after, settings.batch.max(1))?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.id;
        let pairs: Vec<(String, String)> = batch
            .iter()
            .filter(|queued| !excluded(&queued.policy_domain))
            .filter_map(|queued| {
                let host = queued.recipient.rsplit_once('@')?.1;
                Some((queued.policy_domain.clone(), host.to_string()))
            })
            .collect();
        destinations.prepare(&pairs);
        for queued in &batch {
            deliver_one(
                store,
                transport,
                destinations,
                settings,
                clock,
                excluded,
                queued,
                &mut run,
            )?;
        }
    }
    if run.warnings > WARNINGS_PER_RUN {
        tracing::warn!(
            not_logged = run.warnings - WARNINGS_PER_RUN,
            "more delivery warnings in this run than logged; see the run's summary"
        );
    }
    Ok(run.summary)
}

/// The state of one run.
struct Run {
    summary: DeliverySummary,
    warnings: u32,
}

impl Run {
    /// Whether one more warning may be logged in this run.
    fn warn(&mut self) -> bool {
        self.warnings = self.warnings.saturating_add(1);
        self.warnings <= WARNINGS_PER_RUN
    }
}

#[allow(clippy::too_many_arguments)]
fn deliver_one(
    store: &mut dyn Store,
    transport: &Transport,
    destinations: &mut dyn DestinationCheck,
    settings: &DeliverySettings,
    clock: &dyn Fn() -> i64,
    excluded: &dyn Fn(&str) -> bool,
    queued: &QueuedMessage,
    run: &mut Run,
) -> Result<(), StoreError> {
    let recipient = queued.recipient.as_str();
    let policy_domain = queued.policy_domain.as_str();
    if excluded(&queued.policy_domain) {
        run.summary.excluded += 1;
        return store.mark_failed(
            queued.id,
            "policy domain excluded by report_exclude_domains",
            true,
        );
    }
    // Rows queued by older versions may hold what is no longer a usable
    // destination (a relay hack, a quoted local part).
    let usable = usable_address(&format!("mailto:{}", queued.recipient));
    let Some(host) = usable.as_deref().map(address_domain) else {
        run.summary.given_up += 1;
        return store.mark_failed(queued.id, "not a usable destination address", true);
    };
    let recipients = match destinations.check(&queued.policy_domain, host) {
        Authorization::Authorized => vec![queued.recipient.clone()],
        Authorization::Consented(consent) => {
            let redirect = match queued.kind {
                MessageKind::Aggregate => consent.rua,
                MessageKind::Failure => consent.ruf,
            };
            match redirect {
                Redirect::Keep => vec![queued.recipient.clone()],
                Redirect::To(addresses) => {
                    run.summary.redirected += 1;
                    addresses
                }
                Redirect::Refused => {
                    run.summary.unauthorized += 1;
                    tracing::info!(
                        %recipient,
                        %policy_domain,
                        "report not sent: the destination's consent record redirects to another host (RFC 9990 §4)"
                    );
                    return store.mark_failed(
                        queued.id,
                        "the destination's consent record redirects to another host (RFC 9990 §4)",
                        true,
                    );
                }
            }
        }
        Authorization::Refused => {
            run.summary.unauthorized += 1;
            tracing::info!(
                %recipient,
                %policy_domain,
                "report not sent: the destination publishes no {}._report._dmarc.{} record (RFC 9990 §4)",
                Escaped(&queued.policy_domain),
                Escaped(host)
            );
            return store.mark_failed(
                queued.id,
                "destination did not authorize reports for this domain (RFC 9990 §4)",
                true,
            );
        }
        Authorization::Skipped => {
            run.summary.skipped += 1;
            return Ok(());
        }
        Authorization::Unknown(reason) => {
            return defer(
                store,
                settings,
                queued,
                &format!("destination check: {reason}"),
                run,
            );
        }
    };
    if queued.kind == MessageKind::Failure {
        let since = clock() - 3600;
        let to_recipient = store.sent_since(MessageKind::Failure, &queued.recipient, since)?;
        let to_domain =
            store.sent_since_domain(MessageKind::Failure, &queued.policy_domain, since)?;
        if to_recipient >= settings.failure_reports_per_hour
            || to_domain >= settings.failure_reports_per_domain_per_hour
        {
            run.summary.rate_limited += 1;
            return store.mark_failed(
                queued.id,
                &format!(
                    "rate limit: {to_recipient} failure reports to this recipient and {to_domain} about this domain in the last hour"
                ),
                true,
            );
        }
    }
    // Another run (another MX host on a shared store) may be delivering it.
    let now = clock();
    if !store.claim(queued.id, now, now + CLAIM_SECONDS)? {
        run.summary.claimed_elsewhere += 1;
        return Ok(());
    }
    let payload = store.payload(queued.id)?;
    match transport.send_to(queued.id, &queued.sender, &recipients, &payload) {
        Ok(()) => {
            run.summary.sent += 1;
            tracing::info!(id = queued.id, %recipient, %policy_domain, "report delivered");
            store.mark_sent(queued.id, clock())
        }
        Err(error) if error.permanent => {
            run.summary.given_up += 1;
            if run.warn() {
                tracing::warn!(id = queued.id, %recipient, "report refused: {error}");
            }
            store.mark_failed(queued.id, &error.message, true)
        }
        Err(error) => defer(store, settings, queued, &error.message, run),
    }
}

fn defer(
    store: &mut dyn Store,
    settings: &DeliverySettings,
    queued: &QueuedMessage,
    error: &str,
    run: &mut Run,
) -> Result<(), StoreError> {
    let give_up = queued.attempts.saturating_add(1) >= settings.max_attempts;
    let recipient = queued.recipient.as_str();
    if give_up {
        run.summary.given_up += 1;
        if run.warn() {
            tracing::warn!(
                id = queued.id,
                %recipient,
                attempts = queued.attempts.saturating_add(1),
                "report given up: {error}"
            );
        }
    } else {
        run.summary.deferred += 1;
        if run.warn() {
            tracing::warn!(
                id = queued.id,
                %recipient,
                "report delivery failed, will retry: {error}"
            );
        }
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

    /// RFC 9990 §4 step 9: the consent record may redirect to addresses at
    /// its own host, and forbids both the original and the override when
    /// it names another.
    #[test]
    fn consent_records_redirect_only_to_their_own_host() {
        let host = "reports.example.net";
        let consent = |text: &str| consent_of(&[text.as_bytes().to_vec()], host);
        assert_eq!(consent("v=DMARC1"), Authorization::Authorized);
        assert_eq!(consent("v=DMARC1; p=none"), Authorization::Authorized);
        assert_eq!(
            consent("rua=mailto:a@reports.example.net"),
            Authorization::Refused
        );
        assert_eq!(
            consent(
                "v=DMARC1; rua=mailto:Agg@Reports.Example.NET!10m, mailto:b@reports.example.net"
            ),
            Authorization::Consented(Consent {
                rua: Redirect::To(vec![
                    "agg@reports.example.net".to_string(),
                    "b@reports.example.net".to_string()
                ]),
                ruf: Redirect::Keep,
            })
        );
        assert_eq!(
            consent("v=DMARC1; ruf=mailto:f@elsewhere.example"),
            Authorization::Consented(Consent {
                rua: Redirect::Keep,
                ruf: Redirect::Refused,
            })
        );
        assert_eq!(
            consent("v=DMARC1; rua=mailto:x%victim.example@reports.example.net"),
            Authorization::Consented(Consent {
                rua: Redirect::Refused,
                ruf: Redirect::Keep,
            })
        );
        assert!(!fits_dns(&format!("{}.example", "a".repeat(64))));
        assert!(!fits_dns(&"a.".repeat(130)));
        assert!(fits_dns("example.com._report._dmarc.example.net"));
    }
}
