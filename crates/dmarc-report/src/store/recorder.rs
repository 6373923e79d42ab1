//! The write path of the milter: evaluation records go through a bounded
//! queue to one thread that owns the store and commits them in groups.
//!
//! Mail is never slowed by reporting: [`Recorder::record`] never blocks
//! and never waits for the disk or the database. The queue is bounded
//! twice: in calls ([`RecorderOptions::capacity`]) and in bytes
//! ([`RecorderOptions::max_bytes`], from [`EvaluationRecord::memory_size`]),
//! so that records made large by a hostile record (they are capped, see
//! [`crate::model`], but still vary) cannot make the milter's memory grow
//! while the store is slow or locked. When either bound is reached,
//! records are dropped and counted, with a warning at most every 10 s.
//!
//! The store may also be missing at start (PostgreSQL down, a file
//! locked, wrong permissions): [`Recorder::start_with`] takes a way to
//! open it, and the thread opens it when the first records come, retrying
//! with the same backoff while records wait in the bounded queue. Reporting
//! is degraded meanwhile, mail is not: the caller never waits.
//!
//! Group commit: the thread waits for the first item, takes everything
//! else already queued (up to [`BATCH_RECORDS`]) and inserts it in one
//! transaction. At low load each message is committed as soon as it is
//! recorded; under load the batches grow, and so does the throughput.
//!
//! When the store fails, the thread keeps its batch and retries (100 ms,
//! doubling to 5 s) while newer records wait in the queue, so nothing is
//! lost to a passing failure (a database restart, a busy lock). A
//! non-transient failure (a file made read-only, a schema dropped) is
//! retried the same way, logged at `error`: dropping the batch would lose
//! records without fixing anything, while holding it means that once the
//! operator repairs the store everything still queued is committed. The
//! queue stays bounded meanwhile, and its overflow is counted as dropped.
//! No value of a record makes the stores fail (PostgreSQL's forbidden NUL
//! is replaced), so a batch cannot be stuck on its own content.

use super::{Store, StoreError};
use crate::{
    counters::{add, ReportCounters},
    logging::RateLimit,
    model::EvaluationRecord,
};
use std::{
    sync::{
        atomic::Ordering,
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tracing::{error, info, warn};

/// Opens the store, once or again: called by the recorder's thread until
/// it succeeds.
pub type StoreOpener = Box<dyn FnMut() -> Result<Box<dyn Store>, StoreError> + Send>;

/// The bounds of a recorder's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderOptions {
    /// Calls of [`Recorder::record`] waiting, at most (at least 1).
    pub capacity: usize,
    /// Bytes of records waiting, at most, as [`EvaluationRecord::memory_size`]
    /// counts them; a message's records are refused whole when they would
    /// go over (but one message is always accepted into an empty queue).
    pub max_bytes: usize,
}

impl Default for RecorderOptions {
    /// 10,000 calls, 64 MiB.
    fn default() -> Self {
        RecorderOptions {
            capacity: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// The most records committed in one transaction.
pub const BATCH_RECORDS: usize = 1000;

/// The first wait after a failed commit; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the thread of a recorder dropped without
/// [`Recorder::shutdown`] keeps committing what is queued.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// At most one warning about dropped records per this interval.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// While a batch keeps failing, at most one log line per this interval.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of a [`Recorder`], in records (a message can give several).
///
/// Each counter is read on its own, so a snapshot taken while records flow
/// can be a little inconsistent (`committed` ahead of `queued`); after
/// [`Recorder::shutdown`], `queued == committed + abandoned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecorderStats {
    /// Records accepted into the queue.
    pub queued: u64,
    /// Records committed to the store.
    pub committed: u64,
    /// Records refused because the queue was full (or the recorder's thread
    /// had stopped); never stored.
    pub dropped: u64,
    /// Records accepted but given up on when the store still failed at the
    /// shutdown deadline; never stored.
    pub abandoned: u64,
    /// Insert transactions that failed (each retried).
    pub failed_attempts: u64,
}

/// The write path to a [`Store`]: a bounded queue and the one thread that
/// owns the store.
///
/// `Send + Sync`: share it between async tasks in an `Arc`. Dropping it
/// without [`Recorder::shutdown`] closes the queue; the thread goes on
/// committing what is queued for up to 5 s, then ends on its own.
#[derive(Debug)]
pub struct Recorder {
    sender: Option<SyncSender<Batch>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// One call's records and their size in bytes.
type Batch = (Vec<EvaluationRecord>, u64);

/// What the callers and the thread share.
#[derive(Debug)]
struct Shared {
    counters: Arc<ReportCounters>,
    options: RecorderOptions,
    drop_warning: RateLimit,
    /// Guards the waits of `flush`, `shutdown` and the retry backoff.
    state: Mutex<ThreadState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ThreadState {
    /// Set by shutdown (or drop): past it, a failing batch is abandoned.
    deadline: Option<Instant>,
    /// The thread has ended.
    finished: bool,
}

impl Recorder {
    /// Starts the recorder's thread, which owns `store`, with a queue of
    /// `capacity` calls of [`Recorder::record`] (at least 1) and the
    /// default bound in bytes.
    ///
    /// # Errors
    ///
    /// The error of spawning the thread (the system's thread limit).
    pub fn start(store: Box<dyn Store>, capacity: usize) -> std::io::Result<Recorder> {
        let mut store = Some(store);
        let opener: StoreOpener = Box::new(move || {
            store.take().ok_or_else(|| StoreError {
                message: "the store was already handed over".to_string(),
                transient: false,
            })
        });
        let options = RecorderOptions {
            capacity,
            ..RecorderOptions::default()
        };
        Recorder::start_with(opener, options, Arc::default())
    }

    /// Starts the recorder's thread, which opens the store with `open` when
    /// the first records come (and again, with backoff, until it
    /// succeeds), with the queue bounded by `options`, counting into
    /// `counters`.
    ///
    /// # Errors
    ///
    /// The error of spawning the thread (the system's thread limit).
    pub fn start_with(
        open: StoreOpener,
        options: RecorderOptions,
        counters: Arc<ReportCounters>,
    ) -> std::io::Result<Recorder> {
        let options = RecorderOptions {
            capacity: options.capacity.max(1),
            ..options
        };
        let (sender, receiver) = mpsc::sync_channel(options.capacity);
        let shared = Arc::new(Shared {
            counters,
            options,
            drop_warning: RateLimit::new(DROP_WARNING_INTERVAL),
            state: Mutex::new(ThreadState::default()),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dmarc-report-recorder".to_string())
            .spawn(move || run(open, &receiver, &thread_shared))?;
        Ok(Recorder {
            sender: Some(sender),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues the records of one message; never blocks.
    ///
    /// Returns false when they were dropped because the queue is full, in
    /// calls or in bytes (a warning with the running count is logged at
    /// most every 10 s), or the recorder's thread has stopped. An empty
    /// list is accepted as is.
    pub fn record(&self, records: Vec<EvaluationRecord>) -> bool {
        if records.is_empty() {
            return true;
        }
        let count = records.len();
        let bytes = count_u64(records.iter().map(EvaluationRecord::memory_size).sum());
        let counters = &self.shared.counters;
        // Reserve the bytes first, so that racing callers cannot overshoot.
        let before = counters.queue_bytes.fetch_add(bytes, Ordering::SeqCst);
        let max = count_u64(self.shared.options.max_bytes);
        let fits = before == 0 || before.saturating_add(bytes) <= max;
        let sent = fits
            && match &self.sender {
                Some(sender) => match sender.try_send((records, bytes)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                },
                None => false,
            };
        if sent {
            add(&counters.records_queued, count);
        } else {
            counters.queue_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.shared.note_dropped(count);
        }
        sent
    }

    /// The counters so far.
    pub fn stats(&self) -> RecorderStats {
        self.shared.stats()
    }

    /// The counters this recorder counts into (shared with the caller's).
    pub fn counters(&self) -> &Arc<ReportCounters> {
        &self.shared.counters
    }

    /// Waits until every record queued before this call is committed, at
    /// most `timeout`; returns whether they were.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.flush_until(deadline_after(timeout))
    }

    /// Waits until every record queued before this call is committed, at
    /// most until `deadline` (not at all when it has passed); returns
    /// whether they were.
    pub fn flush_until(&self, deadline: Instant) -> bool {
        let counters = &self.shared.counters;
        let target = counters.records_queued.load(Ordering::SeqCst);
        let mut state = self.shared.lock();
        loop {
            if counters.records_committed.load(Ordering::SeqCst) >= target {
                return true;
            }
            let now = Instant::now();
            if state.finished || now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Closes the queue and lets the thread commit everything queued,
    /// retrying a failing store while the next attempt can start within
    /// `timeout`; waits for the thread at most that long and returns the
    /// counters. Records not committed by then are abandoned (counted, and
    /// logged at `error`). A thread blocked inside the store at the
    /// deadline is left to end on its own (its batch is then neither
    /// committed nor abandoned in the counters returned).
    pub fn shutdown(mut self, timeout: Duration) -> RecorderStats {
        let deadline = deadline_after(timeout);
        self.close(deadline);
        let mut state = self.shared.lock();
        while !state.finished {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let finished = state.finished;
        drop(state);
        let thread = self.thread.take();
        match thread {
            Some(thread) if finished => match thread.join() {
                Ok(()) => {}
                Err(_) => error!("report recorder thread panicked"),
            },
            Some(_) => warn!(
                timeout_ms = timeout.as_millis(),
                "report recorder still busy at the shutdown deadline; left running"
            ),
            None => {}
        }
        self.stats()
    }

    /// Closes the queue and sets the deadline past which a failing batch is
    /// given up on.
    fn close(&mut self, deadline: Instant) {
        self.sender = None;
        self.shared.lock().deadline = Some(deadline);
        self.shared.changed.notify_all();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.sender.is_some() {
            self.close(deadline_after(DROP_GRACE));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ThreadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> RecorderStats {
        let counters = &self.counters;
        RecorderStats {
            queued: counters.records_queued.load(Ordering::SeqCst),
            committed: counters.records_committed.load(Ordering::SeqCst),
            dropped: counters.records_dropped.load(Ordering::SeqCst),
            abandoned: counters.records_abandoned.load(Ordering::SeqCst),
            failed_attempts: counters.store_write_failures.load(Ordering::SeqCst),
        }
    }

    /// Counts dropped records and warns, at most once per interval, without
    /// taking a lock.
    fn note_dropped(&self, count: usize) {
        add(&self.counters.records_dropped, count);
        if self.drop_warning.check().is_some() {
            warn!(
                dropped = self.counters.records_dropped.load(Ordering::Relaxed),
                capacity = self.options.capacity,
                max_bytes = self.options.max_bytes,
                "report recorder queue full: evaluation records dropped (mail is never delayed for reporting)"
            );
        }
    }

    /// Counts a commit and wakes `flush`.
    fn committed(&self, count: u64) {
        let _state = self.lock();
        self.counters
            .records_committed
            .fetch_add(count, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Whether the shutdown deadline has passed.
    fn past_deadline(&self) -> bool {
        self.lock()
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Waits `delay` before the next attempt; false, at once, when that
    /// attempt would come after the shutdown deadline (set before or during
    /// the wait).
    fn wait_before_retry(&self, delay: Duration) -> bool {
        let wake = Instant::now() + delay;
        let mut state = self.lock();
        loop {
            if state.deadline.is_some_and(|deadline| wake >= deadline) {
                return false;
            }
            let now = Instant::now();
            if now >= wake {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, wake - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Gives up on records the store could not take before the deadline.
    fn abandon(&self, count: u64, error: Option<&StoreError>) {
        self.counters
            .records_abandoned
            .fetch_add(count, Ordering::SeqCst);
        match error {
            Some(error) => error!(
                records = count,
                %error,
                "report store still failing at shutdown: records abandoned"
            ),
            None => error!(
                records = count,
                "report recorder shutdown deadline passed: records abandoned"
            ),
        }
    }
}

/// Marks the thread finished when it ends, even by a panic of the store.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.lock().finished = true;
        self.0.changed.notify_all();
    }
}

/// The recorder's thread: group commit until the queue is closed and empty.
fn run(mut open: StoreOpener, receiver: &Receiver<Batch>, shared: &Shared) {
    let _finished = Finished(shared);
    let mut store: Option<Box<dyn Store>> = None;
    let mut batch = Vec::new();
    let take = |(records, bytes): Batch, batch: &mut Vec<EvaluationRecord>| {
        shared
            .counters
            .queue_bytes
            .fetch_sub(bytes, Ordering::SeqCst);
        batch.extend(records);
    };
    // After the queue is closed, `recv` still returns what it holds.
    while let Ok(first) = receiver.recv() {
        take(first, &mut batch);
        while batch.len() < BATCH_RECORDS {
            match receiver.try_recv() {
                Ok(next) => take(next, &mut batch),
                Err(_) => break,
            }
        }
        if store.is_none() {
            store = open_store(&mut open, shared);
        }
        match store.as_mut() {
            Some(store) if !shared.past_deadline() => commit(store.as_mut(), &batch, shared),
            _ => shared.abandon(count(batch.len()), None),
        }
        batch.clear();
    }
}

/// Opens the store, retrying with backoff (logged at most once a minute,
/// every failure counted) until it opens or the shutdown deadline
/// passes.
fn open_store(open: &mut StoreOpener, shared: &Shared) -> Option<Box<dyn Store>> {
    let mut delay = FIRST_BACKOFF;
    let mut last_log: Option<Instant> = None;
    let mut failures: u64 = 0;
    loop {
        match open() {
            Ok(store) => {
                if failures > 0 {
                    info!(failures, "report store opened: reporting resumes");
                }
                return Some(store);
            }
            Err(error) => {
                failures += 1;
                shared
                    .counters
                    .store_open_failures
                    .fetch_add(1, Ordering::SeqCst);
                if last_log.is_none_or(|logged| logged.elapsed() >= FAILURE_LOG_INTERVAL) {
                    last_log = Some(Instant::now());
                    error!(
                        failures,
                        %error,
                        "report store cannot be opened: reporting degraded (records wait in the bounded queue), mail is verified as usual; will retry"
                    );
                }
                if !shared.wait_before_retry(delay) {
                    return None;
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Commits one batch, retrying until it succeeds or the shutdown deadline
/// passes.
fn commit(store: &mut dyn Store, batch: &[EvaluationRecord], shared: &Shared) {
    let count = count(batch.len());
    let mut delay = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    let mut first_failure = None;
    let mut last_log: Option<Instant> = None;
    loop {
        let result = store.insert(batch);
        let error = match result {
            Ok(()) => {
                if let Some(since) = first_failure.map(|since: Instant| since.elapsed()) {
                    info!(
                        records = count,
                        failures,
                        after_ms = since.as_millis(),
                        "report store recovered: records committed"
                    );
                }
                shared.committed(count);
                return;
            }
            Err(error) => error,
        };
        shared
            .counters
            .store_write_failures
            .fetch_add(1, Ordering::SeqCst);
        failures += 1;
        first_failure.get_or_insert_with(Instant::now);
        if last_log.is_none_or(|logged| logged.elapsed() >= FAILURE_LOG_INTERVAL) {
            last_log = Some(Instant::now());
            if error.transient {
                warn!(records = count, failures, %error, "report store failed; will retry");
            } else {
                error!(
                    records = count,
                    failures,
                    %error,
                    "report store failed and needs an operator; will retry"
                );
            }
        }
        if !shared.wait_before_retry(delay) {
            shared.abandon(count, Some(&error));
            return;
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// `timeout` from now; a timeout too long for the clock is a year.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn count(records: usize) -> u64 {
    count_u64(records)
}

fn count_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
