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
//! `max_message_size`); `info` = one verdict line per message with the
//! Postfix queue id, plus start, reload and stop; `debug` = the decision
//! trail (the library's, target `dmarc_verifier::trail`) and what was
//! deleted.

#![warn(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod actions;
mod callbacks;
pub mod config;
mod message;
pub mod reporting;
mod sealing;
mod session;
pub mod socket;
mod state;

pub use config::{Config, ConfigError, QuarantineAction};
pub use socket::{MilterListener, SocketSpec};

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
    /// The report store could not be opened.
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
/// restart.
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
    let restart_only = [
        ("socket", old.config.socket != new.socket),
        ("socket_mode", old.config.socket_mode != new.socket_mode),
        (
            "max_connections",
            old.config.max_connections != new.max_connections,
        ),
        ("log_level", old.config.log_level != new.log_level),
        ("report_store", old.config.reporting != new.reporting),
    ];
    let active = Active::new(new)?;
    shared.replace(active);
    for (key, changed) in restart_only {
        if changed {
            tracing::warn!(
                "{key} changed in {}: it takes effect at restart",
                path.display()
            );
        }
    }
    tracing::info!("configuration reloaded from {}", path.display());
    Ok(())
}

/// Runs the milter on `listener` until `shutdown` completes.
///
/// Builds the verifier from `config` (so a configuration that cannot serve
/// fails here), then serves MTA connections. Each [`Reloader`] request
/// reads the configuration file again. When `shutdown` completes the
/// listener is closed (a UNIX socket file is removed), new messages on open
/// connections are answered `451 4.3.2`, messages in flight are finished
/// (for at most `shutdown_timeout`), then every connection is closed and
/// `run` returns `Ok`.
///
/// # Errors
///
/// [`Error::Config`] when the verifier cannot be built, [`Error::Io`] when
/// the listener fails for good.
pub async fn run(
    mut listener: MilterListener,
    config: Config,
    reload_requests: ReloadRequests,
    shutdown: impl Future,
) -> Result<(), Error> {
    let shutdown_timeout = config.shutdown_timeout;
    let milter_config = indymilter::Config {
        max_connections: config.max_connections,
        ..indymilter::Config::default()
    };
    // Opening the store blocks for a moment (a PostgreSQL connection): only
    // at start, before any mail.
    let reporting = match &config.reporting {
        Some(settings) => Some(reporting::Reporting::start(settings).map_err(Error::Report)?),
        None => None,
    };
    let shared = Arc::new(Shared::new(Active::new(config)?, reporting));

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

    let drain = async {
        tracing::info!(
            in_flight = shared.inflight(),
            "shutting down: finishing messages in flight"
        );
        shared.begin_draining();
        let _ = stop_accepting.send(true);
        let drained = tokio::select! {
            _ = shared.drained() => true,
            _ = tokio::time::sleep(shutdown_timeout) => false,
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
        result = &mut milter => result,
        _ = drain => milter.await,
    };
    reloader.abort();
    if let Some(reporting) = &shared.reporting {
        // Every connection is closed: nothing else runs that could wait.
        reporting.flush(shutdown_timeout);
    }
    tracing::info!("stopped");
    result.map_err(Error::Io)
}

async fn serve_reloads(shared: Arc<Shared>, mut requests: ReloadRequests) {
    while let Some(reply) = requests.0.recv().await {
        let outcome = reload(&shared);
        if let Err(e) = &outcome {
            tracing::warn!("reload refused, keeping the running configuration: {e}");
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}
