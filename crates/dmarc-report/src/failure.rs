//! RFC 9991 failure reports (AFRF, RFC 6591): when `fo` asks for one, and
//! the report message with the original message's body redacted.
//!
//! # When
//!
//! [`requested_failure_reports`] reads the record's `fo` (RFC 9989 §4.7):
//!
//! | `fo` | report                          | when                                                    |
//! |------|---------------------------------|---------------------------------------------------------|
//! | `0`  | DMARC ([`AuthFailure::Dmarc`])  | no mechanism produced an aligned pass (DKIM and SPF)    |
//! | `1`  | DMARC ([`AuthFailure::Dmarc`])  | some mechanism did not produce an aligned pass          |
//! | `d`  | DKIM ([`AuthFailure::Signature`]) | a DKIM signature failed evaluation, aligned or not    |
//! | `s`  | SPF ([`AuthFailure::Spf`])      | SPF failed, aligned or not                              |
//!
//! A signature "failed evaluation" when its result is anything but `pass`
//! or `none`; SPF "failed" when its result is `fail`, `softfail`, `policy`,
//! `temperror` or `permerror` (not `pass`, `neutral` or `none`). Nothing is
//! requested for a record with `psd=y` (RFC 9991 §2), without `ruf`
//! (RFC 9989 §4.7: `fo` "MUST be ignored if a ruf tag is not also
//! specified"), or whose DMARC evaluation did not conclude (`pass` or
//! `fail`); an absent or entirely unknown `fo` reads as `0`.
//!
//! # What
//!
//! [`FailureReport`] writes a `multipart/report; report-type=feedback-report`
//! message (RFC 5965 §2, RFC 6591): a short text part, the
//! `message/feedback-report` part, and the original message. The feedback
//! fields are those RFC 5965 §3.1 requires (`Feedback-Type: auth-failure`,
//! `User-Agent`, `Version: 1`), those RFC 6591 §3 requires for every
//! authentication failure report (`Auth-Failure`, `Authentication-Results`), RFC 9991 §4's
//! `Identity-Alignment` for a DMARC report, `DKIM-Domain`, `DKIM-Identity`
//! and `DKIM-Selector` for a failed DKIM signature of an aligned identifier
//! (RFC 9991 §4; for a DKIM report, the first failed signature), `SPF-DNS`
//! when the caller has the SPF record text and SPF is what failed, and the
//! optional `Original-Envelope-Id`, `Original-Mail-From`, `Arrival-Date`,
//! `Source-IP`, `Reported-Domain` and `Delivery-Result`. `Original-Rcpt-To`
//! is never written (it names the recipient).
//!
//! # Redaction (RFC 9991 §7, RFC 6590)
//!
//! By default ([`FailureConfig::new`]) the body is not included: the third
//! part is `text/rfc822-headers` with the header section only. With
//! `include_body` it is `message/rfc822`, with `http` defanged to `hxxp`
//! (RFC 9991 §7.3); a body that cannot travel as 7bit or 8bit (lines over
//! 998 octets) is dropped and the headers alone are sent. With
//! `redact_local_parts` (the default) every address local part that an
//! RFC 5322 parser finds (see [`crate::redact`]: quoted local parts,
//! comments, non-ASCII, VERP tails, addresses in display names and
//! encoded words) is replaced by `redactedN`, the same local part by the
//! same token within one report so the Domain Owner can still tell the
//! addresses apart: in the sample and in the feedback fields
//! (`Original-Mail-From`, `Authentication-Results`), except in the fields
//! that carry message identifiers (`Message-ID`, `In-Reply-To`,
//! `References`, `Content-ID`, `Resent-Message-ID`), which the Domain
//! Owner needs to find the message.
//!
//! # Size
//!
//! A report is at most [`FailureConfig::max_size`] octets (64 KiB by
//! default) whatever the message: RFC 9991 reports are about headers, and
//! the sample is cut, at a line boundary, to fit (the text part says so).
//! The caller should hand over no more of the message than that (the
//! milter copies at most `max_size` octets), which also bounds the cost
//! of redaction, itself linear.
//!
//! # Hostile input
//!
//! Every value written into a header field or a feedback field goes through
//! one function that turns control characters (CR and LF included) into
//! spaces and non-ASCII into `?`, and is cut at 255 characters: no value can
//! end its field or add one. The original header section is re-written with
//! CRLF line endings; it travels in 7bit when it is printable ASCII in lines
//! of at most 998 octets, in base64 otherwise; the MIME boundary is chosen
//! so that it occurs in no part.

use crate::aggregate::{mail, related_domains};
use crate::model::{
    ActionDisposition, AlignedWord, DkimAuth, DkimWord, DmarcWord, EvaluationRecord, SpfAuth,
    SpfScopeWord, SpfWord,
};
use crate::redact::{mode_of_field, Mode, Redactor};
use dmarc_verifier::auth_results::{quote_value, AuthResults};
use std::fmt::Write as _;

mod job;
pub use job::{capped_sample, BuiltReports, FailureJob};

/// The kind of failure a report is about (the RFC 6591 §3 `Auth-Failure`
/// field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthFailure {
    /// `dmarc` (RFC 9991 §4): no aligned pass (`fo=0` or `fo=1`).
    Dmarc,
    /// `signature`: a DKIM signature failed (`fo=d`, RFC 6651).
    Signature,
    /// `spf`: SPF failed (`fo=s`, RFC 6652).
    Spf,
}

impl AuthFailure {
    /// The `Auth-Failure` word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Dmarc => "dmarc",
            AuthFailure::Signature => "signature",
            AuthFailure::Spf => "spf",
        }
    }
}

/// The `fo` options of a DMARC Policy Record (RFC 9989 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureOptions {
    /// `0`: report when all mechanisms fail to produce an aligned pass.
    pub all_fail: bool,
    /// `1`: report when any mechanism fails to produce an aligned pass.
    pub any_fail: bool,
    /// `d`: report a DKIM signature that failed evaluation.
    pub dkim: bool,
    /// `s`: report an SPF failure.
    pub spf: bool,
}

/// The authentication facts `fo` is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFacts<'a> {
    /// Every DKIM signature's result.
    pub dkim: &'a [DkimAuth],
    /// The SPF result, if any.
    pub spf: Option<&'a SpfAuth>,
    /// Whether an aligned DKIM identifier passed.
    pub dkim_aligned: AlignedWord,
    /// Whether an aligned SPF identifier passed.
    pub spf_aligned: AlignedWord,
}

impl<'a> AuthFacts<'a> {
    /// The facts recorded for one message.
    pub fn of(record: &'a EvaluationRecord) -> AuthFacts<'a> {
        AuthFacts {
            dkim: &record.dkim,
            spf: record.spf.as_ref(),
            dkim_aligned: record.dkim_aligned,
            spf_aligned: record.spf_aligned,
        }
    }
}

impl FailureOptions {
    /// Parses a colon-separated `fo` value (`"0"`, `"1:d"`, `"d:s"`).
    /// Values are trimmed and compared without regard to case; unknown
    /// values are ignored; when no value is known the default `0` applies.
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_report::failure::FailureOptions;
    /// let fo = FailureOptions::parse("1:d");
    /// assert!(fo.any_fail && fo.dkim && !fo.all_fail && !fo.spf);
    /// assert!(FailureOptions::parse("").all_fail);
    /// assert!(FailureOptions::parse("x").all_fail);
    /// ```
    pub fn parse(fo: &str) -> FailureOptions {
        let mut options = FailureOptions::default();
        for value in fo.split(':') {
            match value.trim().to_ascii_lowercase().as_str() {
                "0" => options.all_fail = true,
                "1" => options.any_fail = true,
                "d" => options.dkim = true,
                "s" => options.spf = true,
                _ => {}
            }
        }
        if options == FailureOptions::default() {
            options.all_fail = true;
        }
        options
    }

    /// The reports these options request for a message with `facts`, in
    /// the order DMARC, DKIM, SPF, each at most once.
    pub fn requests(&self, facts: &AuthFacts<'_>) -> Vec<AuthFailure> {
        let dkim_failed = facts.dkim_aligned == AlignedWord::Fail;
        let spf_failed = facts.spf_aligned == AlignedWord::Fail;
        let mut requests = Vec::new();
        // RFC 9989 §4.7: 0 = all mechanisms fail to produce an aligned
        // pass, 1 = any mechanism does.
        if (self.all_fail && dkim_failed && spf_failed)
            || (self.any_fail && (dkim_failed || spf_failed))
        {
            requests.push(AuthFailure::Dmarc);
        }
        // d: "a signature that failed evaluation, regardless of its
        // alignment".
        if self.dkim && facts.dkim.iter().any(dkim_failed_evaluation) {
            requests.push(AuthFailure::Signature);
        }
        // s: "failed SPF evaluation, regardless of its alignment".
        if self.spf && facts.spf.is_some_and(spf_failed_evaluation) {
            requests.push(AuthFailure::Spf);
        }
        requests
    }
}

fn dkim_failed_evaluation(dkim: &DkimAuth) -> bool {
    !matches!(dkim.result, DkimWord::Pass | DkimWord::None)
}

fn spf_failed_evaluation(spf: &SpfAuth) -> bool {
    !matches!(spf.result, SpfWord::Pass | SpfWord::Neutral | SpfWord::None)
}

/// The failure reports the record's policy requests for this message (see
/// the module documentation), empty when none.
pub fn requested_failure_reports(record: &EvaluationRecord) -> Vec<AuthFailure> {
    let Some(policy) = &record.policy else {
        return Vec::new();
    };
    // RFC 9991 §2: "Report generators MUST NOT consider ruf tags in DMARC
    // Policy Records having a psd=y tag".
    if policy.psd || policy.ruf.is_empty() {
        return Vec::new();
    }
    if !matches!(record.dmarc, DmarcWord::Pass | DmarcWord::Fail) {
        return Vec::new();
    }
    FailureOptions::parse(&policy.fo).requests(&AuthFacts::of(record))
}

/// Whether the record's policy requests any failure report for this
/// message ([`requested_failure_reports`] is not empty).
pub fn wants_failure_report(record: &EvaluationRecord) -> bool {
    !requested_failure_reports(record).is_empty()
}

/// How failure reports are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureConfig {
    /// The authserv-id of an `Authentication-Results` field built from the
    /// record (when the caller does not pass the one it added).
    pub authserv_id: String,
    /// `User-Agent` (RFC 5965 §3.1), by default `dmarc-milter/<version>`.
    pub user_agent: String,
    /// Include the message body (`message/rfc822`) instead of the header
    /// section alone (`text/rfc822-headers`). Default false.
    pub include_body: bool,
    /// Replace address local-parts (RFC 6590). Default true.
    pub redact_local_parts: bool,
    /// The largest report mail, in octets ([`DEFAULT_MAX_REPORT_SIZE`]):
    /// the sample is cut to fit.
    pub max_size: usize,
}

/// The default [`FailureConfig::max_size`]: 64 KiB.
pub const DEFAULT_MAX_REPORT_SIZE: usize = 64 * 1024;

/// What a report mail holds besides its text part, feedback fields,
/// Subject and sample: the other header fields (From and To of at most
/// [`MAX_FIELD_VALUE`] characters each, Date, Message-ID, MIME), the part
/// headers and the boundaries. A test checks it is enough.
const MAIL_OVERHEAD: usize = 2048;

impl FailureConfig {
    /// The defaults: headers only, local-parts redacted, 64 KiB at most.
    pub fn new(authserv_id: impl Into<String>) -> FailureConfig {
        FailureConfig {
            authserv_id: authserv_id.into(),
            user_agent: concat!("dmarc-milter/", env!("CARGO_PKG_VERSION")).to_string(),
            include_body: false,
            redact_local_parts: true,
            max_size: DEFAULT_MAX_REPORT_SIZE,
        }
    }
}

/// What a failure report is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureInput<'a> {
    /// The message's evaluation record (with the policy that asked).
    pub record: &'a EvaluationRecord,
    /// Which report (one of [`requested_failure_reports`]).
    pub auth_failure: AuthFailure,
    /// The original message's header section, as received (CRLF or LF;
    /// anything after the first empty line is ignored).
    pub headers: &'a [u8],
    /// The original body, used only with [`FailureConfig::include_body`].
    pub body: Option<&'a [u8]>,
    /// The RFC 5321.MailFrom address (`Original-Mail-From`), when known.
    pub mail_from: Option<&'a str>,
    /// The MTA's queue id (`Original-Envelope-Id`), when known.
    pub envelope_id: Option<&'a str>,
    /// The Authentication-Results value the verifier added (authserv-id
    /// first, folded with LF and a tab); without it one is built from the
    /// record.
    pub authentication_results: Option<&'a str>,
    /// The SPF record retrieved (`SPF-DNS`, RFC 6591 §3, e.g.
    /// `txt : example.com : v=spf1 -all`), when known.
    pub spf_dns: Option<&'a str>,
}

impl<'a> FailureInput<'a> {
    /// An input with only the record, the report kind and the headers.
    pub fn new(
        record: &'a EvaluationRecord,
        auth_failure: AuthFailure,
        headers: &'a [u8],
    ) -> FailureInput<'a> {
        FailureInput {
            record,
            auth_failure,
            headers,
            body: None,
            mail_from: None,
            envelope_id: None,
            authentication_results: None,
            spf_dns: None,
        }
    }
}

/// The third part of the report: the original message or its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleKind {
    /// `text/rfc822-headers`: the header section only.
    Headers,
    /// `message/rfc822`: the whole message.
    Message,
}

/// A failure report, ready to be mailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    auth_failure: AuthFailure,
    feedback: String,
    sample: Vec<u8>,
    sample_kind: SampleKind,
    subject: String,
    text: String,
    time: i64,
    truncated: bool,
}

/// The longest value written into one header or feedback field.
const MAX_FIELD_VALUE: usize = 255;

/// The longest Authentication-Results written into the feedback part
/// (cut at a line boundary).
const MAX_AUTH_RESULTS: usize = 4096;

/// Fields whose `@` is part of a message identifier, not an address.
const IDENTIFIER_FIELDS: &[&str] = &[
    "message-id",
    "in-reply-to",
    "references",
    "content-id",
    "resent-message-id",
];

impl FailureReport {
    /// Builds the report for `input` (see the module documentation for the
    /// fields written and the redaction applied).
    pub fn build(input: &FailureInput<'_>, config: &FailureConfig) -> FailureReport {
        let record = input.record;
        let mut redactor = Redactor::new(config.redact_local_parts);
        let feedback = feedback_fields(input, config, &mut redactor);

        let headers = header_section(input.headers, &mut redactor);
        let mut notes = Vec::new();
        let (mut sample, sample_kind) = match (config.include_body, input.body) {
            (true, Some(body)) => {
                let body = body_lines(body, &mut redactor);
                if body.iter().any(|line| line.len() > 998) {
                    notes.push("The body was left out: it has lines over 998 octets.");
                    (join_lines(&headers), SampleKind::Headers)
                } else {
                    let mut message = join_lines(&headers);
                    message.extend_from_slice(b"\r\n");
                    message.extend_from_slice(&join_lines(&body));
                    (message, SampleKind::Message)
                }
            }
            _ => (join_lines(&headers), SampleKind::Headers),
        };

        let what = match input.auth_failure {
            AuthFailure::Dmarc => "DMARC",
            AuthFailure::Signature => "DKIM",
            AuthFailure::Spf => "SPF",
        };
        let domain = mail::dot_atom(&record.header_from);
        let source_ip = record.source_ip.to_canonical();
        let subject = format!("{what} failure report for {domain} from {source_ip}");
        let mut text = format!(
            "This is an authentication failure report ({what}, RFC 9991) for an email\r\n\
             message received from IP {source_ip} on {}.\r\n\
             The author domain is {domain}.\r\n",
            mail::rfc5322_date(record.time)
        );
        match sample_kind {
            SampleKind::Headers => {
                text.push_str("Only the header section of the message is included.\r\n")
            }
            SampleKind::Message => text.push_str("The message is included.\r\n"),
        }
        if config.redact_local_parts {
            text.push_str("Address local-parts are redacted (RFC 6590).\r\n");
        }

        // The size cap: what the sample may take once encoded.
        const CUT_NOTE: &str = "The sample was cut at a line boundary to keep this report small.";
        let overhead = text.len()
            + notes.iter().map(|note| note.len() + 2).sum::<usize>()
            + CUT_NOTE.len()
            + 2
            + feedback.len()
            + subject.len()
            + MAIL_OVERHEAD;
        let budget = config.max_size.saturating_sub(overhead);
        let truncated = cut_to_fit(&mut sample, sample_kind, budget);
        if truncated {
            notes.push(CUT_NOTE);
        }
        for note in notes {
            let _ = write!(text, "{note}\r\n");
        }
        FailureReport {
            auth_failure: input.auth_failure,
            feedback,
            sample,
            sample_kind,
            subject,
            text,
            time: record.time,
            truncated,
        }
    }

    /// Whether the sample was cut to keep the report within
    /// [`FailureConfig::max_size`].
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kind of failure reported.
    pub fn auth_failure(&self) -> AuthFailure {
        self.auth_failure
    }

    /// The `message/feedback-report` part's content (fields, CRLF).
    pub fn feedback_report(&self) -> &str {
        &self.feedback
    }

    /// The third part's content: the redacted header section, or the
    /// message.
    pub fn sample(&self) -> &[u8] {
        &self.sample
    }

    /// Whether the third part is the header section or the message.
    pub fn sample_kind(&self) -> SampleKind {
        self.sample_kind
    }

    /// The Subject: `DMARC failure report for example.com from 192.0.2.1`.
    /// RFC 9991 prescribes none; this one carries neither the original
    /// subject nor an address.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The complete report message (RFC 5322, CRLF line endings) from
    /// `from` to `to`, dated `date` (seconds since the epoch), with a
    /// Message-ID in `message_id_domain`. Control characters in `from` and
    /// `to` are replaced with spaces.
    pub fn report_mail(&self, from: &str, to: &str, date: i64, message_id_domain: &str) -> Vec<u8> {
        let (sample_type, encoding) = match self.sample_kind {
            SampleKind::Headers if is_7bit(&self.sample) => ("text/rfc822-headers", "7bit"),
            SampleKind::Headers => ("text/rfc822-headers", "base64"),
            SampleKind::Message if is_7bit(&self.sample) => ("message/rfc822", "7bit"),
            // RFC 2046 §5.2.1: message/rfc822 is 7bit, 8bit or binary only.
            SampleKind::Message => ("message/rfc822", "8bit"),
        };
        let sample_hash = mail::fnv64(&self.sample);
        let boundary = (0u32..)
            .map(|attempt| format!("=_dmarc_failure_{sample_hash:016x}_{attempt}"))
            .find(|boundary| {
                let needle = boundary.as_bytes();
                !contains(&self.sample, needle)
                    && !contains(self.feedback.as_bytes(), needle)
                    && !contains(self.text.as_bytes(), needle)
            })
            .unwrap_or_default();
        let message_id = format!(
            "<{}.{:016x}.{:08x}@{}>",
            self.time,
            sample_hash,
            mail::fnv64(to.as_bytes()) & 0xffff_ffff,
            mail::dot_atom(&field_value(message_id_domain))
        );

        let mut out = String::new();
        mail::header(&mut out, "From", &field_value(from));
        mail::header(&mut out, "To", &field_value(to));
        mail::header(&mut out, "Subject", &self.subject);
        mail::header(&mut out, "Date", &mail::rfc5322_date(date));
        mail::header(&mut out, "Message-ID", &message_id);
        mail::header(&mut out, "MIME-Version", "1.0");
        mail::header(&mut out, "Auto-Submitted", "auto-generated");
        // RFC 5965 §2 (used by RFC 6591): multipart/report, feedback-report.
        mail::header(
            &mut out,
            "Content-Type",
            &format!("multipart/report; report-type=feedback-report;\r\n boundary=\"{boundary}\""),
        );
        out.push_str("\r\nThis is a MIME-formatted message.\r\n");

        let _ = write!(out, "\r\n--{boundary}\r\n");
        mail::text_part(&mut out, &self.text);

        let _ = write!(out, "\r\n--{boundary}\r\n");
        mail::header(&mut out, "Content-Type", "message/feedback-report");
        mail::header(&mut out, "Content-Transfer-Encoding", "7bit");
        out.push_str("\r\n");
        out.push_str(&self.feedback);

        let _ = write!(out, "\r\n--{boundary}\r\n");
        mail::header(&mut out, "Content-Type", sample_type);
        mail::header(&mut out, "Content-Transfer-Encoding", encoding);
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if encoding == "base64" {
            bytes.extend_from_slice(mail::base64_lines(&self.sample).as_bytes());
        } else {
            bytes.extend_from_slice(&self.sample);
        }
        bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        bytes
    }
}

/// The `message/feedback-report` fields, each ended with CRLF; the
/// addresses in them redacted by `redactor`.
fn feedback_fields(
    input: &FailureInput<'_>,
    config: &FailureConfig,
    redactor: &mut Redactor,
) -> String {
    let record = input.record;
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = write!(out, "{name}: {value}\r\n");
    };
    // RFC 5965 §3.1 required fields, RFC 6591 §3 Auth-Failure.
    field("Feedback-Type", "auth-failure");
    field("Version", "1");
    field("User-Agent", &field_value(&config.user_agent));
    field("Auth-Failure", input.auth_failure.as_str());
    let authentication_results = match input.authentication_results {
        Some(value) => folded(value),
        None => folded(&authentication_results(record, &config.authserv_id)),
    };
    let authentication_results = String::from_utf8_lossy(
        &redactor.redact(authentication_results.as_bytes(), Mode::TagValue),
    )
    .into_owned();
    field("Authentication-Results", &authentication_results);
    if input.auth_failure == AuthFailure::Dmarc {
        // RFC 9991 §4: the mechanisms that failed to authenticate an
        // aligned identity, or "none".
        let mut failed = Vec::new();
        if record.dkim_aligned == AlignedWord::Fail {
            failed.push("dkim");
        }
        if record.spf_aligned == AlignedWord::Fail {
            failed.push("spf");
        }
        let alignment = if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        };
        field("Identity-Alignment", &alignment);
    }
    // RFC 9991 §4: DKIM-Domain, -Identity and -Selector "REQUIRED for DKIM
    // failures of an aligned identifier"; RFC 6591 §3 for DKIM reports.
    let failed_signature = match input.auth_failure {
        AuthFailure::Dmarc if record.dkim_aligned == AlignedWord::Fail => record
            .dkim
            .iter()
            .filter(|dkim| dkim_failed_evaluation(dkim))
            .find(|dkim| related_domains(&dkim.domain, &record.header_from)),
        AuthFailure::Signature => record.dkim.iter().find(|dkim| dkim_failed_evaluation(dkim)),
        _ => None,
    };
    if let Some(dkim) = failed_signature {
        field("DKIM-Domain", &field_value(&dkim.domain));
        // The record keeps no i=; its default is "@" and d= (RFC 6376 §3.5).
        field("DKIM-Identity", &field_value(&format!("@{}", dkim.domain)));
        field("DKIM-Selector", &field_value(&dkim.selector));
    }
    // RFC 9991 §4: SPF-DNS "REQUIRED for SPF failure of an aligned
    // identifier"; RFC 6591 §3 for SPF reports. Only the caller has the
    // record text.
    let spf_reported = match (input.auth_failure, &record.spf) {
        (AuthFailure::Spf, Some(_)) => true,
        (AuthFailure::Dmarc, Some(spf)) => {
            record.spf_aligned == AlignedWord::Fail
                && spf_failed_evaluation(spf)
                && related_domains(&spf.domain, &record.header_from)
        }
        _ => false,
    };
    if let (true, Some(spf_dns)) = (spf_reported, input.spf_dns) {
        field("SPF-DNS", &field_value(spf_dns));
    }
    if let Some(envelope_id) = input.envelope_id {
        field("Original-Envelope-Id", &field_value(envelope_id));
    }
    if let Some(mail_from) = input.mail_from {
        // An RFC 5321 reverse-path: its local part is redacted like any
        // other address (VERP tail included).
        let mail_from = field_value(mail_from);
        let mail_from = mail_from.trim_start_matches('<').trim_end_matches('>');
        let mail_from = redactor.redact(mail_from.as_bytes(), Mode::Text);
        field(
            "Original-Mail-From",
            &format!("<{}>", String::from_utf8_lossy(&mail_from)),
        );
    }
    field("Arrival-Date", &mail::rfc5322_date(record.time));
    field("Source-IP", &record.source_ip.to_canonical().to_string());
    field("Reported-Domain", &field_value(&record.header_from));
    // RFC 6591 §3 Delivery-Result.
    let delivery = match record.disposition {
        ActionDisposition::None | ActionDisposition::Pass => "delivered",
        ActionDisposition::Quarantine => "spam",
        ActionDisposition::Reject => "reject",
    };
    field("Delivery-Result", delivery);
    out
}

/// An Authentication-Results value built from the record when the caller
/// has not passed the one the verifier added: dmarc, spf and every dkim
/// result, values quoted by the verifier's own quoting.
fn authentication_results(record: &EvaluationRecord, authserv_id: &str) -> String {
    let mut results = AuthResults::new(authserv_id);
    results.push(format!(
        "dmarc={} header.from={}",
        record.dmarc.as_str(),
        quote_value(&field_value(&record.header_from))
    ));
    if let Some(spf) = &record.spf {
        let property = match spf.scope {
            SpfScopeWord::MailFrom => "smtp.mailfrom",
            SpfScopeWord::Helo => "smtp.helo",
        };
        results.push(format!(
            "spf={} {property}={}",
            spf.result.as_str(),
            quote_value(&field_value(&spf.domain))
        ));
    }
    if record.dkim.is_empty() {
        results.push("dkim=none".to_string());
    }
    for dkim in &record.dkim {
        results.push(format!(
            "dkim={} header.d={} header.s={}",
            dkim.result.as_str(),
            quote_value(&field_value(&dkim.domain)),
            quote_value(&field_value(&dkim.selector))
        ));
    }
    results.value()
}

/// A value for one field: header-safe and at most [`MAX_FIELD_VALUE`]
/// characters.
fn field_value(value: &str) -> String {
    mail::header_text(value)
        .chars()
        .take(MAX_FIELD_VALUE)
        .collect()
}

/// A multi-line value (an Authentication-Results) folded with CRLF and a
/// tab at its own line breaks; every line made header-safe, so the value
/// can only ever continue its field; at most [`MAX_AUTH_RESULTS`] octets,
/// cut at a line boundary.
fn folded(value: &str) -> String {
    let mut out = String::new();
    for line in value.split(['\r', '\n']) {
        let line = mail::header_text(line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            if out.len() + 3 + line.len() > MAX_AUTH_RESULTS {
                break;
            }
            out.push_str("\r\n\t");
        }
        // header_text made it ASCII: any byte index is a boundary.
        out.push_str(line.get(..MAX_AUTH_RESULTS.min(line.len())).unwrap_or(line));
    }
    out
}

/// Splits `bytes` into lines at LF, CRLF or a lone CR, without the line
/// endings.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(at) => {
                let (line, tail) = rest.split_at(at);
                lines.push(line);
                rest = match tail {
                    [b'\r', b'\n', tail @ ..] => tail,
                    [_, tail @ ..] => tail,
                    [] => &[],
                };
            }
            None => {
                lines.push(rest);
                rest = &[];
            }
        }
    }
    lines
}

/// The header section's lines up to the first empty line, redacted field
/// by field (a field with its continuation lines is read as one text, so a
/// quoted string or comment folded over lines is still one token).
fn header_section(headers: &[u8], redactor: &mut Redactor) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<&[u8]>> = Vec::new();
    for line in lines(headers) {
        if line.is_empty() {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        match fields.last_mut() {
            Some(field) if continuation => field.push(line),
            _ => fields.push(vec![line]),
        }
    }
    let mut out = Vec::new();
    for field in fields {
        let name = field
            .first()
            .and_then(|line| line.split(|&b| b == b':').next())
            .unwrap_or_default();
        let lower = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
        let joined = field.join(&b"\r\n"[..]);
        let text = if IDENTIFIER_FIELDS.contains(&lower.as_str()) {
            joined
        } else {
            redactor.redact(&joined, mode_of_field(name))
        };
        out.extend(lines(&text).into_iter().map(<[u8]>::to_vec));
    }
    out
}

/// The body's lines, redacted and with `http` defanged (RFC 9991 §7.3).
fn body_lines(body: &[u8], redactor: &mut Redactor) -> Vec<Vec<u8>> {
    lines(body)
        .into_iter()
        .map(|line| defang(&redactor.redact(line, Mode::Text)))
        .collect()
}

/// Cuts `sample` at a line boundary so that, encoded as it will be sent,
/// it takes at most `budget` octets; true when it was cut.
fn cut_to_fit(sample: &mut Vec<u8>, kind: SampleKind, budget: usize) -> bool {
    let base64 = kind == SampleKind::Headers && !is_7bit(sample);
    let encoded = if base64 {
        base64_size(sample.len())
    } else {
        sample.len()
    };
    if encoded <= budget {
        return false;
    }
    // Base64 takes 78 octets (76 and CRLF) per 57: the raw room.
    let room = if base64 { budget / 78 * 57 } else { budget };
    let cut = sample
        .get(..room.min(sample.len()))
        .and_then(last_line_end)
        .unwrap_or(0);
    sample.truncate(cut);
    true
}

/// The size of `len` octets in base64 lines of 76 characters and CRLF.
fn base64_size(len: usize) -> usize {
    let chars = len.div_ceil(3) * 4;
    chars + chars.div_ceil(76) * 2
}

/// The end (after the CRLF) of the last complete line of `bytes`.
fn last_line_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map(|at| at + 2)
}

/// `http` (any case) written `hxxp`, so links are not clickable.
fn defang(line: &[u8]) -> Vec<u8> {
    let mut out = line.to_vec();
    let mut at = 0;
    while let Some(found) = out.get(at..).and_then(|rest| {
        rest.windows(4)
            .position(|w| w.eq_ignore_ascii_case(b"http"))
    }) {
        let start = at + found;
        if let Some(slice) = out.get_mut(start + 1..start + 3) {
            slice.copy_from_slice(b"xx");
        }
        at = start + 4;
    }
    out
}

fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Printable ASCII (and tab) in lines of at most 998 octets.
fn is_7bit(bytes: &[u8]) -> bool {
    lines(bytes).iter().all(|line| {
        line.len() <= 998
            && line
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_header_fields_are_redacted_as_one_text() {
        let mut redactor = Redactor::new(true);
        let headers = b"From: \"John\r\n Smith\"@example.com\r\nMessage-ID: <john@example.com>\r\nDKIM-Signature: v=1; d=example.com;\r\n\ti=bob@example.com\r\n\r\nbody";
        let out = header_section(headers, &mut redactor);
        assert_eq!(
            out,
            vec![
                b"From: redacted1@example.com".to_vec(),
                b"Message-ID: <john@example.com>".to_vec(),
                b"DKIM-Signature: v=1; d=example.com;".to_vec(),
                b"\ti=redacted2@example.com".to_vec(),
            ]
        );
    }

    #[test]
    fn a_sample_is_cut_at_a_line_boundary_to_fit() {
        let mut sample = b"aaaa\r\nbbbb\r\ncccc\r\n".to_vec();
        assert!(!cut_to_fit(&mut sample, SampleKind::Headers, 18));
        assert!(cut_to_fit(&mut sample, SampleKind::Headers, 15));
        assert_eq!(sample, b"aaaa\r\nbbbb\r\n");
        let mut binary = vec![0xffu8; 1000];
        binary.extend_from_slice(b"\r\n");
        assert!(cut_to_fit(&mut binary, SampleKind::Headers, 500));
        assert!(binary.is_empty());
        assert_eq!(base64_size(57), 78);
        assert_eq!(base64_size(58), 84);
    }

    #[test]
    fn lines_split_at_every_line_ending() {
        assert_eq!(
            lines(b"a\r\nb\nc\rd\r\n\r\ne"),
            vec![&b"a"[..], b"b", b"c", b"d", b"", b"e"]
        );
    }

    #[test]
    fn defang_rewrites_every_http() {
        assert_eq!(
            defang(b"see HTTPS://x and http://y"),
            b"see HxxPS://x and hxxp://y".to_vec()
        );
    }

    #[test]
    fn folded_values_only_continue_their_field() {
        assert_eq!(
            folded("mx.example;\n\tdmarc=fail\r\nX-Injected: yes"),
            "mx.example;\r\n\tdmarc=fail\r\n\tX-Injected: yes"
        );
    }
}
