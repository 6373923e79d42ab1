//! What every connection shares: the configuration in force with its
//! verifier (swapped on reload), the count of messages in flight, whether
//! the milter is shutting down, and the metrics and DNS health watch.

use crate::{
    config::{Config, ConfigError},
    counters::Counters,
    dns_health::DnsHealth,
    metrics::Metrics,
    reporting::Reporting,
};
use dmarc_verifier::{arc::ArcSealer, Verifier};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, PoisonError, RwLock,
};
use tokio::sync::watch;

/// A configuration and the verifier built from it (one DNS cache for every
/// authserv-id: the id is given per message), with the ARC sealer of
/// `[arc_seal]`.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) config: Arc<Config>,
    verifier: Arc<Verifier>,
    pub(crate) sealer: Option<Arc<ArcSealer>>,
}

impl Active {
    /// Builds the verifier, reporting its DNS activity to `dns`, and reads
    /// the sealing key; fails for a configuration that cannot serve.
    pub(crate) fn new(config: Config, dns: &Arc<DnsHealth>) -> Result<Active, ConfigError> {
        let verifier = Arc::new(config.verifier_observed(Arc::clone(dns) as _)?);
        let sealer = config.arc_sealer()?.map(Arc::new);
        dns.set_resolvers(&config);
        Ok(Active {
            config: Arc::new(config),
            verifier,
            sealer,
        })
    }

    /// Our authserv-id: `authserv_id` when configured, else the MTA's host
    /// name (macro `j`), else this host's name.
    pub(crate) fn authserv_id(&self, macro_j: Option<&str>) -> String {
        self.config.authserv_id_for(macro_j)
    }

    /// The verifier.
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.verifier)
    }
}

/// State shared by every session of one [`crate::run`].
#[derive(Debug)]
pub(crate) struct Shared {
    active: RwLock<Arc<Active>>,
    /// The configuration the process started with: what the settings that
    /// need a restart (socket, log level, report store, ...) still are.
    pub(crate) started: Arc<Config>,
    /// Report recording, when `report_store` is set (opened once per run:
    /// changing the store needs a restart).
    pub(crate) reporting: Option<Reporting>,
    /// What the caller of `run_with` reads.
    pub(crate) counters: Arc<Counters>,
    /// The metrics, recorded when they are served (`metrics_listen`).
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// The DNS observer of every verifier (metrics, failure warnings).
    pub(crate) dns_health: Arc<DnsHealth>,
    inflight: watch::Sender<usize>,
    draining: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        active: Active,
        reporting: Option<Reporting>,
        counters: Arc<Counters>,
        dns_health: Arc<DnsHealth>,
        metrics: Option<Arc<Metrics>>,
    ) -> Shared {
        Shared {
            started: Arc::clone(&active.config),
            active: RwLock::new(Arc::new(active)),
            reporting,
            counters,
            metrics,
            dns_health,
            inflight: watch::Sender::new(0),
            draining: AtomicBool::new(false),
        }
    }

    /// The metrics, when they are recorded.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// The configuration in force now.
    pub(crate) fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the configuration for messages that start from now on.
    pub(crate) fn replace(&self, active: Active) {
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
    }

    /// Marks a message as started; it counts as in flight until the guard
    /// is dropped.
    pub(crate) fn start_message(self: &Arc<Self>) -> InflightGuard {
        self.inflight.send_modify(|n| *n += 1);
        InflightGuard {
            shared: Arc::clone(self),
        }
    }

    /// True once shutdown has begun: new messages are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Waits until no message is in flight.
    pub(crate) async fn drained(&self) {
        let mut rx = self.inflight.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Messages in flight now.
    pub(crate) fn inflight(&self) -> usize {
        *self.inflight.borrow()
    }
}

/// A message in flight; dropping it (end of message, abort, lost
/// connection) ends it.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    shared: Arc<Shared>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.shared
            .inflight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
