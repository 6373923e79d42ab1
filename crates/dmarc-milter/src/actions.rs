//! What the milter does at the end of a message, and doing it through the
//! milter protocol: delete forged Authentication-Results (last first),
//! insert ours at the top, then quarantine, reject, tempfail or accept.

use crate::{message::AUTH_RESULTS, Error};
use indymilter::{ContextActions, SetErrorReply, SmtpReply, Status};

/// The end of a message, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Indices (1-based, among Authentication-Results fields) to delete,
    /// highest first.
    pub delete: Vec<i32>,
    /// Our Authentication-Results value as the library formats it:
    /// starting with the authserv-id, folded with LF and a tab. `None`:
    /// no header is added (mail not checked, `add_header_to_skipped =
    /// false`).
    pub auth_results: Option<String>,
    /// What happens to the message.
    pub action: Action,
    /// Our ARC set (ARC-Seal first) to put on top of a delivered message,
    /// above our Authentication-Results; empty when we do not seal.
    pub arc_set: Vec<(String, String)>,
}

/// What happens to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver.
    Accept,
    /// Deliver to the hold queue (milter quarantine) with this reason.
    Hold(String),
    /// Refuse with 550 5.7.1 and this text.
    Reject(String),
    /// Refuse with 451 4.7.5 and this text.
    Tempfail(String),
}

/// The value to send for an inserted header field. The milter protocol
/// separates continuation lines with LF (the MTA writes its own line ends);
/// with the leading-space option the value is taken verbatim, so it must
/// start with the space that follows the colon.
pub(crate) fn header_value(value: &str, leading_space: bool) -> String {
    let value = value.replace("\r\n", "\n");
    if leading_space {
        format!(" {value}")
    } else {
        value
    }
}

impl Action {
    /// `accept`, `quarantine`, `reject` or `tempfail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Hold(_) => "quarantine",
            Action::Reject(_) => "reject",
            Action::Tempfail(_) => "tempfail",
        }
    }

    /// The SMTP reply of a refused message: `550 5.7.1 <text>` or `451
    /// 4.7.5 <text>`; `None` for a delivered one.
    pub fn smtp_reply(&self) -> Option<String> {
        match self {
            Action::Reject(text) => Some(format!("{REJECT_CODE} {REJECT_STATUS} {text}")),
            Action::Tempfail(text) => Some(format!("{TEMPFAIL_CODE} {TEMPFAIL_STATUS} {text}")),
            Action::Accept | Action::Hold(_) => None,
        }
    }
}

const REJECT_CODE: &str = "550";
const REJECT_STATUS: &str = "5.7.1";
const TEMPFAIL_CODE: &str = "451";
const TEMPFAIL_STATUS: &str = "4.7.5";

/// Carries out `outcome` and returns the status to send.
///
/// For a delivered message (accept, hold) the forged fields are deleted in
/// reverse index order before our field is inserted at index 0, then our
/// ARC set, when there is one, above it (RFC 8617 §5.1: the seal covers the
/// message with our Authentication-Results). A refused message is not
/// changed: the MTA discards it.
///
/// # Errors
///
/// [`Error::Action`] when the MTA connection fails or an action was not
/// negotiated; [`Error::Reply`] for reply text the protocol cannot carry.
pub(crate) async fn apply(
    outcome: &Outcome,
    actions: &(impl ContextActions + Sync),
    reply: &mut SmtpReply,
    leading_space: bool,
) -> Result<Status, Error> {
    match &outcome.action {
        Action::Reject(text) => {
            reply.set_error_reply(REJECT_CODE, Some(REJECT_STATUS), [text.as_str()])?;
            return Ok(Status::Reject);
        }
        Action::Tempfail(text) => {
            reply.set_error_reply(TEMPFAIL_CODE, Some(TEMPFAIL_STATUS), [text.as_str()])?;
            return Ok(Status::Tempfail);
        }
        Action::Accept | Action::Hold(_) => {}
    }
    for &index in &outcome.delete {
        actions
            .change_header(AUTH_RESULTS, index, None::<&str>)
            .await?;
    }
    if let Some(auth_results) = &outcome.auth_results {
        actions
            .insert_header(0, AUTH_RESULTS, header_value(auth_results, leading_space))
            .await?;
    }
    // Inserted at the top one after the other, last first: ARC-Seal ends
    // up first.
    for (name, value) in outcome.arc_set.iter().rev() {
        actions
            .insert_header(0, name.as_str(), header_value(value, leading_space))
            .await?;
    }
    if let Action::Hold(reason) = &outcome.action {
        actions.quarantine(reason.as_str()).await?;
    }
    Ok(Status::Accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_for_the_milter_protocol() {
        let library = "mx.example.net;\n\tspf=pass smtp.mailfrom=example.com;\n\tdkim=none";
        assert_eq!(
            header_value(library, true),
            " mx.example.net;\n\tspf=pass smtp.mailfrom=example.com;\n\tdkim=none"
        );
        assert_eq!(header_value(library, false), library);
        assert_eq!(header_value("mx;\r\n\tnone", false), "mx;\n\tnone");
    }
}
