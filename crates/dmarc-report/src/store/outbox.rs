//! The write path of failure reports: like the [`Recorder`] for
//! evaluations, a bounded queue and one thread owning a store connection, so
//! the milter never waits for the database. Failure reports are few (off by
//! default, limited per recipient), so each is committed on its own.
//!
//! [`Recorder`]: super::recorder::Recorder

use super::{OutgoingMessage, Store};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
        Arc, Condvar, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

/// Attempts to store one message before it is dropped (with an error
/// logged): a failure report that cannot be stored within about a minute
/// has lost its use.
const ATTEMPTS: u32 = 8;

/// Queues outgoing report messages for the store.
#[derive(Debug)]
pub struct Outbox {
    sender: Option<SyncSender<OutgoingMessage>>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    queued: AtomicU64,
    /// Stored or given up.
    done: AtomicU64,
    dropped: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
}

/// The counters of an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages accepted into the queue.
    pub queued: u64,
    /// Messages stored, or given up after repeated store failures.
    pub done: u64,
    /// Messages refused because the queue was full, or given up.
    pub dropped: u64,
}

impl Outbox {
    /// Starts the thread that stores queued messages in `store`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn start(mut store: Box<dyn Store>, capacity: usize) -> std::io::Result<Outbox> {
        let (sender, receiver) = mpsc::sync_channel::<OutgoingMessage>(capacity.max(1));
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("dmarc-report-outbox".to_string())
            .spawn(move || {
                while let Ok(message) = receiver.recv() {
                    let mut delay = Duration::from_millis(100);
                    let mut stored = false;
                    for attempt in 1..=ATTEMPTS {
                        match store.queue_message(&message) {
                            Ok(()) => {
                                stored = true;
                                break;
                            }
                            Err(error) if attempt < ATTEMPTS => {
                                tracing::warn!(%error, attempt, "cannot store a failure report; will retry");
                                std::thread::sleep(delay);
                                delay = (delay * 2).min(Duration::from_secs(10));
                            }
                            Err(error) => {
                                tracing::error!(%error, recipient = %message.recipient, "failure report dropped: the store keeps failing");
                            }
                        }
                    }
                    if !stored {
                        thread_shared.dropped.fetch_add(1, Ordering::SeqCst);
                    }
                    let _guard = thread_shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
                    thread_shared.done.fetch_add(1, Ordering::SeqCst);
                    thread_shared.changed.notify_all();
                }
            })?;
        Ok(Outbox {
            sender: Some(sender),
            shared,
        })
    }

    /// Queues one message; never waits. False when the queue is full (the
    /// message is dropped and counted).
    pub fn queue(&self, message: OutgoingMessage) -> bool {
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|sender| match sender.try_send(message) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            });
        if sent {
            self.shared.queued.fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
            tracing::warn!("failure report queue full: report dropped");
        }
        sent
    }

    /// Waits until every message queued before the call is stored (or given
    /// up), at most `timeout`; returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.queued.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .shared
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.shared.done.load(Ordering::SeqCst) >= target {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .shared
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            queued: self.shared.queued.load(Ordering::SeqCst),
            done: self.shared.done.load(Ordering::SeqCst),
            dropped: self.shared.dropped.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is empty.
        self.sender = None;
    }
}
