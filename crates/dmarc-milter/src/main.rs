//! The `dmarc-milter` daemon: reads its arguments and configuration,
//! installs the signal handlers, opens the socket and hands over to
//! [`dmarc_milter::run`].
//!
//! Exit status: 0 after a clean stop (SIGTERM, SIGINT), a good
//! `--check-config` or a completed `report` run; 1 when the socket cannot
//! be opened, the milter fails or a report run fails; 2 for a
//! configuration (or argument) that is refused.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use clap::{Parser, Subcommand};
use dmarc_milter::{
    config::DEFAULT_CONFIG_PATH,
    reload_channel,
    reporting::{run_reports, ReportRun},
    Config, MilterListener,
};
use dmarc_report::run::{previous_utc_day, utc_day};
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// DMARC milter for Postfix: checks inbound mail against the sender's DMARC
/// policy, removes forged Authentication-Results and adds its own.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(short, long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Check the configuration (and load the Public Suffix List), print the
    /// outcome and exit: 0 when it is good, 2 when it is not.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the DMARC aggregate reports (RFC 9990) of one UTC day from the
    /// report store, deliver pending report mail (aggregate and failure
    /// reports) and purge old evaluations; print what was done. Run it from
    /// a timer: daily for aggregate reports, more often to deliver failure
    /// reports with `--deliver-only`. Needs `report_store`.
    Report {
        /// The UTC day to report, YYYY-MM-DD [default: yesterday].
        #[arg(long, value_name = "YYYY-MM-DD")]
        day: Option<String>,
        /// Deliver pending mail only; make no report.
        #[arg(long, conflicts_with_all = ["day", "no_deliver"])]
        deliver_only: bool,
        /// Make and queue the reports, deliver nothing.
        #[arg(long)]
        no_deliver: bool,
    },
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_file(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dmarc-milter: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::Report {
        day,
        deliver_only,
        no_deliver,
    }) = &args.command
    {
        return report(&config, day.as_deref(), *deliver_only, *no_deliver);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dmarc-milter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        // The report store is opened (and its schema created or checked)
        // outside the async runtime: the PostgreSQL client runs its own.
        if let Some(reporting) = &config.reporting {
            if let Err(e) = dmarc_report::store::open(&reporting.store) {
                eprintln!("dmarc-milter: report_store: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        // Building the verifier also loads the Public Suffix List and the
        // resolver configuration; the ARC sealing key is read and its
        // permissions checked.
        return match runtime.block_on(async {
            config
                .verifier()
                .map(drop)
                .and_then(|()| config.arc_sealer().map(drop))
        }) {
            Ok(()) => {
                println!("{}: configuration OK", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dmarc-milter: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    init_logging(&config);
    runtime.block_on(serve(config))
}

/// `dmarc-milter report`: runs outside any async runtime (the PostgreSQL
/// client and the DNS check start their own).
fn report(config: &Config, day: Option<&str>, deliver_only: bool, no_deliver: bool) -> ExitCode {
    init_logging(config);
    let now = dmarc_milter::reporting::unix_now();
    let period = if deliver_only {
        None
    } else {
        match day.map(utc_day) {
            None => Some(previous_utc_day(now)),
            Some(Ok(period)) => Some(period),
            Some(Err(e)) => {
                eprintln!("dmarc-milter report: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    };
    let run = ReportRun {
        period,
        deliver: !no_deliver,
        now,
    };
    match run_reports(config, &run) {
        Ok(outcome) => {
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dmarc-milter report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: no colours unless it is a terminal, no timestamps under
/// systemd (journald adds its own). `RUST_LOG` overrides `log_level`.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log_level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

async fn serve(config: Config) -> ExitCode {
    let listener = match MilterListener::bind(&config.socket, config.socket_mode).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", config.socket);
            return ExitCode::FAILURE;
        }
    };
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (mut sigterm, mut sigint, mut sighup) = match signals {
        (Ok(term), Ok(int), Ok(hup)) => (term, int, hup),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (reloader, reloads) = reload_channel();
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            reloader.request();
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            _ = sigint.recv() => tracing::info!("SIGINT received"),
        }
    };
    tracing::info!("listening on {}", config.socket);
    match dmarc_milter::run(listener, config, reloads, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(dmarc_milter::Error::Config(e)) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
