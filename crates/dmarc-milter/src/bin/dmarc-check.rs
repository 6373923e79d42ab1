//! `dmarc-check`: what the milter would do with a saved message.
//!
//! Reads the milter's configuration, builds its verifier, replays the
//! message's header fields and body into the milter's message buffer as
//! Postfix would send them, and runs the daemon's own decision
//! ([`dmarc_milter::decision::decide_saved`]). The envelope values not
//! given are inferred from the message
//! ([`dmarc_verifier::envelope::infer`], shared with check-eml).
//!
//! Exit status: 0 when the message was decided, whatever the decision; 1
//! when the check could not run; 2 for bad arguments, a refused
//! configuration or an input that is not a mail message.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use clap::{error::ErrorKind, Parser};
use dmarc_milter::{
    cli::{CheckArgs, EXIT_CONFIG},
    config::{ConfigErrorKind, LogLevel},
    decision::{decide_saved, Action, Checked, Context, Decision},
    Config,
};
use dmarc_verifier::{
    envelope::{infer, Inferred, KnownEnvelope, SavedMessage, Source},
    Enforcement, Verdict,
};
use serde_json::{json, Value};
use std::{
    fmt::Write as _,
    io::{Read, Write},
    path::Path,
    process::ExitCode,
};

/// Why a run ended without output.
enum Failure {
    /// Bad arguments, configuration or input: exit status 2.
    Usage(String),
    /// The check could not run: exit status 1.
    Runtime(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (text, code) = match self {
            Failure::Usage(text) => (text, EXIT_CONFIG),
            Failure::Runtime(text) => (text, 1),
        };
        eprintln!("dmarc-check: {text}");
        ExitCode::from(code)
    }
}

fn main() -> ExitCode {
    let args = match CheckArgs::try_parse() {
        Ok(args) => args,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            return match error.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            };
        }
        Err(error) => {
            // clap's own message; exit status 2 like every usage error.
            let _ = error.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Only with RUST_LOG; the resolver's own lines stay at warn unless it
    // names them, as in the daemon.
    if let Ok(rust_log) = std::env::var("RUST_LOG") {
        let filter = dmarc_milter::logging::filter(LogLevel::Error, Some(&rust_log))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::Runtime(format!("cannot start the async runtime: {e}")).exit(),
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
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => Failure::Runtime(format!("cannot write the output: {e}")).exit(),
    }
}

/// Everything the outputs need.
struct Report<'a> {
    args: &'a CheckArgs,
    name: &'a str,
    config: &'a Config,
    message: &'a SavedMessage,
    inferred: &'a Inferred,
    context: &'a Context,
    decision: &'a Decision,
}

async fn run(args: &CheckArgs) -> Result<String, Failure> {
    let mut config = Config::from_file(&args.config).map_err(|e| Failure::Usage(e.to_string()))?;
    // The daemon skips formatting the trail; --explain wants it.
    config.verifier.trail = args.explain;
    let (name, bytes) = read(&args.file)?;
    let message = SavedMessage::parse(bytes).map_err(|e| Failure::Usage(format!("{name}: {e}")))?;
    let known = KnownEnvelope {
        client_ip: args.client_ip,
        helo: args.helo.clone(),
        mail_from: args.mail_from.clone(),
    };
    let mut inferred = infer(&message, &known);
    inferred.envelope.authenticated_user = args.auth_user.clone();
    let context = Context {
        envelope: inferred.envelope.clone(),
        client_name: args.client_name.clone(),
        authserv_id: config.authserv_id_for(args.mta_name.as_deref()),
        // Postfix offers the quarantine action.
        can_quarantine: true,
    };
    let verifier = config.verifier().map_err(|e| match &e.kind {
        // No resolver (no /etc/resolv.conf): the check cannot run.
        ConfigErrorKind::Library(dmarc_verifier::Error::Resolver(_)) => {
            Failure::Runtime(e.to_string())
        }
        _ => Failure::Usage(e.to_string()),
    })?;
    let decision = decide_saved(&config, &verifier, &context, &message).await;
    let report = Report {
        args,
        name: &name,
        config: &config,
        message: &message,
        inferred: &inferred,
        context: &context,
        decision: &decision,
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&json_output(&report))
            .map_err(|e| Failure::Runtime(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(text_output(&report))
    }
}

/// The message's name for errors and the output, and its bytes.
fn read(path: &Path) -> Result<(String, Vec<u8>), Failure> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::Usage(format!("<stdin>: cannot read: {e}")))?;
        return Ok(("<stdin>".to_string(), bytes));
    }
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Usage(format!("{name}: cannot read: {e}")))?;
    Ok((name, bytes))
}

fn dry_run(config: &Config) -> bool {
    config.verifier.enforcement == Enforcement::Monitor
}

/// `accept`, `quarantine (hold: ...)`, `reject: 550 5.7.1 ...`.
fn action_line(report: &Report<'_>) -> String {
    let decision = report.decision;
    let mut text = match &decision.outcome.action {
        Action::Accept => "accept".to_string(),
        Action::Hold(reason) => format!("quarantine (Postfix hold queue: {reason})"),
        action @ (Action::Reject(_) | Action::Tempfail(_)) => format!(
            "{}: {}",
            action.as_str(),
            action.smtp_reply().unwrap_or_default()
        ),
    };
    match &decision.checked {
        Checked::Skipped(skip) => {
            let _ = write!(text, ", not checked: {}", skip.reason());
        }
        Checked::TooLarge { .. } => {
            text.push_str(", larger than max_message_size: DKIM not verified");
        }
        Checked::TooManyForged { forged, max } => {
            let _ = write!(
                text,
                ", not checked: {forged} Authentication-Results fields to remove, more than max_forged_authentication_results ({max})"
            );
        }
        Checked::Verified(verdict) => {
            let wanted = decision.wanted(report.config);
            if dry_run(report.config) && wanted.as_str() != decision.outcome.action.as_str() {
                let _ = write!(text, " (dry run: the policy asks for {})", wanted.as_str());
            } else if verdict.disposition.as_str() == "quarantine"
                && matches!(decision.outcome.action, Action::Accept)
            {
                text.push_str(" (quarantine_action = \"header-only\")");
            }
        }
    }
    text
}

/// `from=example.com spf=fail dkim=none dmarc=fail`, as the daemon logs it.
fn verdict_line(verdict: &Verdict) -> String {
    let from = match &verdict.author_domains {
        Ok(domains) => domains.join(","),
        Err(error) => error.kind().to_string(),
    };
    let dkim: Vec<String> = verdict
        .dkim
        .iter()
        .map(|check| match check.domain.as_str() {
            "" => check.result.as_str().to_string(),
            domain => format!("{}/{domain}", check.result.as_str()),
        })
        .collect();
    let dkim = if dkim.is_empty() {
        "none".to_string()
    } else {
        dkim.join(",")
    };
    format!(
        "from={from} spf={} dkim={dkim} dmarc={}",
        verdict.spf.result.as_str(),
        verdict.dmarc.as_str()
    )
}

/// True when the message is delivered (accepted or held): only then are
/// headers deleted and ours added; a refused message is left as it is.
fn delivered(decision: &Decision) -> bool {
    matches!(decision.outcome.action, Action::Accept | Action::Hold(_))
}

/// Our header as Postfix writes it (LF, tab-folded), or `None`.
fn header(decision: &Decision) -> Option<String> {
    decision
        .outcome
        .auth_results
        .as_ref()
        .map(|value| format!("Authentication-Results: {}", value.replace("\r\n", "\n")))
}

/// The indices deleted, highest first (none for a refused message).
fn deleted(decision: &Decision) -> &[i32] {
    if delivered(decision) {
        &decision.outcome.delete
    } else {
        &[]
    }
}

fn text_output(report: &Report<'_>) -> String {
    let mut out = String::new();
    let decision = report.decision;
    let _ = writeln!(out, "Action: {}", action_line(report));
    if let Some(verdict) = decision.checked.verdict() {
        let _ = writeln!(out, "Verdict: {}", verdict_line(verdict));
    }
    if !delivered(decision) {
        out.push_str("Changes no header: the message is refused\n");
    } else if decision.outcome.delete.is_empty() {
        let _ = writeln!(
            out,
            "Deletes: no Authentication-Results header (none claims {})",
            report.context.authserv_id
        );
    } else {
        let indices: Vec<String> = decision.outcome.delete.iter().map(i32::to_string).collect();
        let _ = writeln!(
            out,
            "Deletes: Authentication-Results header {} (counted from the top), {}",
            indices.join(", "),
            if report.config.remove_all_authentication_results {
                "every incoming one (remove_all_authentication_results)".to_string()
            } else {
                format!("claiming {}", report.context.authserv_id)
            }
        );
    }
    match header(decision) {
        Some(header) if delivered(decision) => {
            let _ = writeln!(out, "Adds at the top:\n{header}");
        }
        Some(header) => {
            let _ = writeln!(out, "The verdict as a header (not added):\n{header}");
        }
        None => {
            let _ = writeln!(out, "Adds no header (add_header_to_skipped = false)");
        }
    }

    out.push('\n');
    let envelope = &report.inferred.envelope;
    let client_ip = envelope
        .client_ip
        .map_or_else(|| "none".to_string(), |ip| ip.to_string());
    let _ = writeln!(
        out,
        "Client IP:   {client_ip} ({})",
        report.inferred.client_ip.describe()
    );
    let _ = writeln!(out, "Client name: {}", report.args.client_name);
    let helo = if envelope.helo.is_empty() {
        "none"
    } else {
        envelope.helo.as_str()
    };
    let _ = writeln!(
        out,
        "HELO:        {helo} ({})",
        report.inferred.helo.describe()
    );
    let _ = writeln!(
        out,
        "MAIL FROM:   <{}> ({})",
        envelope.mail_from,
        report.inferred.mail_from.describe()
    );
    if let Some(user) = &envelope.authenticated_user {
        let _ = writeln!(out, "SASL user:   {user}");
    }
    let _ = writeln!(
        out,
        "Configuration: {}{}",
        report.args.config.display(),
        if dry_run(report.config) {
            " (dry_run = true)"
        } else {
            ""
        }
    );
    for note in report.message.notes.iter().chain(&report.inferred.notes) {
        let _ = writeln!(out, "Note: {note}");
    }
    if report.args.explain {
        out.push('\n');
        out.push_str("Decision trail:\n");
        match decision.checked.verdict() {
            Some(verdict) => {
                for step in &verdict.trail {
                    let _ = writeln!(out, "  {step}");
                }
            }
            None => out.push_str("  not checked: no DNS question asked\n"),
        }
    }
    out
}

fn json_output(report: &Report<'_>) -> Value {
    let decision = report.decision;
    let envelope = &report.inferred.envelope;
    let source = |source: Source| source.header();
    let verdict = decision.checked.verdict();
    let mut out = json!({
        "file": report.name,
        "config": report.args.config.display().to_string(),
        "dry_run": dry_run(report.config),
        "action": decision.outcome.action.as_str(),
        "smtp_reply": decision.outcome.action.smtp_reply(),
        "quarantine_reason": match &decision.outcome.action {
            Action::Hold(reason) => Some(reason.as_str()),
            _ => None,
        },
        "wanted": decision.wanted(report.config).as_str(),
        "skipped": match &decision.checked {
            Checked::Skipped(skip) => Some(skip.reason()),
            _ => None,
        },
        "too_large": matches!(decision.checked, Checked::TooLarge { .. }),
        "authserv_id": report.context.authserv_id,
        "delete": deleted(decision),
        "authentication_results": header(decision).filter(|_| delivered(decision)),
        "envelope": {
            "client_ip": envelope.client_ip.map(|ip| ip.to_string()),
            "client_name": report.args.client_name,
            "helo": envelope.helo,
            "mail_from": envelope.mail_from,
            "auth_user": envelope.authenticated_user,
        },
        "inferred": {
            "client_ip": source(report.inferred.client_ip),
            "helo": source(report.inferred.helo),
            "mail_from": source(report.inferred.mail_from),
        },
        "notes": report.message.notes.iter().chain(&report.inferred.notes).collect::<Vec<_>>(),
        "verdict": verdict.map(|verdict| json!({
            "from": verdict.author_domains.as_ref().ok(),
            "spf": {
                "result": verdict.spf.result.as_str(),
                "domain": verdict.spf.domain,
            },
            "dkim": verdict.dkim.iter().map(|check| json!({
                "result": check.result.as_str(),
                "domain": check.domain,
                "selector": check.selector,
            })).collect::<Vec<_>>(),
            "dmarc": verdict.dmarc.as_str(),
            "policy_domain": verdict.decisive_evaluation().and_then(|e| e.policy_domain.as_deref()),
            "disposition": verdict.disposition.as_str(),
        })),
    });
    if report.args.explain {
        if let Some(object) = out.as_object_mut() {
            let trail: Vec<String> = verdict
                .map(|v| v.trail.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            object.insert("trail".to_string(), trail.into());
        }
    }
    out
}
