//! The failure-report path of the milter: the end of a message hands over
//! only the facts ([`FailureJob`]: a bounded copy of the message, the
//! record, the admitted destinations); one thread of its own builds the
//! reports (redaction, AFRF) and stores them. So no report is ever built
//! while an MTA waits for a reply, and building is one bounded, sequential
//! worker whatever the traffic.
//!
//! The queue is bounded in jobs ([`OutboxOptions::capacity`]) and in bytes
//! ([`OutboxOptions::max_bytes`]); over either bound a job is dropped and
//! counted, with one warning per 10 s at most (a flood of forgeries must
//! not become a flood of log lines). The store is opened when the first
//! job comes; a job that cannot be stored after [`ATTEMPTS`] tries (about
//! a minute) is dropped: a late failure report has lost its use.

use super::{recorder::StoreOpener, Store};
use crate::{
    counters::{add, ReportCounters},
    failure::FailureJob,
    logging::RateLimit,
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
        Arc, Condvar, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

/// Attempts to store one report before it is dropped (with an error
/// logged): a failure report that cannot be stored within about a minute
/// has lost its use.
pub const ATTEMPTS: u32 = 8;

/// At most one warning per this interval for each kind of drop.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Jobs waiting, at most.
    pub capacity: usize,
    /// Bytes of jobs waiting, at most ([`FailureJob::memory_size`]); one
    /// job is always accepted into an empty queue.
    pub max_bytes: usize,
}

impl Default for OutboxOptions {
    /// 1,000 jobs, 16 MiB.
    fn default() -> Self {
        OutboxOptions {
            capacity: 1_000,
            max_bytes: 16 << 20,
        }
    }
}

/// Builds and stores failure reports on a thread of its own.
#[derive(Debug)]
pub struct Outbox {
    sender: Option<SyncSender<(FailureJob, u64)>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    counters: Arc<ReportCounters>,
    options: OutboxOptions,
    /// Bytes of the jobs waiting.
    bytes: AtomicU64,
    /// Jobs accepted, and jobs finished (stored or given up), for `flush`.
    accepted: AtomicU64,
    finished: AtomicU64,
    full_warning: RateLimit,
    store_warning: RateLimit,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Outbox {
    /// Starts the thread, which opens the store with `open` when the first
    /// job comes (and again after a failure).
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn start(
        open: StoreOpener,
        options: OutboxOptions,
        counters: Arc<ReportCounters>,
    ) -> std::io::Result<Outbox> {
        let (sender, receiver) = mpsc::sync_channel::<(FailureJob, u64)>(options.capacity.max(1));
        let shared = Arc::new(Shared {
            counters,
            options,
            bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            full_warning: RateLimit::new(WARNING_INTERVAL),
            store_warning: RateLimit::new(WARNING_INTERVAL),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("dmarc-report-outbox".to_string())
            .spawn(move || {
                let mut open = open;
                let mut store: Option<Box<dyn Store>> = None;
                while let Ok((job, bytes)) = receiver.recv() {
                    thread_shared.bytes.fetch_sub(bytes, Ordering::SeqCst);
                    thread_shared.handle(&job, &mut open, &mut store);
                    let _guard = thread_shared
                        .lock
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    thread_shared.finished.fetch_add(1, Ordering::SeqCst);
                    thread_shared.changed.notify_all();
                }
            })?;
        Ok(Outbox {
            sender: Some(sender),
            shared,
        })
    }

    /// Queues one job; never waits and builds nothing. False when the
    /// queue is full, in jobs or bytes (the job is dropped and counted).
    pub fn queue(&self, job: FailureJob) -> bool {
        let bytes = u64::try_from(job.memory_size()).unwrap_or(u64::MAX);
        let before = self.shared.bytes.fetch_add(bytes, Ordering::SeqCst);
        let max = u64::try_from(self.shared.options.max_bytes).unwrap_or(u64::MAX);
        let fits = before == 0 || before.saturating_add(bytes) <= max;
        let sent =
            fits && self.sender.as_ref().is_some_and(|sender| {
                match sender.try_send((job, bytes)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                }
            });
        let counters = &self.shared.counters;
        if sent {
            self.shared.accepted.fetch_add(1, Ordering::SeqCst);
            add(&counters.failure_jobs_queued, 1);
        } else {
            self.shared.bytes.fetch_sub(bytes, Ordering::SeqCst);
            add(&counters.failure_jobs_dropped, 1);
            if let Some(suppressed) = self.shared.full_warning.check() {
                tracing::warn!(
                    dropped = counters.failure_jobs_dropped.load(Ordering::Relaxed),
                    since_last_warning = suppressed + 1,
                    "failure report queue full: reports dropped"
                );
            }
        }
        sent
    }

    /// Waits until every job queued before the call is stored (or given
    /// up), at most `timeout`; returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.flush_until(Instant::now() + timeout)
    }

    /// Waits until every job queued before the call is stored (or given
    /// up), at most until `deadline`; returns whether it was.
    pub fn flush_until(&self, deadline: Instant) -> bool {
        let target = self.shared.accepted.load(Ordering::SeqCst);
        let mut guard = self
            .shared
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.shared.finished.load(Ordering::SeqCst) >= target {
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

    /// The counters this outbox counts into.
    pub fn counters(&self) -> &Arc<ReportCounters> {
        &self.shared.counters
    }
}

impl Shared {
    /// Builds the job's reports and stores them.
    fn handle(&self, job: &FailureJob, open: &mut StoreOpener, store: &mut Option<Box<dyn Store>>) {
        let built = job.build();
        let counters = &self.counters;
        add(&counters.failure_reports_built, built.built);
        add(&counters.failure_reports_truncated, built.truncated);
        add(&counters.failure_reports_too_large, built.too_large);
        for message in &built.messages {
            let mut delay = Duration::from_millis(100);
            let mut stored = false;
            let mut last_error = None;
            for _ in 0..ATTEMPTS {
                if store.is_none() {
                    match open() {
                        Ok(opened) => *store = Some(opened),
                        Err(error) => {
                            add(&counters.store_open_failures, 1);
                            last_error = Some(error);
                        }
                    }
                }
                if let Some(opened) = store.as_mut() {
                    match opened.queue_message(message) {
                        Ok(()) => {
                            stored = true;
                            break;
                        }
                        Err(error) => {
                            if !error.transient {
                                // Start afresh: the store may come back
                                // another way (a file replaced, a database
                                // restored).
                                *store = None;
                            }
                            last_error = Some(error);
                        }
                    }
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            if stored {
                add(&counters.failure_reports_stored, 1);
            } else {
                add(&counters.failure_reports_store_failed, 1);
                if let Some(suppressed) = self.store_warning.check() {
                    tracing::error!(
                        error = %last_error.map(|e| e.message).unwrap_or_default(),
                        since_last_error = suppressed + 1,
                        "failure reports dropped: the report store keeps failing"
                    );
                }
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is empty.
        self.sender = None;
    }
}
