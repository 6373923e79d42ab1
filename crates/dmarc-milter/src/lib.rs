//! # dmarc-milter
//!
//! A milter (Postfix, Sendmail) that checks inbound mail against DMARC with
//! [`dmarc_verifier`]: it removes forged Authentication-Results fields,
//! adds its own at the top of the header, and rejects, quarantines (hold
//! queue), tempfails or accepts the message as the domain's policy asks.
//!
//! The daemon (`main.rs`) only reads its arguments, installs the signal
//! handlers and opens the socket; [`run`] does the rest, so tests start the
//! milter in-process:
//!
//! ```no_run
//! # async fn f() -> Result<(), dmarc_milter::Error> {
//! use dmarc_milter::{reload_channel, Config, MilterListener};
//! let config = Config::parse("socket = \"inet:127.0.0.1:8895\"", "inline")?;
//! let listener = MilterListener::bind(&config.socket, config.socket_mode).await?;
//! let (_reloader, reloads) = reload_channel();
//! dmarc_milter::run(listener, config, reloads, tokio::signal::ctrl_c()).await
//! # }
//! ```
//!
//! ## Logging policy
//!
//! Through `tracing`: `error` = we cannot provide service (a message we
//! answer with tempfail because of our own failure, a listener that cannot
//! accept); `warn` = misconfiguration or a peer breaking the protocol (a
//! rejected reload, an MTA that offers no header actions, a message over
//! `max_message_size`, a resolver that fails); `info` = one verdict line
//! per message, plus start, reload and stop; `debug` = the decision trail
//! (the library's, target `dmarc_verifier::trail`) and what was deleted.
//! Every line logged while a message is decided carries its Postfix queue
//! id (the `message` span). How lines are written is in [`logging`].
//!
//! ## Metrics
//!
//! With `metrics_listen`, Prometheus metrics are served at `/metrics`
//! ([`metrics`]); [`serve`] takes the listening sockets already open.

#![warn(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod actions;
mod callbacks;
pub mod cli;
pub mod config;
pub mod counters;
pub mod decision;
mod dns_health;
pub mod logging;
mod message;
pub mod metrics;
pub mod reporting;
mod sealing;
mod session;
pub mod socket;
mod state;

pub use config::{Config, ConfigError, QuarantineAction};
pub use counters::Counters;
pub use dns_health::check_resolver;
pub use metrics::MetricsListener;
pub use socket::{MilterListener, SocketSpec};

use dns_health::DnsHealth;
use metrics::Metrics;
use state::{Active, Shared};
use std::{fmt, future::Future, io, sync::Arc};
use tokio::sync::{mpsc, oneshot, watch};

/// Why the milter stopped or could not act.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused.
    Config(ConfigError),
    /// The socket could not be opened, or the listener failed for good.
    Io(io::Error),
    /// A milter action could not be sent to the MTA.
    Action(indymilter::ActionError),
    /// A reply text the milter protocol cannot carry.
    Reply(indymilter::SmtpReplyError),
    /// The MTA broke the protocol.
    Protocol(&'static str),
    /// The report store could not be opened and `report_store_required`
    /// is set.
    Report(dmarc_report::store::StoreError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Action(e) => write!(f, "cannot act on the message: {e}"),
            Error::Reply(e) => write!(f, "cannot set the SMTP reply: {e}"),
            Error::Protocol(what) => write!(f, "milter protocol error: {what}"),
            Error::Report(e) => write!(f, "report store: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Action(e) => Some(e),
            Error::Reply(e) => Some(e),
            Error::Protocol(_) => None,
            Error::Report(e) => Some(e),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<indymilter::ActionError> for Error {
    fn from(e: indymilter::ActionError) -> Self {
        Error::Action(e)
    }
}

impl From<indymilter::SmtpReplyError> for Error {
    fn from(e: indymilter::SmtpReplyError) -> Self {
        Error::Reply(e)
    }
}

type ReloadReply = oneshot::Sender<Result<(), ConfigError>>;

/// Asks a running milter to read its configuration file again (what
/// SIGHUP does). Cloneable.
#[derive(Debug, Clone)]
pub struct Reloader(mpsc::UnboundedSender<Option<ReloadReply>>);

/// The receiving end given to [`run`].
#[derive(Debug)]
pub struct ReloadRequests(mpsc::UnboundedReceiver<Option<ReloadReply>>);

/// A reload handle and the requests end for [`run`].
pub fn reload_channel() -> (Reloader, ReloadRequests) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Reloader(tx), ReloadRequests(rx))
}

impl Reloader {
    /// Requests a reload without waiting (for a signal handler). The
    /// outcome is logged.
    pub fn request(&self) {
        let _ = self.0.send(None);
    }

    /// Reloads and waits for the outcome: the new configuration is in force
    /// for every message that starts after this returns `Ok`.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of a refused configuration (the old one stays),
    /// or an I/O error when the milter is no longer running.
    pub async fn reload(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::Io(io::Error::other("the milter is not running"));
        self.0.send(Some(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(Error::Config)
    }
}

/// Reads the configuration file again; keeps the old configuration when the
/// new one is refused. Settings of the socket and the process need a
/// restart: a warning names each one that differs from what the process
/// started with (not from the last reload, so reverting one is silent).
/// `log_level` applies at once (unless `RUST_LOG` is set).
fn reload(shared: &Shared) -> Result<(), ConfigError> {
    let old = shared.active();
    let Some(path) = old.config.path.clone() else {
        return Err(ConfigError {
            file: "configuration".to_string(),
            line: None,
            kind: config::ConfigErrorKind::Read(io::Error::other(
                "the configuration was not read from a file",
            )),
        });
    };
    let new = Config::from_file(&path)?;
    let started = &shared.started;
    let restart_only = [
        ("socket", started.socket != new.socket),
        ("socket_mode", started.socket_mode != new.socket_mode),
        (
            "max_connections",
            started.max_connections != new.max_connections,
        ),
        ("log_format", started.log_format != new.log_format),
        (
            "metrics_listen",
            started.metrics_listen != new.metrics_listen,
        ),
    ];
    // The report settings opened at start, compared with what is running
    // (not with the previous file): the other report_* and failure_* keys
    // apply from the next message.
    let report_keys = match &shared.reporting {
        Some(reporting) => reporting.restart_only_changes(new.reporting.as_ref()),
        None if new.reporting.is_some() => vec!["report_store"],
        None => Vec::new(),
    };
    let level_changed = old.config.log_level != new.log_level;
    let active = Active::new(new, &shared.dns_health)?;
    if level_changed {
        logging::set_level(active.config.log_level);
    }
    shared.replace(active);
    let restart_keys = restart_only
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .chain(report_keys);
    for key in restart_keys {
        tracing::warn!(
            "{key} changed in {}: it takes effect at restart",
            path.display()
        );
    }
    tracing::info!("configuration reloaded from {}", path.display());
    Ok(())
}

/// Runs the milter on `listener` until `shutdown` completes, with
/// counters of its own (see [`run_with`]).
///
/// # Errors
///
/// As [`run_with`].
pub async fn run(
    listener: MilterListener,
    config: Config,
    reload_requests: ReloadRequests,
    shutdown: impl Future,
) -> Result<(), Error> {
    run_with(listener, config, reload_requests, shutdown, Arc::default()).await
}

/// Runs the milter on `listener` until `shutdown` completes, counting into
/// `counters` (every bound hit, see [`Counters`]), and serving the metrics
/// on `metrics_listen` when it is set (see [`serve`]).
///
/// # Errors
///
/// [`Error::Io`] when `metrics_listen` cannot be opened; otherwise as
/// [`serve`].
pub async fn run_with(
    listener: MilterListener,
    config: Config,
    reload_requests: ReloadRequests,
    shutdown: impl Future,
    counters: Arc<Counters>,
) -> Result<(), Error> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(MetricsListener::bind(addr).await?),
        None => None,
    };
    let listeners = Listeners {
        milter: listener,
        metrics,
    };
    serve(listeners, config, reload_requests, shutdown, counters).await
}

/// The sockets a milter serves, opened before it starts.
#[derive(Debug)]
pub struct Listeners {
    /// Where MTAs connect.
    pub milter: MilterListener,
    /// Where `/metrics` is served (`metrics_listen`); `None`: no metrics
    /// are recorded.
    pub metrics: Option<MetricsListener>,
}

/// Runs the milter on `listeners` until `shutdown` completes, counting into
/// `counters` (every bound hit, see [`Counters`]).
///
/// Builds the verifier from `config` (so a configuration that cannot serve
/// fails here), opens the report store when one is configured (a store
/// that cannot be opened is logged and retried, reporting degraded, unless
/// `report_store_required`), then serves MTA connections. Each
/// [`Reloader`] request reads the configuration file again. When
/// `shutdown` completes the listener is closed (a UNIX socket file is
/// removed), new messages on open connections are answered `451 4.3.2`,
/// messages in flight are finished, the report queues are written out,
/// then every connection is closed and `run_with` returns `Ok`: all of it
/// within one deadline, `shutdown_timeout` after the shutdown began (keep
/// it below the service manager's stop timeout, systemd's
/// `TimeoutStopSec`).
///
/// # Errors
///
/// [`Error::Config`] when the verifier cannot be built, [`Error::Report`]
/// when the store cannot be opened and `report_store_required` is set,
/// [`Error::Io`] when the listener fails for good.
pub async fn serve(
    listeners: Listeners,
    config: Config,
    reload_requests: ReloadRequests,
    shutdown: impl Future,
    counters: Arc<Counters>,
) -> Result<(), Error> {
    let Listeners {
        milter: mut listener,
        metrics: metrics_listener,
    } = listeners;
    let shutdown_timeout = config.shutdown_timeout;
    let milter_config = indymilter::Config {
        max_connections: config.max_connections,
        ..indymilter::Config::default()
    };
    // Opening the store blocks for a moment (a PostgreSQL connection): only
    // at start, before any mail.
    let reporting = match &config.reporting {
        Some(settings) => Some(
            reporting::Reporting::start(settings, Arc::clone(&counters.report))
                .map_err(Error::Report)?,
        ),
        None => None,
    };
    let metrics = metrics_listener
        .as_ref()
        .map(|_| Arc::new(Metrics::default()));
    let dns_health = Arc::new(DnsHealth::new(metrics.clone()));
    let active = Active::new(config, &dns_health)?;
    let shared = Arc::new(Shared::new(
        active,
        reporting,
        counters,
        dns_health,
        metrics.clone(),
    ));
    // Ends with this function (dropping the handle does not stop it).
    let metrics_server = match (metrics_listener, &metrics) {
        (Some(listener), Some(metrics)) => {
            metrics.config_loaded();
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("metrics at http://{addr}/metrics");
            }
            let outbox = shared
                .started
                .reporting
                .as_ref()
                .map(|reporting| Arc::new(metrics::Outbox::new(reporting.store.clone())));
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                metrics.registry(&shared, outbox.as_ref()),
                outbox,
            ))))
        }
        _ => None,
    };

    let (stop_accepting, mut stop_rx) = watch::channel(false);
    listener.stop_on(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let (close_sessions, close_rx) = oneshot::channel::<()>();

    let reloader = tokio::spawn(serve_reloads(Arc::clone(&shared), reload_requests));

    let milter = indymilter::run(
        listener,
        callbacks::callbacks(Arc::clone(&shared)),
        milter_config,
        async move {
            let _ = close_rx.await;
        },
    );
    tokio::pin!(milter);
    tracing::info!("dmarc-milter {} started", env!("CARGO_PKG_VERSION"));

    let result = tokio::select! {
        result = &mut milter => Some(result),
        _ = shutdown => None,
    };
    if let Some(result) = result {
        reloader.abort();
        return result.map_err(Error::Io);
    }

    // One deadline for the whole shutdown: messages in flight, then the
    // failure reports and the evaluations still queued.
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    let drain = async {
        tracing::info!(
            in_flight = shared.inflight(),
            timeout_ms = shutdown_timeout.as_millis(),
            "shutting down: finishing messages in flight"
        );
        shared.begin_draining();
        let _ = stop_accepting.send(true);
        let drained = tokio::select! {
            _ = shared.drained() => true,
            _ = tokio::time::sleep_until(deadline) => false,
        };
        if !drained {
            tracing::error!(
                in_flight = shared.inflight(),
                "messages still in flight after shutdown_timeout; closing their connections"
            );
        }
        let _ = close_sessions.send(());
    };
    // The milter keeps running while draining: its listener must see the
    // stop to close the socket.
    let result = tokio::select! {
        result = &mut milter => Some(result),
        _ = drain => {
            // indymilter ends each session after its current callback: a
            // callback still waiting (for DNS) past the deadline is not
            // waited for. Its task ends with the process.
            tokio::select! {
                result = &mut milter => Some(result),
                _ = tokio::time::sleep_until(deadline) => None,
            }
        }
    };
    let result = result.unwrap_or_else(|| {
        tracing::error!(
            in_flight = shared.inflight(),
            "sessions still busy at the shutdown deadline: not waited for"
        );
        Ok(())
    });
    reloader.abort();
    drop(metrics_server);
    if let Some(reporting) = &shared.reporting {
        // Whatever time is left of the one deadline.
        reporting.flush_until(deadline.into_std());
    }
    tracing::info!("stopped");
    result.map_err(Error::Io)
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_reloads(shared: Arc<Shared>, mut requests: ReloadRequests) {
    while let Some(reply) = requests.0.recv().await {
        let outcome = reload(&shared);
        if let Err(e) = &outcome {
            tracing::warn!("reload refused, keeping the running configuration: {e}");
        }
        if let Some(metrics) = shared.metrics() {
            metrics.reload(outcome.is_ok());
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}
