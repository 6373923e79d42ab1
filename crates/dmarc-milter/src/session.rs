//! The state of one MTA connection and of the message in it, and the
//! decision at the end of each message.
//!
//! Every stage but MAIL and end-of-message is negotiated as no-reply: the
//! milter never acts there (acting early, e.g. accepting an ignored client
//! at CONNECT, would skip the removal of forged Authentication-Results).
//! Those stages only record what they see and cannot fail; the decision and
//! every action happen at the end of the message, inside the `message`
//! span that gives every line logged meanwhile (the decision trail
//! included) the message's queue id.

use crate::{
    actions::{self, Action, Outcome},
    config::Config,
    decision::{self, wanted_disposition, Checked, Context, Decision, TOO_LARGE},
    message::MessageBuffer,
    metrics::{MessageOutcome, Metrics},
    reporting::{self, MessageFacts},
    sealing,
    state::{Active, InflightGuard, Shared},
    Error,
};
use dmarc_report::model::Applied;
use dmarc_verifier::{
    message::author_domains, Disposition, DkimResult, DmarcResult, Enforcement, Envelope,
    OverrideReason, SpfResult, Verdict,
};
use indymilter::{
    Actions, ContextActions, MacroStage, Macros, NegotiateContext, ProtoOpts, SmtpReply,
    SocketInfo, Status,
};
use std::{
    collections::HashMap,
    ffi::{CStr, CString},
    fmt::Write as _,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tracing::Instrument as _;

/// The stages answered with no reply when the MTA allows it.
const NO_REPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HELO)
    .union(ProtoOpts::NOREPLY_RCPT)
    .union(ProtoOpts::NOREPLY_DATA)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY)
    .union(ProtoOpts::NOREPLY_UNKNOWN);

/// The stages we have no callback for.
const NO_STAGE: ProtoOpts = ProtoOpts::NO_DATA
    .union(ProtoOpts::NO_EOH)
    .union(ProtoOpts::NO_UNKNOWN);

/// The actions we use.
const ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE);

/// One message between MAIL and its end.
#[derive(Debug)]
struct Transaction {
    active: Arc<Active>,
    authserv_id: String,
    mail_from: String,
    recipients: Vec<String>,
    auth_user: Option<String>,
    buffer: MessageBuffer,
    _inflight: InflightGuard,
}

/// One MTA connection.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    opts: ProtoOpts,
    leading_space: bool,
    can_quarantine: bool,
    client_ip: Option<IpAddr>,
    client_name: String,
    helo: String,
    macro_j: Option<String>,
    transaction: Option<Transaction>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn get_macro(macros: &Macros, name: &CStr) -> Option<String> {
    macros
        .get(name)
        .map(|v| lossy(v.to_bytes()))
        .filter(|v| !v.is_empty())
}

/// `<user@example.com>` → `user@example.com`; `<>` → empty.
fn strip_brackets(arg: &CStr) -> String {
    let text = lossy(arg.to_bytes());
    let text = text.trim();
    text.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text)
        .to_string()
}

impl Session {
    /// Negotiation: asks for the actions, protocol options and macros we
    /// use, as far as the MTA offers them.
    pub(crate) fn negotiate(
        shared: Arc<Shared>,
        cx: &mut NegotiateContext<Session>,
        mta_actions: Actions,
        mta_opts: ProtoOpts,
    ) -> Session {
        let wanted_actions = ACTIONS & mta_actions;
        if !mta_actions.contains(Actions::ADD_HEADER | Actions::CHANGE_HEADER) {
            tracing::warn!(
                ?mta_actions,
                "the MTA offers no header actions: forged Authentication-Results cannot be removed"
            );
        }
        cx.requested_actions = wanted_actions;
        // indymilter proposes NO_* for the stages without callbacks; add
        // no-reply and the exact header values, within what the MTA offers.
        let opts = (cx.requested_opts | NO_STAGE | NO_REPLY | ProtoOpts::LEADING_SPACE)
            & !ProtoOpts::SKIP
            & mta_opts;
        cx.requested_opts = opts;
        let macros: &[(MacroStage, &str)] = &[
            (MacroStage::Connect, "j {daemon_name} {client_addr}"),
            (MacroStage::Mail, "{auth_authen}"),
            (MacroStage::Eom, "i"),
        ];
        cx.requested_macros = macros
            .iter()
            .filter_map(|(stage, names)| CString::new(*names).ok().map(|n| (*stage, n)))
            .collect::<HashMap<_, _>>();
        if let Some(metrics) = shared.metrics() {
            metrics.connection_opened();
        }
        Session {
            shared,
            opts,
            leading_space: opts.contains(ProtoOpts::LEADING_SPACE),
            can_quarantine: wanted_actions.contains(Actions::QUARANTINE),
            client_ip: None,
            client_name: String::new(),
            helo: String::new(),
            macro_j: None,
            transaction: None,
        }
    }

    /// The status for a stage we never act on: no reply when negotiated.
    fn quiet(&self, noreply: ProtoOpts) -> Status {
        if self.opts.contains(noreply) {
            Status::Noreply
        } else {
            Status::Continue
        }
    }

    /// CONNECT: the client address and the MTA's name.
    pub(crate) fn connect(
        &mut self,
        hostname: &CStr,
        socket: &SocketInfo,
        macros: &Macros,
    ) -> Status {
        self.transaction = None;
        self.client_name = lossy(hostname.to_bytes());
        self.client_ip = match socket {
            SocketInfo::Inet(addr) => Some(addr.ip()),
            _ => get_macro(macros, c"{client_addr}").and_then(|a| a.parse().ok()),
        };
        self.macro_j = get_macro(macros, c"j");
        tracing::debug!(
            client = %self.client_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
            name = %self.client_name,
            daemon = get_macro(macros, c"{daemon_name}").as_deref().unwrap_or(""),
            "connect"
        );
        self.quiet(ProtoOpts::NOREPLY_CONNECT)
    }

    /// HELO/EHLO.
    pub(crate) fn helo(&mut self, name: &CStr) -> Status {
        self.helo = lossy(name.to_bytes());
        self.quiet(ProtoOpts::NOREPLY_HELO)
    }

    /// MAIL: a message starts (refused with 451 while shutting down).
    pub(crate) fn mail(
        &mut self,
        args: &[CString],
        macros: &Macros,
        reply: &mut SmtpReply,
    ) -> Result<Status, Error> {
        self.transaction = None;
        if self.shared.is_draining() {
            use indymilter::SetErrorReply;
            reply.set_error_reply(
                "451",
                Some("4.3.2"),
                ["DMARC milter shutting down, try again later"],
            )?;
            return Ok(Status::Tempfail);
        }
        let active = self.shared.active();
        let authserv_id = active.authserv_id(self.macro_j.as_deref());
        let cap = active.config.max_message_size;
        self.transaction = Some(Transaction {
            authserv_id,
            mail_from: args.first().map(|a| strip_brackets(a)).unwrap_or_default(),
            recipients: Vec::new(),
            auth_user: get_macro(macros, c"{auth_authen}"),
            buffer: MessageBuffer::new(cap),
            _inflight: self.shared.start_message(),
            active,
        });
        Ok(Status::Continue)
    }

    /// RCPT.
    pub(crate) fn rcpt(&mut self, args: &[CString]) -> Status {
        if let (Some(t), Some(rcpt)) = (self.transaction.as_mut(), args.first()) {
            t.recipients.push(strip_brackets(rcpt));
        }
        self.quiet(ProtoOpts::NOREPLY_RCPT)
    }

    /// One header field.
    pub(crate) fn header(&mut self, name: &CStr, value: &CStr) -> Status {
        let leading_space = self.leading_space;
        if let Some(t) = self.transaction.as_mut() {
            t.buffer.add_header(
                name.to_bytes(),
                value.to_bytes(),
                leading_space,
                &t.active.config.forged(&t.authserv_id),
            );
        } else {
            tracing::warn!("the MTA sent a header outside a message");
        }
        self.quiet(ProtoOpts::NOREPLY_HEADER)
    }

    /// A body chunk.
    pub(crate) fn body(&mut self, chunk: &[u8]) -> Status {
        if let Some(t) = self.transaction.as_mut() {
            t.buffer.add_body(chunk);
        }
        self.quiet(ProtoOpts::NOREPLY_BODY)
    }

    /// End of message: decide, then act through the MTA connection.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] without a message; a verifier that cannot be
    /// built for our authserv-id; a failure to act.
    pub(crate) async fn eom(
        &mut self,
        macros: &Macros,
        actions: &(impl ContextActions + Sync),
        reply: &mut SmtpReply,
    ) -> Result<Status, Error> {
        let Some(t) = self.transaction.take() else {
            return Err(Error::Protocol("end of message without a message"));
        };
        let queue_id = get_macro(macros, c"i").unwrap_or_else(|| "NOQUEUE".to_string());
        // error level: the span exists whenever any line is logged.
        let span = tracing::error_span!("message", queue_id = %queue_id);
        async {
            let outcome = self.decide(&t, &queue_id).await?;
            let status = actions::apply(&outcome, actions, reply, self.leading_space).await?;
            if status == Status::Accept && !outcome.delete.is_empty() {
                if let Some(metrics) = self.shared.metrics() {
                    metrics.forged_removed(outcome.delete.len());
                }
                tracing::debug!(
                    deleted = ?outcome.delete,
                    "deleted incoming Authentication-Results claiming {}",
                    t.authserv_id
                );
            }
            drop(t);
            Ok(status)
        }
        .instrument(span)
        .await
    }

    /// Abort or end of connection: forget the message.
    pub(crate) fn abort(&mut self) {
        self.transaction = None;
    }

    /// The connection ends (it may be reused after QUIT_NC).
    pub(crate) fn close(&mut self) {
        self.transaction = None;
        self.client_ip = None;
        self.client_name.clear();
        self.helo.clear();
        self.macro_j = None;
    }

    fn envelope(&self, t: &Transaction) -> Envelope {
        Envelope {
            client_ip: self.client_ip,
            helo: self.helo.clone(),
            mail_from: t.mail_from.clone(),
            recipients: t.recipients.clone(),
            authenticated_user: t.auth_user.clone(),
        }
    }

    /// Decides (the same code `dmarc-check` runs), records the verdict
    /// for reports and logs the verdict line.
    async fn decide(&self, t: &Transaction, queue_id: &str) -> Result<Outcome, Error> {
        let config = &t.active.config;
        let client = self
            .client_ip
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let context = Context {
            envelope: self.envelope(t),
            client_name: self.client_name.clone(),
            authserv_id: t.authserv_id.clone(),
            can_quarantine: self.can_quarantine,
        };
        let verifier = t.active.verifier();
        let started = Instant::now();
        let decision = decision::decide(config, &verifier, &context, &t.buffer).await;
        if let Some(metrics) = self.shared.metrics() {
            record_metrics(metrics, &decision, config, started.elapsed());
        }
        // What is recorded is what is done with the message.
        match &decision.checked {
            Checked::Verified(verdict) => {
                let applied = reporting::applied(verdict, &decision.outcome.action, config);
                self.report(t, verdict, &context.envelope, queue_id, &applied);
            }
            Checked::TooLarge { verdict, spf_pass } => {
                // Accepted, DKIM unverified, DMARC none unless aligned SPF
                // passed (issue 16 item 9).
                let (applied_verdict, applied) =
                    reporting::too_large(verdict, *spf_pass, TOO_LARGE);
                self.report(t, &applied_verdict, &context.envelope, queue_id, &applied);
            }
            Checked::Skipped(_) | Checked::TooManyForged { .. } => {}
        }
        match &decision.checked {
            Checked::TooManyForged { forged, max } => {
                self.shared
                    .counters
                    .forged_auth_results_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    client = %client,
                    forged,
                    max_forged_authentication_results = max,
                    disposition = "reject",
                    "too many Authentication-Results fields to remove: message refused"
                );
            }
            Checked::Skipped(skip) => {
                let from = match author_domains(
                    &t.buffer.author_fields(),
                    config.verifier.max_author_domains,
                ) {
                    Ok(domains) => domains.join(","),
                    Err(error) => error.kind().to_string(),
                };
                tracing::info!(
                    client = %client,
                    from = %from,
                    skipped = skip.reason(),
                    disposition = "accept",
                    "not checked"
                );
            }
            Checked::Verified(verdict) => {
                if t.buffer.is_truncated() {
                    warn_too_large(t, &client);
                }
                log_verdict(&client, verdict, &decision.outcome.action, config);
            }
            Checked::TooLarge { verdict, spf_pass } => {
                warn_too_large(t, &client);
                tracing::info!(
                    client = %client,
                    from = %from_domains(verdict),
                    spf = %verdict.spf.result.as_str(),
                    dkim = %"permerror",
                    dmarc = %if *spf_pass { "pass" } else { "none" },
                    disposition = %"accept",
                    reason = %TOO_LARGE,
                    "verdict"
                );
            }
        }
        let mut outcome = decision.outcome;
        if let Checked::Verified(verdict) = &decision.checked {
            outcome.arc_set = sealing::seal(
                t.active.sealer.as_deref(),
                &verifier,
                &t.buffer.raw(),
                &outcome.delete,
                verdict,
                &outcome.action,
                queue_id,
            )
            .await;
        }
        Ok(outcome)
    }

    /// Hands the verdict and what was done to reporting, with the report
    /// settings in force for this message.
    fn report(
        &self,
        t: &Transaction,
        verdict: &Verdict,
        envelope: &Envelope,
        queue_id: &str,
        applied: &Applied,
    ) {
        let (Some(reporting), Some(settings)) =
            (&self.shared.reporting, &t.active.config.reporting)
        else {
            return;
        };
        let raw = t.buffer.raw();
        reporting.record(
            settings,
            verdict,
            envelope,
            &MessageFacts {
                raw: &raw,
                queue_id,
            },
            applied,
        );
    }
}

/// The warning for a message over `max_message_size`.
fn warn_too_large(t: &Transaction, client: &str) {
    tracing::warn!(
        client = %client,
        size = t.buffer.size(),
        max_message_size = t.active.config.max_message_size,
        "message larger than max_message_size: DKIM not verified; set max_message_size to at least Postfix's message_size_limit"
    );
}

fn from_domains(verdict: &Verdict) -> String {
    match &verdict.author_domains {
        Ok(domains) => domains.join(","),
        Err(error) => error.kind().to_string(),
    }
}

/// The one info line per message (the `message` span adds its queue id):
/// the client, the From domains, each result and the disposition; in dry
/// run what the policy would have done; and for each temperror, why
/// (`dmarc_reason="timeout: _dmarc.example.com (...)"`).
fn log_verdict(client: &str, verdict: &Verdict, action: &Action, config: &Config) {
    let mut dkim = String::new();
    for (i, check) in verdict.dkim.iter().enumerate() {
        if i > 0 {
            dkim.push(',');
        }
        let _ = write!(dkim, "{}", check.result.as_str());
        if !check.domain.is_empty() {
            let _ = write!(dkim, "/{}", check.domain);
        }
    }
    if dkim.is_empty() {
        dkim.push_str("none");
    }
    let disposition = match action {
        Action::Accept => "accept",
        Action::Hold(_) => "quarantine",
        Action::Reject(_) => "reject",
        Action::Tempfail(_) => "tempfail",
    };
    let reasons = TempErrorReasons::of(verdict);
    let dry_run = config.verifier.enforcement == Enforcement::Monitor;
    let would = wanted_disposition(verdict, config);
    if dry_run && would != Disposition::Accept {
        tracing::info!(
            client = %client,
            from = %from_domains(verdict),
            spf = verdict.spf.result.as_str(),
            spf_reason = reasons.spf.as_deref(),
            dkim = %dkim,
            dkim_reason = reasons.dkim.as_deref(),
            dmarc = verdict.dmarc.as_str(),
            dmarc_reason = reasons.dmarc.as_deref(),
            disposition = disposition,
            would = would.as_str(),
            arc = verdict.arc.result.as_str(),
            override_reason = verdict.override_reason.map(|r| r.as_str()),
            override_comment = verdict.override_comment.as_deref(),
            "verdict (dry run)"
        );
    } else {
        let quarantine_header_only =
            verdict.disposition == Disposition::Quarantine && matches!(action, Action::Accept);
        tracing::info!(
            client = %client,
            from = %from_domains(verdict),
            spf = verdict.spf.result.as_str(),
            spf_reason = reasons.spf.as_deref(),
            dkim = %dkim,
            dkim_reason = reasons.dkim.as_deref(),
            dmarc = verdict.dmarc.as_str(),
            dmarc_reason = reasons.dmarc.as_deref(),
            disposition = if quarantine_header_only { "quarantine-header-only" } else { disposition },
            arc = verdict.arc.result.as_str(),
            override_reason = verdict.override_reason.map(|r| r.as_str()),
            override_comment = verdict.override_comment.as_deref(),
            "verdict"
        );
    }
}

/// Why each temperror of a verdict happened, for the verdict line.
#[derive(Debug, Default, PartialEq, Eq)]
struct TempErrorReasons {
    spf: Option<String>,
    dkim: Option<String>,
    dmarc: Option<String>,
}

impl TempErrorReasons {
    fn of(verdict: &Verdict) -> TempErrorReasons {
        let spf = (verdict.spf.result == SpfResult::TempError).then(|| {
            verdict
                .spf
                .reason
                .clone()
                .unwrap_or_else(|| format!("DNS error checking {}", verdict.spf.domain))
        });
        let dkim = verdict
            .dkim
            .iter()
            .filter(|check| check.result == DkimResult::TempError)
            .map(|check| {
                let reason = check.reason.as_deref().unwrap_or("DNS error");
                format!("{}._domainkey.{}: {reason}", check.selector, check.domain)
            })
            .reduce(|a, b| format!("{a}; {b}"));
        // The evaluation that decided a temperror, else the first one.
        let evaluation = verdict
            .decisive_evaluation()
            .filter(|e| e.result == DmarcResult::TempError)
            .or_else(|| {
                verdict
                    .evaluations
                    .iter()
                    .find(|e| e.result == DmarcResult::TempError)
            });
        let dmarc = evaluation.map(|e| match &e.dns_failure {
            Some(failure) => format!(
                "{}: {} ({})",
                failure.outcome.as_str(),
                failure.name,
                failure.reason
            ),
            None => e.reason.clone().unwrap_or_else(|| "DNS error".to_string()),
        });
        TempErrorReasons { spf, dkim, dmarc }
    }
}

/// Counts one decided message.
fn record_metrics(metrics: &Metrics, decision: &Decision, config: &Config, elapsed: Duration) {
    let dry_run = config.verifier.enforcement == Enforcement::Monitor;
    match &decision.checked {
        Checked::Skipped(skip) => metrics.skipped(*skip),
        Checked::TooManyForged { .. } => metrics.message(&MessageOutcome {
            dmarc: DmarcResult::None,
            disposition: Disposition::Reject,
            override_reason: Some(OverrideReason::LocalPolicy),
            // Refused whatever dry_run says.
            dry_run: false,
        }),
        Checked::Verified(verdict) => {
            // In dry run the verdict's override is "local_policy" (monitor
            // mode): the reason the policy itself was overridden is the
            // decisive evaluation's.
            let override_reason = match verdict.decisive_evaluation() {
                Some(evaluation) if dry_run => evaluation.override_reason,
                _ => verdict.override_reason,
            };
            metrics.message(&MessageOutcome {
                dmarc: verdict.dmarc,
                disposition: wanted_disposition(verdict, config),
                override_reason,
                dry_run,
            });
            metrics.spf(verdict.spf.result);
            if verdict.dkim.is_empty() {
                metrics.dkim(None);
            }
            for check in &verdict.dkim {
                metrics.dkim(Some(check.result));
            }
            metrics.shadow_differences(verdict.shadow.len());
            metrics.verification(elapsed);
        }
        Checked::TooLarge { verdict, spf_pass } => {
            metrics.message(&MessageOutcome {
                dmarc: if *spf_pass {
                    DmarcResult::Pass
                } else {
                    DmarcResult::None
                },
                disposition: Disposition::Accept,
                override_reason: Some(OverrideReason::LocalPolicy),
                dry_run,
            });
            metrics.spf(verdict.spf.result);
            for _ in 0..verdict.dkim.len().max(1) {
                metrics.dkim(Some(DkimResult::PermError));
            }
            metrics.verification(elapsed);
        }
    }
}

impl Drop for Session {
    /// The MTA connection ended (indymilter drops the session with it).
    fn drop(&mut self) {
        if let Some(metrics) = self.shared.metrics() {
            metrics.connection_closed();
        }
    }
}
