//! The state of one MTA connection and of the message in it, and the
//! decision at the end of each message.
//!
//! Every stage but MAIL and end-of-message is negotiated as no-reply: the
//! milter never acts there (acting early, e.g. accepting an ignored client
//! at CONNECT, would skip the removal of forged Authentication-Results).
//! Those stages only record what they see and cannot fail; the decision and
//! every action happen at the end of the message.

use crate::{
    actions::{self, Action, Outcome},
    config::{Config, QuarantineAction},
    message::MessageBuffer,
    reporting::MessageFacts,
    sealing,
    state::{Active, InflightGuard, Shared},
    Error,
};
use dmarc_verifier::{
    auth_results::{self, AuthResults},
    message::author_domains,
    Disposition, DkimResult, DmarcResult, Enforcement, Envelope, Verdict, Verifier, VerifyOptions,
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
};

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

/// The reason given in our header for a message the policy was not
/// checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Authenticated,
    IgnoredHost,
    IgnoredFrom,
}

impl Skip {
    fn reason(self) -> &'static str {
        match self {
            Skip::Authenticated => "authenticated submission",
            Skip::IgnoredHost => "ignored client",
            Skip::IgnoredFrom => "ignored From domain",
        }
    }
}

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
            client = ?self.client_ip,
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
            let remove_all = t.active.config.remove_all_authentication_results;
            t.buffer.add_header(
                name.to_bytes(),
                value.to_bytes(),
                leading_space,
                &t.authserv_id,
                remove_all,
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
        let outcome = self.decide(&t, &queue_id).await?;
        let status = actions::apply(&outcome, actions, reply, self.leading_space).await?;
        if status == Status::Accept && !outcome.delete.is_empty() {
            tracing::debug!(
                queue_id = %queue_id,
                deleted = ?outcome.delete,
                "deleted incoming Authentication-Results claiming {}",
                t.authserv_id
            );
        }
        drop(t);
        Ok(status)
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

    async fn decide(&self, t: &Transaction, queue_id: &str) -> Result<Outcome, Error> {
        let config = &t.active.config;
        let delete = t.buffer.deletions();
        let client = self
            .client_ip
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());

        let skip = if config.skip_authenticated && t.auth_user.is_some() {
            Some(Skip::Authenticated)
        } else if self.client_ip.is_some_and(|ip| config.is_ignored_host(ip)) {
            Some(Skip::IgnoredHost)
        } else if t.buffer.headers_complete()
            && author_domains(
                &t.buffer.author_fields(),
                config.verifier.max_author_domains,
            )
            .is_ok_and(|domains| config.is_ignored_from(&domains))
        {
            Some(Skip::IgnoredFrom)
        } else {
            None
        };
        if let Some(skip) = skip {
            let from = match author_domains(
                &t.buffer.author_fields(),
                config.verifier.max_author_domains,
            ) {
                Ok(domains) => domains.join(","),
                Err(error) => error.kind().to_string(),
            };
            tracing::info!(
                queue_id = %queue_id,
                client = %client,
                from = %from,
                skipped = %skip.reason(),
                disposition = "accept",
                "not checked"
            );
            return Ok(Outcome {
                delete,
                auth_results: single_result(&t.authserv_id, "none", skip.reason()),
                action: Action::Accept,
                arc_set: Vec::new(),
            });
        }

        let verifier = t.active.verifier();
        let envelope = self.envelope(t);
        if t.buffer.is_truncated() {
            return Ok(self
                .decide_truncated(t, &verifier, &envelope, queue_id, &client, delete)
                .await);
        }
        let verdict = verifier
            .verify_with(&envelope, &t.buffer.raw(), &verify_options(t))
            .await;
        if let Some(reporting) = &self.shared.reporting {
            let raw = t.buffer.raw();
            reporting.record(
                &verdict,
                &envelope,
                &MessageFacts {
                    raw: &raw,
                    queue_id,
                },
            );
        }
        let action = self.action_for(&verdict, config);
        log_verdict(queue_id, &client, &verdict, &action, config);
        let arc_set = sealing::seal(
            t.active.sealer.as_deref(),
            &verifier,
            &t.buffer.raw(),
            &delete,
            &verdict,
            &action,
            queue_id,
        )
        .await;
        Ok(Outcome {
            delete,
            auth_results: verdict.authentication_results.clone(),
            action,
            arc_set,
        })
    }

    /// A message over `max_message_size`: its body was not kept, so DKIM
    /// signatures cannot be verified. SPF and DMARC are checked on what was
    /// kept (the whole header, or, when the header section alone was over
    /// the cap, its From field). An unsigned message gets its ordinary
    /// verdict: From and SPF need no body. A signed one gets
    /// `dkim=permerror reason="message too large"` for each signature and
    /// is accepted; DMARC passes only through aligned SPF, otherwise the
    /// result is `dmarc=none reason="message too large"`.
    async fn decide_truncated(
        &self,
        t: &Transaction,
        verifier: &Verifier,
        envelope: &Envelope,
        queue_id: &str,
        client: &str,
        delete: Vec<i32>,
    ) -> Outcome {
        const TOO_LARGE: &str = "message too large";
        let config = &t.active.config;
        tracing::warn!(
            queue_id = %queue_id,
            client = %client,
            size = t.buffer.size(),
            max_message_size = config.max_message_size,
            "message larger than max_message_size: DKIM not verified; set max_message_size to at least Postfix's message_size_limit"
        );
        let verdict = verifier
            .verify_with(envelope, &t.buffer.raw(), &verify_options(t))
            .await;
        if let Some(reporting) = &self.shared.reporting {
            let raw = t.buffer.raw();
            reporting.record(
                &verdict,
                envelope,
                &MessageFacts {
                    raw: &raw,
                    queue_id,
                },
            );
        }
        if verdict.dkim.is_empty() && t.buffer.dkim_fields() == 0 {
            let action = self.action_for(&verdict, config);
            log_verdict(queue_id, client, &verdict, &action, config);
            return Outcome {
                delete,
                auth_results: verdict.authentication_results.clone(),
                action,
                arc_set: Vec::new(),
            };
        }
        let mut ar = AuthResults::new(&t.authserv_id);
        ar.push(auth_results::spf_resinfo(&verdict.spf));
        for check in &verdict.dkim {
            let mut check = check.clone();
            check.result = DkimResult::PermError;
            check.reason = Some(TOO_LARGE.to_string());
            ar.push(auth_results::dkim_resinfo(&check));
        }
        if verdict.dkim.is_empty() {
            // The signatures were in the part of the header not kept.
            ar.push(format!("dkim=permerror reason=\"{TOO_LARGE}\""));
        }
        let spf_pass = !verdict.evaluations.is_empty()
            && verdict
                .evaluations
                .iter()
                .all(|e| e.result == DmarcResult::Pass && e.spf_aligned);
        if spf_pass {
            for evaluation in &verdict.evaluations {
                ar.push(auth_results::dmarc_resinfo(evaluation));
            }
        } else {
            ar.push(auth_results::dmarc_error_resinfo("none", TOO_LARGE));
        }
        tracing::info!(
            queue_id = %queue_id,
            client = %client,
            from = %from_domains(&verdict),
            spf = %verdict.spf.result.as_str(),
            dkim = %"permerror",
            dmarc = %if spf_pass { "pass" } else { "none" },
            disposition = %"accept",
            reason = %TOO_LARGE,
            "verdict"
        );
        Outcome {
            delete,
            auth_results: ar.value(),
            action: Action::Accept,
            arc_set: Vec::new(),
        }
    }

    /// The action for a verdict's disposition.
    fn action_for(&self, verdict: &Verdict, config: &Config) -> Action {
        let domain = verdict
            .decisive_evaluation()
            .map(|e| e.author_domain.as_str());
        match verdict.disposition {
            Disposition::Accept => Action::Accept,
            Disposition::Quarantine => match config.quarantine_action {
                QuarantineAction::HeaderOnly => Action::Accept,
                QuarantineAction::Hold if self.can_quarantine => Action::Hold(format!(
                    "DMARC policy of {} quarantines this message",
                    domain.unwrap_or("the From domain")
                )),
                QuarantineAction::Hold => {
                    tracing::warn!("the MTA does not offer the quarantine action: message delivered with its header only");
                    Action::Accept
                }
            },
            Disposition::Reject => Action::Reject(reply_text(&config.reject_text, verdict)),
            Disposition::Tempfail => Action::Tempfail(reply_text(&config.tempfail_text, verdict)),
        }
    }
}

/// `reject_text` / `tempfail_text` with `{domain}` filled in; for a message
/// without a usable From, the reason instead.
fn reply_text(template: &str, verdict: &Verdict) -> String {
    match (&verdict.author_domains, verdict.decisive_evaluation()) {
        (Err(error), _) => format!("DMARC: unusable From header ({})", error.kind()),
        (Ok(_), Some(e)) => template.replace("{domain}", &e.author_domain),
        (Ok(_), None) => template.replace("{domain}", "the From domain"),
    }
}

/// `authserv-id; dmarc=<result> reason="<reason>"`.
/// This message's authserv-id goes to the verifier with the message.
fn verify_options(t: &Transaction) -> VerifyOptions {
    VerifyOptions {
        authserv_id: Some(t.authserv_id.clone()),
        draw: None,
    }
}

fn single_result(authserv_id: &str, result: &str, reason: &str) -> String {
    let mut ar = AuthResults::new(authserv_id);
    ar.push(auth_results::dmarc_error_resinfo(result, reason));
    ar.value()
}

fn from_domains(verdict: &Verdict) -> String {
    match &verdict.author_domains {
        Ok(domains) => domains.join(","),
        Err(error) => error.kind().to_string(),
    }
}

/// The disposition the policy asks for, before dry-run turned it into
/// accept.
fn wanted_disposition(verdict: &Verdict, config: &Config) -> Disposition {
    match (&verdict.author_domains, verdict.decisive_evaluation()) {
        (Err(_), _) => config.verifier.invalid_from_disposition,
        (Ok(_), Some(e)) => e.disposition,
        (Ok(_), None) => verdict.disposition,
    }
}

/// The one info line per message.
fn log_verdict(queue_id: &str, client: &str, verdict: &Verdict, action: &Action, config: &Config) {
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
    let dry_run = config.verifier.enforcement == Enforcement::Monitor;
    let would = wanted_disposition(verdict, config);
    if dry_run && would != Disposition::Accept {
        tracing::info!(
            queue_id = %queue_id,
            client = %client,
            from = %from_domains(verdict),
            spf = %verdict.spf.result.as_str(),
            dkim = %dkim,
            dmarc = %verdict.dmarc.as_str(),
            disposition = %disposition,
            would = %would.as_str(),
            arc = %verdict.arc.result.as_str(),
            override_reason = verdict.override_reason.map(|r| tracing::field::display(r.as_str())),
            override_comment = verdict.override_comment.as_deref(),
            "verdict (dry run)"
        );
    } else {
        let quarantine_header_only =
            verdict.disposition == Disposition::Quarantine && matches!(action, Action::Accept);
        tracing::info!(
            queue_id = %queue_id,
            client = %client,
            from = %from_domains(verdict),
            spf = %verdict.spf.result.as_str(),
            dkim = %dkim,
            dmarc = %verdict.dmarc.as_str(),
            disposition = %if quarantine_header_only { "quarantine-header-only" } else { disposition },
            arc = %verdict.arc.result.as_str(),
            override_reason = verdict.override_reason.map(|r| tracing::field::display(r.as_str())),
            override_comment = verdict.override_comment.as_deref(),
            "verdict"
        );
    }
}
