//! Is DNS working? What the DNS layer reports (every question, cache
//! lookup and eviction, through [`DnsObserver`]) goes to the metrics, and
//! the outcomes of the last [`WINDOW`] questions are watched: when
//! [`THRESHOLD`] or more of them failed (timeout, SERVFAIL, another
//! error), a warning names the resolver, at most once a minute (a DNS
//! outage otherwise shows only as `dmarc=temperror` verdicts). At start
//! the daemon asks the resolver one question ([`check_resolver`]) and warns
//! when it does not answer: the milter still starts (mail waits for DNS,
//! answered with tempfail as the configuration says).

use crate::{config::Config, metrics::Metrics};
use dmarc_report::logging::RateLimit;
use dmarc_verifier::dns::{
    nameserver_addresses, zone::RecordType, CacheName, Dns, DnsObserver, DnsOutcome,
};
use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

/// The questions watched: the last 20.
pub const WINDOW: usize = 20;

/// Failures among the last [`WINDOW`] questions that make a warning.
pub const THRESHOLD: usize = 10;

/// At most one warning per minute.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// The failures of a full window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tally {
    timeouts: usize,
    servfail: usize,
    other: usize,
}

impl Tally {
    fn failures(self) -> usize {
        self.timeouts + self.servfail + self.other
    }
}

impl fmt::Display for Tally {
    /// `12 of the last 20 DNS questions timed out`, or with several kinds
    /// `12 of the last 20 DNS questions failed (9 timed out, 3 SERVFAIL)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.failures();
        let head = format!("{n} of the last {WINDOW} DNS questions");
        match (self.timeouts, self.servfail, self.other) {
            (t, 0, 0) if t == n => write!(f, "{head} timed out"),
            (0, s, 0) if s == n => write!(f, "{head} were answered SERVFAIL"),
            (0, 0, o) if o == n => write!(
                f,
                "{head} failed (refused, network error or malformed answer)"
            ),
            (t, s, o) => {
                let parts: Vec<String> = [(t, "timed out"), (s, "SERVFAIL"), (o, "other errors")]
                    .into_iter()
                    .filter(|(count, _)| *count > 0)
                    .map(|(count, what)| format!("{count} {what}"))
                    .collect();
                write!(f, "{head} failed ({})", parts.join(", "))
            }
        }
    }
}

/// The outcomes of the last [`WINDOW`] questions.
#[derive(Debug, Default)]
pub(crate) struct Window {
    outcomes: VecDeque<DnsOutcome>,
}

impl Window {
    /// Adds one outcome; the failures of the window when it is full and
    /// [`THRESHOLD`] or more of them failed.
    pub(crate) fn push(&mut self, outcome: DnsOutcome) -> Option<Tally> {
        if self.outcomes.len() == WINDOW {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(outcome);
        if self.outcomes.len() < WINDOW || !outcome.is_failure() {
            return None;
        }
        let mut tally = Tally::default();
        for outcome in &self.outcomes {
            match outcome {
                DnsOutcome::Timeout => tally.timeouts += 1,
                DnsOutcome::ServFail => tally.servfail += 1,
                DnsOutcome::Other => tally.other += 1,
                DnsOutcome::Answer | DnsOutcome::NxDomain | DnsOutcome::NoData => {}
            }
        }
        (tally.failures() >= THRESHOLD).then_some(tally)
    }
}

/// The observer given to every verifier of a running milter (it outlives
/// reloads): metrics when they are on, and the failure warnings.
#[derive(Debug)]
pub(crate) struct DnsHealth {
    metrics: Option<Arc<Metrics>>,
    window: Mutex<Window>,
    warnings: RateLimit,
    /// The servers in use, for the warning (set at start and on reload).
    resolvers: RwLock<String>,
}

impl DnsHealth {
    pub(crate) fn new(metrics: Option<Arc<Metrics>>) -> DnsHealth {
        DnsHealth {
            metrics,
            window: Mutex::default(),
            warnings: RateLimit::new(WARN_INTERVAL),
            resolvers: RwLock::new(String::new()),
        }
    }

    /// Notes the servers `config` sends questions to.
    pub(crate) fn set_resolvers(&self, config: &Config) {
        *self
            .resolvers
            .write()
            .unwrap_or_else(PoisonError::into_inner) = resolvers(config);
    }
}

/// The servers `config` sends questions to, for log lines:
/// `127.0.0.1:53, [2001:db8::53]:53`.
fn resolvers(config: &Config) -> String {
    let addresses = nameserver_addresses(&config.verifier.dns.nameservers);
    if addresses.is_empty() {
        return "none (no nameserver in /etc/resolv.conf)".to_string();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DnsObserver for DnsHealth {
    fn question(&self, rtype: RecordType, outcome: DnsOutcome, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.dns_question(rtype, outcome, elapsed);
        }
        let tally = self
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(outcome);
        if let Some(tally) = tally {
            if let Some(not_logged) = self.warnings.check() {
                let resolvers = self
                    .resolvers
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                tracing::warn!(
                    failures = tally.failures(),
                    window = WINDOW,
                    not_logged,
                    "{tally}; resolver {resolvers}"
                );
            }
        }
    }

    fn cache_lookup(&self, cache: CacheName, hit: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.cache_lookup(cache, hit);
        }
    }

    fn cache_eviction(&self, cache: CacheName) {
        if let Some(metrics) = &self.metrics {
            metrics.cache_eviction(cache);
        }
    }
}

/// The start-up check: asks the resolver of `config` one question (the
/// root's name servers, past every cache) and logs a warning when it does
/// not answer (timeout, SERVFAIL, refused, network error). Never fails:
/// the milter serves either way.
pub async fn check_resolver(config: &Config) {
    let resolvers = resolvers(config);
    let dns = match Dns::new(&config.verifier.dns) {
        Ok(dns) => dns,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set up the resolver for the start-up check");
            return;
        }
    };
    match dns.probe().await {
        DnsOutcome::Answer | DnsOutcome::NoData | DnsOutcome::NxDomain => {
            tracing::debug!(resolver = %resolvers, "the resolver answers");
        }
        outcome => {
            let what = match outcome {
                DnsOutcome::Timeout => "does not answer (timeout)",
                DnsOutcome::ServFail => "answers SERVFAIL",
                _ => "fails (refused, network error or malformed answer)",
            };
            tracing::warn!(
                outcome = outcome.as_str(),
                "the resolver {what} to a question for the root's name servers; resolver {resolvers}: DMARC checks will end in temperror until it answers (check nameservers, or /etc/resolv.conf)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_warns_once_it_is_full_and_half_failed() {
        let mut window = Window::default();
        for _ in 0..WINDOW - THRESHOLD {
            assert_eq!(window.push(DnsOutcome::Answer), None);
        }
        for i in 0..THRESHOLD - 1 {
            assert_eq!(window.push(DnsOutcome::Timeout), None, "failure {i}");
        }
        let tally = window.push(DnsOutcome::Timeout).expect("10 of 20");
        assert_eq!(
            tally.to_string(),
            "10 of the last 20 DNS questions timed out"
        );
        // An answer never warns, even with the window still bad.
        assert_eq!(window.push(DnsOutcome::NxDomain), None);
        // Failures of several kinds.
        let tally = window.push(DnsOutcome::ServFail).expect("still half");
        assert_eq!(
            tally.to_string(),
            "11 of the last 20 DNS questions failed (10 timed out, 1 SERVFAIL)"
        );
    }

    #[test]
    fn a_partly_filled_window_or_a_few_failures_do_not_warn() {
        let mut window = Window::default();
        for _ in 0..WINDOW - 1 {
            assert_eq!(window.push(DnsOutcome::ServFail), None);
        }
        let tally = window.push(DnsOutcome::Other).expect("20 of 20");
        assert_eq!(
            tally.to_string(),
            "20 of the last 20 DNS questions failed (19 SERVFAIL, 1 other errors)"
        );
        let mut window = Window::default();
        for i in 0..100 {
            let outcome = if i % 3 == 0 {
                DnsOutcome::Timeout
            } else {
                DnsOutcome::Answer
            };
            assert_eq!(window.push(outcome), None, "question {i}");
        }
    }
}
