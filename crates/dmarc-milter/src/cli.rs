//! The command lines of the `dmarc-milter` daemon and of `dmarc-check`.
//!
//! The binaries parse them; `build.rs` compiles this same file and
//! generates the man pages dmarc-milter(8) and dmarc-check(1) from it with
//! clap_mangen, so the help text here is the manual. This file may use
//! only `clap` and `std`.

use clap::{Parser, Subcommand};
use std::{net::IpAddr, path::PathBuf};

/// Where the daemon and `dmarc-check` look for the configuration by
/// default (where the Debian package installs it).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dmarc-milter/dmarc-milter.toml";

/// Exit status of a refused configuration or argument.
pub const EXIT_CONFIG: u8 = 2;

/// DMARC milter for Postfix: checks inbound mail against the sender's DMARC
/// policy, removes forged Authentication-Results and adds its own.
#[derive(Debug, Parser)]
#[command(
    name = "dmarc-milter",
    version,
    long_about = "DMARC milter for Postfix: checks inbound mail against the DMARC policy \
                  of its From domain (SPF, DKIM, alignment, p, sp, np, pct, t), removes \
                  incoming Authentication-Results header fields that claim to come from \
                  this host, adds its own, and rejects, quarantines (Postfix's hold \
                  queue), tempfails or accepts the message as the policy asks.\n\n\
                  Without a command it serves the milter protocol on the socket of the \
                  configuration until SIGTERM or SIGINT (messages in flight are finished, \
                  for at most shutdown_timeout); SIGHUP reads the configuration again and \
                  keeps the running one when the new one is refused (log_level applies at \
                  once). It logs to standard error (journald under systemd, with \
                  priorities): one line per message with the Postfix queue id. With \
                  metrics_listen it serves Prometheus metrics at /metrics.",
    after_long_help = "Exit status: 0 after a clean stop, a good --check-config or a \
                       completed report run; 1 when the socket cannot be opened, the \
                       milter fails or a report run fails; 2 for a configuration or an \
                       argument that is refused."
)]
pub struct MilterArgs {
    /// The configuration file.
    #[arg(short, long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Check the configuration (load the Public Suffix List, read the report
    /// store without changing or creating anything), print the outcome and
    /// exit: 0 when it is good, 2 when it is not. A report store that
    /// cannot be read is a warning (the milter starts, reporting degraded)
    /// unless report_store_required is set.
    #[arg(long)]
    pub check_config: bool,
    /// What to do instead of serving mail.
    #[command(subcommand)]
    pub command: Option<MilterCommand>,
}

/// The commands of `dmarc-milter`.
#[derive(Debug, Subcommand)]
pub enum MilterCommand {
    /// Make the DMARC aggregate reports (RFC 9990) of one UTC day from the
    /// report store, deliver pending report mail (aggregate and failure
    /// reports) and purge old evaluations; print what was done. Run it from
    /// a timer: daily for aggregate reports, more often to deliver failure
    /// reports with `--deliver-only`. Needs `report_store`.
    Report {
        /// The UTC day to report, YYYY-MM-DD [default: yesterday]; a day
        /// that has not ended is refused.
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

/// Show what dmarc-milter would do with a saved message.
#[derive(Debug, Parser)]
#[command(
    name = "dmarc-check",
    version,
    long_about = "Show what dmarc-milter would do with a saved message (.eml, or the \
                  output of postcat -bh): the daemon's configuration (skips, overrides, \
                  authserv-id, dry run, DNS settings) and the daemon's own decision code \
                  on the message: the forged Authentication-Results it would delete, the \
                  header it would add, and whether it would accept, quarantine, reject \
                  (with the SMTP reply) or tempfail the message, with the SPF, DKIM and \
                  DMARC results that decided. Nothing is recorded for reports.\n\n\
                  Envelope values not given as options are read from the message: MAIL \
                  FROM from Return-Path, the client's address and HELO name from the \
                  topmost Received header that is not a local re-injection. The output \
                  says where each came from.",
    after_long_help = "Exit status: 0 when the message was decided, whatever the decision; \
                       1 when the check could not run (no DNS resolver, output not \
                       writable); 2 for bad arguments, a refused configuration or an \
                       input that is not a mail message."
)]
pub struct CheckArgs {
    /// The message, or `-` to read it from standard input.
    #[arg(value_name = "FILE.eml | -")]
    pub file: PathBuf,
    /// The milter's configuration file.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The SMTP client's address [default: from the topmost Received
    /// header].
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<IpAddr>,
    /// The client's host name as Postfix verified it, for host names in
    /// ignore_hosts.
    #[arg(long, value_name = "NAME", default_value = "unknown")]
    pub client_name: String,
    /// The HELO/EHLO name [default: from the topmost Received header].
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// The MAIL FROM address; an empty string is the null sender `<>`
    /// [default: from the Return-Path header].
    #[arg(long, value_name = "ADDR")]
    pub mail_from: Option<String>,
    /// The SASL user name, as if the client had authenticated.
    #[arg(long, value_name = "USER")]
    pub auth_user: Option<String>,
    /// Postfix's $myhostname (milter macro j), the authserv-id when the
    /// configuration sets none [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub mta_name: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print the decision trail: every DNS question and answer, the
    /// record applied, each alignment check, the policy before and after
    /// pct and t.
    #[arg(long)]
    pub explain: bool,
}
