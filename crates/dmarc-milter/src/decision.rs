//! The decision at the end of a message: from what the MTA told us (the
//! client, the envelope, the header fields and body) to what the milter
//! does (the forged Authentication-Results to delete, our header, and
//! accept, hold, reject or tempfail).
//!
//! The daemon's sessions and `dmarc-check` both call [`decide`] (through
//! [`decide_saved`] for a saved message), so `dmarc-check` shows exactly
//! what the daemon does with the same configuration. Logging and report
//! recording stay with the daemon.

pub use crate::actions::{Action, Outcome};

use crate::{
    config::{Config, QuarantineAction},
    message::MessageBuffer,
};
use dmarc_verifier::{
    auth_results::{self, AuthResults},
    envelope::SavedMessage,
    message::author_domains,
    Disposition, DkimResult, DmarcResult, Envelope, Verdict, Verifier, VerifyOptions,
};

/// Why a message was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The client authenticated (`skip_authenticated`).
    Authenticated,
    /// The client is in `ignore_hosts` / `ignore_hosts_file`.
    IgnoredHost,
    /// Every Author Domain is in `ignore_from_domains`.
    IgnoredFrom,
}

impl Skip {
    /// The reason, as written in the header (`add_header_to_skipped`) and
    /// the log.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Authenticated => "authenticated submission",
            Skip::IgnoredHost => "ignored client",
            Skip::IgnoredFrom => "ignored From domain",
        }
    }

    /// A one-word token for metric labels: `authenticated`,
    /// `ignored_client` or `ignored_from`.
    pub fn label(self) -> &'static str {
        match self {
            Skip::Authenticated => "authenticated",
            Skip::IgnoredHost => "ignored_client",
            Skip::IgnoredFrom => "ignored_from",
        }
    }
}

/// The text of the DKIM and DMARC results of a message over
/// `max_message_size` whose signatures could not be verified.
pub const TOO_LARGE: &str = "message too large";

/// How the message was judged.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Not checked.
    Skipped(Skip),
    /// Verified: the verifier's verdict decides.
    Verified(Box<Verdict>),
    /// Over `max_message_size` with DKIM signatures that could not be
    /// verified (the body was not kept): accepted, each signature reported
    /// `dkim=permerror reason="message too large"`; DMARC passes only
    /// through aligned SPF (`spf_pass`), otherwise `dmarc=none`.
    TooLarge {
        /// The verdict on what was kept (SPF and the From domain).
        verdict: Box<Verdict>,
        /// Every Author Domain passed through aligned SPF.
        spf_pass: bool,
    },
    /// More Authentication-Results fields to delete than
    /// `max_forged_authentication_results`: refused (550) rather than
    /// answered with thousands of header edits (12,000 made Postfix's
    /// cleanup abort), not verified (issue 16 item 13).
    TooManyForged {
        /// The fields claiming our authserv-id.
        forged: usize,
        /// The limit.
        max: usize,
    },
}

impl Checked {
    /// The verdict, when the message was verified.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Checked::Skipped(_) | Checked::TooManyForged { .. } => None,
            Checked::Verified(verdict) | Checked::TooLarge { verdict, .. } => Some(verdict),
        }
    }
}

/// What the milter does with one message.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The header changes and the action.
    pub outcome: Outcome,
    /// How the message was judged.
    pub checked: Checked,
}

impl Decision {
    /// The disposition the policy asked for, before `dry_run` turned it
    /// into accept (`accept` for a skipped or oversized message).
    pub fn wanted(&self, config: &Config) -> Disposition {
        match &self.checked {
            Checked::Verified(verdict) => wanted_disposition(verdict, config),
            Checked::TooManyForged { .. } => Disposition::Reject,
            Checked::Skipped(_) | Checked::TooLarge { .. } => Disposition::Accept,
        }
    }
}

/// What the MTA told us about the session and the message, besides its
/// content.
#[derive(Debug, Clone)]
pub struct Context {
    /// The envelope (client address, HELO, MAIL FROM, recipients, the
    /// authenticated user).
    pub envelope: Envelope,
    /// The client's host name as the MTA gave it at CONNECT (Postfix: the
    /// verified name, or `unknown`).
    pub client_name: String,
    /// The authserv-id of this message (see [`Config::authserv_id`]).
    pub authserv_id: String,
    /// Whether the MTA offers the quarantine action (Postfix does).
    pub can_quarantine: bool,
}

/// Decides what to do with a buffered message: the skips first
/// (authenticated, ignored client, ignored From domain), else the verdict
/// of `verifier` turned into an action by the configuration
/// (`quarantine_action`, `reject_text`, `tempfail_text`). The forged
/// Authentication-Results found while the header was received are deleted
/// on every path that delivers the message.
pub(crate) async fn decide(
    config: &Config,
    verifier: &Verifier,
    context: &Context,
    buffer: &MessageBuffer,
) -> Decision {
    let forged = buffer.deletions_seen();
    let max = config.max_forged_authentication_results;
    if forged > max {
        return Decision {
            outcome: Outcome {
                delete: Vec::new(),
                auth_results: None,
                action: Action::Reject(format!(
                    "Too many Authentication-Results header fields claiming {} ({forged}, at most {max})",
                    context.authserv_id
                )),
                arc_set: Vec::new(),
            },
            checked: Checked::TooManyForged { forged, max },
        };
    }
    let delete = buffer.deletions();
    if let Some(skip) = skip(config, context, buffer) {
        let header = config
            .add_header_to_skipped
            .then(|| single_result(&context.authserv_id, "none", skip.reason()));
        return Decision {
            outcome: Outcome {
                delete,
                auth_results: header,
                action: Action::Accept,
                arc_set: Vec::new(),
            },
            checked: Checked::Skipped(skip),
        };
    }
    let options = VerifyOptions {
        authserv_id: Some(context.authserv_id.clone()),
        draw: None,
    };
    let verdict = verifier
        .verify_with(&context.envelope, &buffer.raw(), &options)
        .await;
    // A message over the cap whose DKIM signatures were not kept whole
    // cannot be judged on DKIM; an unsigned one is judged as usual (From
    // and SPF need no body).
    if buffer.is_truncated() && !(verdict.dkim.is_empty() && buffer.dkim_fields() == 0) {
        return too_large(context, delete, verdict);
    }
    let action = action_for(&verdict, config, context.can_quarantine);
    Decision {
        outcome: Outcome {
            delete,
            auth_results: Some(verdict.authentication_results.clone()),
            action,
            arc_set: Vec::new(),
        },
        checked: Checked::Verified(Box::new(verdict)),
    }
}

/// [`decide`] for a saved message: its header fields and body are given to
/// the milter's message buffer as the MTA would send them (the values
/// verbatim, with the leading space, as Postfix does), then decided.
pub async fn decide_saved(
    config: &Config,
    verifier: &Verifier,
    context: &Context,
    message: &SavedMessage,
) -> Decision {
    let mut buffer = MessageBuffer::new(config.max_message_size);
    for field in &message.fields {
        buffer.add_header(
            field.name.as_bytes(),
            &field.raw_value,
            true,
            &config.forged(&context.authserv_id),
        );
    }
    let body = message.body();
    if !body.is_empty() {
        buffer.add_body(body);
    }
    decide(config, verifier, context, &buffer).await
}

/// The first reason not to check the message, if any.
fn skip(config: &Config, context: &Context, buffer: &MessageBuffer) -> Option<Skip> {
    let envelope = &context.envelope;
    if config.skip_authenticated && envelope.authenticated_user.is_some() {
        Some(Skip::Authenticated)
    } else if config.is_ignored_client(envelope.client_ip, &context.client_name) {
        Some(Skip::IgnoredHost)
    } else if buffer.headers_complete()
        && author_domains(&buffer.author_fields(), config.verifier.max_author_domains)
            .is_ok_and(|domains| config.is_ignored_from(&domains))
    {
        Some(Skip::IgnoredFrom)
    } else {
        None
    }
}

/// The decision for a message over `max_message_size` with DKIM
/// signatures: see [`Checked::TooLarge`].
fn too_large(context: &Context, delete: Vec<i32>, verdict: Verdict) -> Decision {
    let mut ar = AuthResults::new(&context.authserv_id);
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
    Decision {
        outcome: Outcome {
            delete,
            auth_results: Some(ar.value()),
            action: Action::Accept,
            arc_set: Vec::new(),
        },
        checked: Checked::TooLarge {
            verdict: Box::new(verdict),
            spf_pass,
        },
    }
}

/// The action for a verdict's disposition.
fn action_for(verdict: &Verdict, config: &Config, can_quarantine: bool) -> Action {
    let domain = verdict
        .decisive_evaluation()
        .map(|e| e.author_domain.as_str());
    match verdict.disposition {
        Disposition::Accept => Action::Accept,
        Disposition::Quarantine => match config.quarantine_action {
            QuarantineAction::HeaderOnly => Action::Accept,
            QuarantineAction::Hold if can_quarantine => Action::Hold(format!(
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
fn single_result(authserv_id: &str, result: &str, reason: &str) -> String {
    let mut ar = AuthResults::new(authserv_id);
    ar.push(auth_results::dmarc_error_resinfo(result, reason));
    ar.value()
}

/// The disposition the policy asks for, before dry-run turned it into
/// accept.
pub(crate) fn wanted_disposition(verdict: &Verdict, config: &Config) -> Disposition {
    match (&verdict.author_domains, verdict.decisive_evaluation()) {
        (Err(_), _) => config.verifier.invalid_from_disposition,
        (Ok(_), Some(e)) => e.disposition,
        (Ok(_), None) => verdict.disposition,
    }
}
