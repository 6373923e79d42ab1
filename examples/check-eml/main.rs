//! check-eml: verify a saved message (.eml) against SPF, DKIM and DMARC
//! from the command line, offline from a zone file or live.
//!
//! ```text
//! cargo run --release --ignore-rust-version --example check-eml -- [OPTIONS] <FILE.eml | ->
//!
//! # Offline demo: every DNS answer comes from the zone file.
//! cargo run --release --ignore-rust-version --example check-eml -- \
//!     --zone examples/data/demo.zone examples/data/forged.eml
//!
//! # A rejected message, live, with the envelope from the MTA log:
//! check-eml --client-ip 203.0.113.5 --helo mail.example.org \
//!     --mail-from alice@example.org --explain message.eml
//! ```
//!
//! The envelope values not given as options are inferred: MAIL FROM from
//! `Return-Path`, the client IP and HELO name from the topmost `Received`
//! header (Postfix's `from HELO (rdns [IP])`), skipping headers written for
//! a loopback client (a content filter re-injecting the message). The
//! output says which values were inferred and from where.
//!
//! DNS: `--zone FILE` serves the zone file on 127.0.0.1 from an in-process
//! server (test-dns) and asks only it; `--nameserver IP[:PORT]` asks the
//! given servers; otherwise the system resolver.
//!
//! Indirect mail flows: `--trusted-arc-sealer`, `--trusted-forwarder`,
//! `--mailing-list-action` and `--policy-override` set the overrides a
//! receiver applies to mail that failed DMARC (see the library's
//! `overrides` module); the verdict line names the one applied.
//!
//! Output: the verdict line, one line per check with why (ARC when the
//! message has ARC fields), the envelope, notes, then the
//! Authentication-Results header; `--explain` adds the decision trail
//! (with every override tried and why it did or did not apply), `--json`
//! prints one JSON object instead (schema in docs/check-eml.md).
//! `RUST_LOG=dmarc_verifier=debug` also logs to stderr.
//!
//! Exit status: 0 when the evaluation completed, whatever the verdict; 1
//! when the tool could not run (no resolver, the in-process DNS server did
//! not start, output not writable); 2 for bad arguments or an input that
//! is not a readable mail message, with one line on stderr:
//! `check-eml: <file>: <what is wrong>`.

mod args;
mod json;
mod message;
mod text;

use args::Args;
use clap::{error::ErrorKind, Parser};
use dmarc_verifier::{
    dns::zone::{Zone, ZoneError},
    envelope::{Inferred, KnownEnvelope},
    DiscoveryMethod, DnsConfig, Error, Nameservers, OverrideConfig, Verdict, Verifier,
    VerifierConfig,
};
use std::{io::Write, process::ExitCode};
use test_dns::TestDns;

/// Everything the outputs need about one run.
pub struct Report<'a> {
    /// The input's name (path or `<stdin>`).
    pub name: &'a str,
    /// The envelope and where its values came from.
    pub inferred: &'a Inferred,
    /// Notes about the input itself.
    pub message_notes: &'a [String],
    /// The verifier's conclusion.
    pub verdict: &'a Verdict,
    /// The discovery method in force.
    pub discovery: DiscoveryMethod,
    /// Whether to include the decision trail.
    pub explain: bool,
}

impl Report<'_> {
    /// Notes about the input, then about the envelope.
    pub fn notes(&self) -> impl Iterator<Item = &str> {
        self.message_notes
            .iter()
            .chain(&self.inferred.notes)
            .map(String::as_str)
    }
}

/// Why a run ended without output.
#[derive(Debug)]
enum Failure {
    /// Bad arguments or input: exit status 2.
    Usage(String),
    /// The tool could not run: exit status 1.
    Runtime(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (text, code) = match self {
            Failure::Usage(text) => (text, 2),
            Failure::Runtime(text) => (text, 1),
        };
        eprintln!("check-eml: {text}");
        ExitCode::from(code)
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => return clap_error(&error),
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // One thread is enough: the in-process DNS server runs on its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return Failure::Runtime(format!("cannot start the Tokio runtime: {error}")).exit()
        }
    };
    let output = match runtime.block_on(run(&args)) {
        Ok(output) => output,
        Err(failure) => return failure.exit(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // `check-eml ... | head`: the reader has what it wanted.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => Failure::Runtime(format!("cannot write the output: {error}")).exit(),
    }
}

/// `--help` and `--version` print and exit 0; any other clap error becomes
/// one line on stderr and exit status 2.
fn clap_error(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return match error.print() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        };
    }
    // clap's message: "error: ...", maybe more lines, a tip, the usage and
    // "For more information, try '--help'." Keep the message itself.
    let rendered = error.to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    Failure::Usage(format!("{message} (see --help)")).exit()
}

/// Reads the message, sets up DNS, verifies, and renders the output.
async fn run(args: &Args) -> Result<String, Failure> {
    // Check the DNS options before reading a message from stdin.
    let zone = match &args.zone {
        Some(path) => Some(Zone::from_file(path).map_err(|e| Failure::Usage(zone_error(&e)))?),
        None => None,
    };
    let message = message::read(&args.file).map_err(Failure::Usage)?;
    let known = KnownEnvelope {
        client_ip: args.client_ip,
        helo: args.helo.clone(),
        mail_from: args.mail_from.clone(),
    };
    let inferred = dmarc_verifier::envelope::infer(&message.saved, &known);

    // The in-process server must outlive the verification.
    let server = match zone {
        Some(zone) => Some(TestDns::start_with_zone(zone).await.map_err(|e| {
            Failure::Runtime(format!("cannot start the in-process DNS server: {e}"))
        })?),
        None => None,
    };
    let nameservers = match &server {
        Some(server) => Nameservers::Explicit(vec![server.addr()]),
        None if !args.nameservers.is_empty() => Nameservers::Explicit(args.nameservers.clone()),
        None => Nameservers::System,
    };
    let config = VerifierConfig {
        authserv_id: args.authserv_id.clone(),
        discovery: args.discovery.into(),
        pct: args.pct.into(),
        psl_path: args.psl.clone(),
        dns: DnsConfig {
            nameservers,
            timeout: args.dns_timeout.unwrap_or(DnsConfig::default().timeout),
            ..DnsConfig::default()
        },
        overrides: OverrideConfig {
            trusted_arc_sealers: args.trusted_arc_sealers.clone(),
            trusted_forwarders: args.trusted_forwarders.clone(),
            mailing_list_action: args.mailing_list_action.disposition(),
            policy_overrides: args.policy_overrides.clone(),
            ..OverrideConfig::default()
        },
        ..VerifierConfig::default()
    };
    let discovery = config.discovery;
    let verifier = Verifier::new(config).map_err(setup_error)?;
    let verdict = match args.pct_draw {
        Some(draw) => {
            verifier
                .verify_with_draw(&inferred.envelope, &message.saved.raw, draw)
                .await
        }
        None => {
            verifier
                .verify(&inferred.envelope, &message.saved.raw)
                .await
        }
    };
    drop(server);

    let report = Report {
        name: &message.name,
        inferred: &inferred,
        message_notes: &message.saved.notes,
        verdict: &verdict,
        discovery,
        explain: args.explain,
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&json::render(&report))
            .map_err(|e| Failure::Runtime(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(text::render(&report))
    }
}

/// `demo.zone line 7: ...`, or `demo.zone: cannot read: ...` for an error
/// that concerns no line.
fn zone_error(error: &ZoneError) -> String {
    match (&error.path, error.line) {
        (Some(path), 0) => format!("{}: {}", path.display(), error.message),
        _ => error.to_string(),
    }
}

/// A verifier that cannot be built: a bad option or PSL file (exit 2), or
/// no resolver (exit 1).
fn setup_error(error: Error) -> Failure {
    match error {
        Error::Psl {
            source_name,
            reason,
        } => Failure::Usage(format!(
            "{source_name}: cannot load the Public Suffix List: {reason}"
        )),
        Error::Config {
            key,
            value,
            expected,
        } => Failure::Usage(format!(
            "invalid value {value:?} for --{} (expected {expected})",
            key.replace('_', "-")
        )),
        other => Failure::Runtime(format!("{other} (try --zone or --nameserver)")),
    }
}
