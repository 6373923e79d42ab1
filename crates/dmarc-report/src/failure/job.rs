//! The facts of a failure report handed over at the end of a message,
//! and the reports built from them later, off the mail path.

use super::{AuthFailure, FailureConfig, FailureInput, FailureReport};
use crate::model::EvaluationRecord;

/// The facts of one message from which its failure reports are built
/// later, off the mail path: the milter fills one at the end of the
/// message (copying at most [`FailureConfig::max_size`] octets of the
/// message, see [`capped_sample`]) after every limit has admitted it, and
/// the outbox's thread calls [`FailureJob::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureJob {
    /// The message's evaluation record (with the policy that asked).
    pub record: EvaluationRecord,
    /// The reports to make ([`requested_failure_reports`](super::requested_failure_reports)).
    pub kinds: Vec<AuthFailure>,
    /// Where each goes: usable `mailto:` destinations in normal form
    /// ([`crate::destination`]), admitted by the rate limits.
    pub destinations: Vec<crate::model::ReportDestination>,
    /// The message's header section, at most `config.max_size` octets.
    pub headers: Vec<u8>,
    /// Its body, when the configuration includes it, within the same cap.
    pub body: Option<Vec<u8>>,
    /// The RFC 5321.MailFrom (`Original-Mail-From`).
    pub mail_from: Option<String>,
    /// The MTA's queue id (`Original-Envelope-Id`).
    pub envelope_id: Option<String>,
    /// The Authentication-Results value the verifier added.
    pub authentication_results: Option<String>,
    /// The SPF record evaluated, as RFC 6591 §3's `SPF-DNS` writes it
    /// (`txt : example.com : v=spf1 -all`).
    pub spf_dns: Option<String>,
    /// How the reports are written.
    pub config: FailureConfig,
    /// The From and envelope sender of the report mail.
    pub sender: String,
    /// The domain of the report mail's Message-ID.
    pub message_id_domain: String,
    /// When the reports are queued (their Date), seconds since the epoch.
    pub time: i64,
}

/// What [`FailureJob::build`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltReports {
    /// One message per report and destination, ready to be stored.
    pub messages: Vec<crate::store::OutgoingMessage>,
    /// Reports built (one per kind).
    pub built: usize,
    /// Reports whose sample was cut to fit the size cap.
    pub truncated: usize,
    /// Messages not made: larger than the destination's `!size` limit
    /// (RFC 7489 §6.2).
    pub too_large: usize,
}

impl FailureJob {
    /// Builds each report once (redaction, AFRF) and writes one mail per
    /// destination. Linear in the size of the job, itself capped.
    pub fn build(&self) -> BuiltReports {
        let mut out = BuiltReports::default();
        for &kind in &self.kinds {
            let input = FailureInput {
                body: self.body.as_deref(),
                mail_from: self.mail_from.as_deref(),
                envelope_id: self.envelope_id.as_deref(),
                authentication_results: self.authentication_results.as_deref(),
                spf_dns: self.spf_dns.as_deref(),
                ..FailureInput::new(&self.record, kind, &self.headers)
            };
            let report = FailureReport::build(&input, &self.config);
            out.built += 1;
            if report.truncated() {
                out.truncated += 1;
            }
            let policy_domain = self
                .record
                .policy
                .as_ref()
                .map_or_else(String::new, |policy| policy.domain.clone());
            for destination in &self.destinations {
                let Some(address) = crate::destination::usable_address(&destination.uri) else {
                    continue;
                };
                let payload =
                    report.report_mail(&self.sender, &address, self.time, &self.message_id_domain);
                // RFC 7489 §6.2: a report larger than the limit is not sent.
                if destination
                    .max_size
                    .is_some_and(|max| u64::try_from(payload.len()).unwrap_or(u64::MAX) > max)
                {
                    out.too_large += 1;
                    continue;
                }
                out.messages.push(crate::store::OutgoingMessage {
                    kind: crate::store::MessageKind::Failure,
                    policy_domain: policy_domain.clone(),
                    sender: self.sender.clone(),
                    recipient: address,
                    payload,
                    created: self.time,
                });
            }
        }
        out
    }

    /// An estimate of the memory the job holds, for queues bounded in
    /// bytes.
    pub fn memory_size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<FailureJob>()
            + self.record.memory_size()
            + self.kinds.len() * std::mem::size_of::<AuthFailure>()
            + self
                .destinations
                .iter()
                .map(|d| std::mem::size_of_val(d) + d.uri.len())
                .sum::<usize>()
            + self.headers.len()
            + self.body.as_ref().map_or(0, Vec::len)
            + opt(&self.mail_from)
            + opt(&self.envelope_id)
            + opt(&self.authentication_results)
            + self.config.authserv_id.len()
            + self.config.user_agent.len()
            + self.sender.len()
            + self.message_id_domain.len()
    }
}

/// At most `max` octets of `message` (header section, empty line, body):
/// its header section, and with `include_body` as much of its body as
/// still fits. This is all the work the end of a message does for a
/// failure report: one bounded copy.
pub fn capped_sample(message: &[u8], include_body: bool, max: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let header_end = message
        .windows(4)
        .take(max)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |at| at + 4);
    let headers = message
        .get(..header_end.min(max))
        .unwrap_or_default()
        .to_vec();
    let body = include_body.then(|| {
        let room = max.saturating_sub(headers.len());
        let body = message.get(header_end..).unwrap_or_default();
        body.get(..room.min(body.len()))
            .unwrap_or_default()
            .to_vec()
    });
    (headers, body)
}
