//! The `dmarc-milter` daemon: reads its arguments and configuration,
//! installs the signal handlers, opens the socket and hands over to
//! [`dmarc_milter::run`].
//!
//! Exit status: 0 after a clean stop (SIGTERM, SIGINT), a good
//! `--check-config` or a completed `report` run; 1 when the socket cannot
//! be opened, the milter fails (a required report store that cannot be
//! opened) or a report run fails; 2 for a configuration (or argument) that
//! is refused, `report` without `report_store`, or a `--day` that has not
//! ended.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use clap::Parser;
use dmarc_milter::{
    cli::{MilterArgs as Args, MilterCommand as Command, EXIT_CONFIG},
    logging, reload_channel,
    reporting::{run_reports, ReportRun},
    Config, Listeners, MetricsListener, MilterListener,
};
use dmarc_report::run::{previous_utc_day, utc_day};
use std::{process::ExitCode, sync::Arc};
use tokio::signal::unix::{signal, SignalKind};

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
        // The report store is read, never written nor created (this may run
        // as another user than the service's), outside the async runtime:
        // the PostgreSQL client runs its own.
        if let Some(reporting) = &config.reporting {
            match dmarc_report::store::check(&reporting.store) {
                Ok(status) => println!("report_store {status}"),
                Err(e) if reporting.limits.store_required => {
                    eprintln!("dmarc-milter: report_store: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
                Err(e) => eprintln!(
                    "dmarc-milter: warning: report_store: {e} (the milter will start and verify mail; reporting stays degraded until this is fixed)"
                ),
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
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs to stderr in `log_format`, with priorities and without time
/// stamps under journald; `RUST_LOG` overrides `log_level` (see
/// [`dmarc_milter::logging`]).
fn init_logging(config: &Config) {
    logging::init(config.log_level, config.log_format);
}

async fn serve(config: Config) -> ExitCode {
    let listener = match MilterListener::bind(&config.socket, config.socket_mode).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", config.socket);
            return ExitCode::FAILURE;
        }
    };
    let metrics = match config.metrics_listen {
        Some(addr) => match MetricsListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!("cannot listen on metrics_listen {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
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
    // A warning when the resolver does not answer; the milter starts
    // either way (and does not wait for the answer).
    let resolver_config = config.clone();
    tokio::spawn(async move { dmarc_milter::check_resolver(&resolver_config).await });
    let listeners = Listeners {
        milter: listener,
        metrics,
    };
    let counters = Arc::default();
    match dmarc_milter::serve(listeners, config, reloads, shutdown, counters).await {
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
