//! What every connection shares: the configuration in force with its
//! verifier (swapped on reload), the count of messages in flight, and
//! whether the milter is shutting down.

use crate::{
    config::{valid_authserv_id, Config, ConfigError},
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
    /// Builds the verifier and reads the sealing key; fails for a
    /// configuration that cannot serve.
    pub(crate) fn new(config: Config) -> Result<Active, ConfigError> {
        let verifier = Arc::new(config.verifier()?);
        let sealer = config.arc_sealer()?.map(Arc::new);
        Ok(Active {
            config: Arc::new(config),
            verifier,
            sealer,
        })
    }

    /// Our authserv-id: `authserv_id` when configured, else the MTA's host
    /// name (macro `j`), else this host's name.
    pub(crate) fn authserv_id(&self, macro_j: Option<&str>) -> String {
        if let Some(id) = &self.config.authserv_id {
            return id.clone();
        }
        match macro_j {
            Some(j) if valid_authserv_id(j) => j.to_ascii_lowercase(),
            Some(j) => {
                tracing::warn!(
                    "the MTA's host name (macro j) {:?} is not usable as authserv-id; set authserv_id",
                    j
                );
                self.config.verifier.authserv_id.clone()
            }
            None => self.config.verifier.authserv_id.clone(),
        }
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
    /// Report recording, when `report_store` is set (opened once per run:
    /// changing the store needs a restart).
    pub(crate) reporting: Option<Reporting>,
    inflight: watch::Sender<usize>,
    draining: AtomicBool,
}

impl Shared {
    pub(crate) fn new(active: Active, reporting: Option<Reporting>) -> Shared {
        Shared {
            active: RwLock::new(Arc::new(active)),
            reporting,
            inflight: watch::Sender::new(0),
            draining: AtomicBool::new(false),
        }
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
