//! What every connection shares: the configuration in force with its
//! verifiers (swapped on reload), the count of messages in flight, and
//! whether the milter is shutting down.

use crate::{
    config::{valid_authserv_id, Config, ConfigError},
    Error,
};
use dmarc_verifier::Verifier;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, RwLock,
    },
};
use tokio::sync::watch;

/// The most authserv-ids (distinct `j` macros) with a verifier of their
/// own; beyond that the configured id is used.
const MAX_EXTRA_IDS: usize = 8;

/// A configuration and the verifiers built from it.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) config: Arc<Config>,
    default_verifier: Arc<Verifier>,
    /// Verifiers for authserv-ids learnt from macro `j` (normally one).
    by_id: Mutex<HashMap<String, Arc<Verifier>>>,
}

impl Active {
    /// Builds the verifier; fails for a configuration that cannot serve.
    pub(crate) fn new(config: Config) -> Result<Active, ConfigError> {
        let default_verifier = Arc::new(config.verifier()?);
        Ok(Active {
            config: Arc::new(config),
            default_verifier,
            by_id: Mutex::new(HashMap::new()),
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

    /// The verifier that writes `authserv_id` into its headers.
    pub(crate) fn verifier(&self, authserv_id: &str) -> Result<Arc<Verifier>, Error> {
        if authserv_id == self.config.verifier.authserv_id {
            return Ok(Arc::clone(&self.default_verifier));
        }
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(verifier) = by_id.get(authserv_id) {
            return Ok(Arc::clone(verifier));
        }
        if by_id.len() >= MAX_EXTRA_IDS {
            tracing::warn!(
                authserv_id,
                "too many distinct MTA host names (macro j); set authserv_id"
            );
            return Ok(Arc::clone(&self.default_verifier));
        }
        let verifier = Arc::new(self.config.verifier_with_id(authserv_id)?);
        by_id.insert(authserv_id.to_string(), Arc::clone(&verifier));
        Ok(verifier)
    }
}

/// State shared by every session of one [`crate::run`].
#[derive(Debug)]
pub(crate) struct Shared {
    active: RwLock<Arc<Active>>,
    inflight: watch::Sender<usize>,
    draining: AtomicBool,
}

impl Shared {
    pub(crate) fn new(active: Active) -> Shared {
        Shared {
            active: RwLock::new(Arc::new(active)),
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
