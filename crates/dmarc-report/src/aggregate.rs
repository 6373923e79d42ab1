//! RFC 9990 aggregate reports: rows grouped from evaluation records, the
//! XML document, its file name, and the report mail.
//!
//! One [`AggregateReport`] covers one DMARC Policy Domain and one reporting
//! period (RFC 9990 §3.1: "A separate report MUST be generated for each DMARC
//! Policy Domain"). Everything it writes is deterministic: the same records
//! give the same rows in the same order, the same `report_id`, the same XML
//! and the same gzip bytes, so a report generated twice (a re-send, or two
//! MX hosts sharing one store) is byte for byte the same report.
//!
//! A report is written as its rows come ([`ReportWriter`]): the XML goes
//! straight into the gzip encoder, so making a report from the store
//! (which groups and sorts the rows itself) holds one row at a time and
//! the compressed report, whatever the number of messages.
//! [`AggregateReport::build`] groups records in memory first, for callers
//! that have them.
//!
//! # Decisions
//!
//! - **`report_id`** (RFC 9990 §3.5.1 `ridfmt`):
//!   `<policy-domain>!<begin>!<end>@<reporter-domain>`, with `end` the last
//!   second of the period (see below), e.g.
//!   `example.com!1721001600!1721087999@mx.example.net`. It is unique among
//!   the reports one reporter sends about one domain (a period is reported
//!   once) and stable: re-generating the report gives the same id, which is
//!   what lets a Report Consumer spot a duplicate. Both domains are reduced
//!   to `dot-atom-text` (lower case; any character other than a letter, a
//!   digit, `-` or `_` becomes `-`; empty labels are dropped), so a hostile
//!   name cannot break the Subject or the Message-ID. The same id is used in
//!   the XML, the Subject (`Report-ID: <...>`) and as the basis of the
//!   Message-ID (§3.5.1: they "MUST be identical when used"). Several hosts
//!   that keep separate stores must therefore use distinct reporter domains.
//! - **`date_range`**: `begin` is the first second of the period and `end`
//!   its last second (`end - 1` for the half-open period `[begin, end)` the
//!   store uses), as in RFC 9990's sample report (`302832000`..`302918399`
//!   for one UTC day), so consecutive reports do not overlap (§3.1.1: periods
//!   "SHOULD NOT overlap"). The file name carries the same two numbers.
//! - **Escaping**: every text value goes through one function that escapes
//!   `&`, `<`, `>`, `"` and `'`, and replaces every control character (C0
//!   including TAB, CR and LF; DEL; C1) and the non-characters U+FFFE and
//!   U+FFFF with U+FFFD REPLACEMENT CHARACTER. XML 1.0 forbids most of them;
//!   the rest (TAB, CR, LF, C1) have no place in a domain, a selector or a
//!   comment and would be silently altered by XML parsers. Replacing rather
//!   than dropping keeps the tampering visible to the Domain Owner.
//! - **RFC 7489 format** ([`ReportFormat::Rfc7489`], RFC 7489 Appendix C,
//!   the schema most report consumers were written against): no namespace,
//!   no `version`, no `generator`; `policy_published` carries `pct` and
//!   always `sp` and `fo`, never `np`, `testing` or `discovery_method`; the
//!   disposition `pass` does not exist there and is written `none`; the
//!   override reason `policy_test_mode` does not exist there and is written
//!   `other` with the comment `policy_test_mode`, and a record sampled out by
//!   `pct` is written `sampled_out`; `envelope_from` is required (written
//!   empty when unknown); the SPF `scope` is required and may be `helo`; an
//!   SPF result is required (a row without one gets `none` for the envelope
//!   domain); `human_result` exists only for DKIM, and the SPF result
//!   `policy` does not exist (written `neutral`).

use crate::model::{
    ActionDisposition, AlignedWord, DkimAuth, EvaluationRecord, OverrideWord, PolicyOverride,
    PublishedPolicy, SpfAuth, SpfScopeWord, SpfWord,
};
use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

/// The XML namespace of RFC 9990 reports (RFC 9990 §6.1).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// At most this many DKIM results are reported per row, best first
/// (RFC 9990 §3.1.3: "no more than 100 signatures for a given row").
pub const MAX_DKIM_PER_ROW: usize = 100;

/// Who sends the report: the Mail Receiver's identity in `report_metadata`,
/// the file name and the Subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterInfo {
    /// `org_name`: the name of the Reporting Organization.
    pub org_name: String,
    /// The Mail Receiver's domain: the `receiver` of the file name, the
    /// `Submitter:` of the Subject and the right-hand side of `report_id`
    /// (RFC 9990 §3.5.2).
    pub domain: String,
    /// `email`: where to contact the Reporting Organization.
    pub email: String,
    /// `extra_contact_info`, when configured.
    pub extra_contact_info: Option<String>,
    /// `generator` (RFC 9990 only), by default `dmarc-milter <version>`.
    pub generator: String,
}

impl ReporterInfo {
    /// A reporter with no extra contact information and the default
    /// generator ([`ReporterInfo::default_generator`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_report::aggregate::ReporterInfo;
    /// let reporter = ReporterInfo::new("Example Mail", "mx.example.net", "dmarc@example.net");
    /// assert!(reporter.generator.starts_with("dmarc-milter "));
    /// ```
    pub fn new(
        org_name: impl Into<String>,
        domain: impl Into<String>,
        email: impl Into<String>,
    ) -> ReporterInfo {
        ReporterInfo {
            org_name: org_name.into(),
            domain: domain.into(),
            email: email.into(),
            extra_contact_info: None,
            generator: ReporterInfo::default_generator(),
        }
    }

    /// `dmarc-milter <version of this crate>`.
    pub fn default_generator() -> String {
        concat!("dmarc-milter ", env!("CARGO_PKG_VERSION")).to_string()
    }
}

/// Which XML schema the report follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReportFormat {
    /// RFC 9990 (namespace `urn:ietf:params:xml:ns:dmarc-2.0`), the default.
    #[default]
    Rfc9990,
    /// RFC 7489 Appendix C, for consumers that cannot read RFC 9990 yet;
    /// see the module documentation for what differs.
    Rfc7489,
}

/// One report row: the facts that messages must share to be counted
/// together (RFC 9990 §3.1.1: "One record per (IP, result, authentication
/// identifiers) tuples").
///
/// Domains are lower case. The DKIM results are in report order: passing
/// signatures of the Author Domain first (RFC 9990 §3.1.3), at most
/// [`MAX_DKIM_PER_ROW`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    /// The SMTP client's address (an IPv4-mapped IPv6 address is reported
    /// as the IPv4 address).
    pub source_ip: IpAddr,
    /// `header_from`.
    pub header_from: String,
    /// `envelope_from`, when known.
    pub envelope_from: Option<String>,
    /// `envelope_to`, when known.
    pub envelope_to: Option<String>,
    /// `policy_evaluated/disposition`.
    pub disposition: ActionDisposition,
    /// `policy_evaluated/dkim`.
    pub dkim_aligned: AlignedWord,
    /// `policy_evaluated/spf`.
    pub spf_aligned: AlignedWord,
    /// `policy_evaluated/reason`, in recorded order.
    pub reasons: Vec<PolicyOverride>,
    /// `auth_results/spf`.
    pub spf: Option<SpfAuth>,
    /// `auth_results/dkim`.
    pub dkim: Vec<DkimAuth>,
}

/// An aggregate report for one policy domain and one period, ready to be
/// mailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateReport {
    reporter: ReporterInfo,
    policy: PublishedPolicy,
    begin: i64,
    end: i64,
    report_id: String,
    format: ReportFormat,
    /// The XML compressed.
    gzip: Vec<u8>,
    message_count: u64,
    row_count: u64,
    /// The rows, for a report built in memory ([`AggregateReport::build`]).
    rows: Vec<(Row, u64)>,
}

/// Writes one report as its rows come: the header and `policy_published`
/// at once, then each row, everything into the gzip encoder.
///
/// Rows must come grouped (each distinct [`Row`] once) and in a fixed
/// order for the report to be deterministic; the store's
/// [`report_rows`](crate::store::Store::report_rows) gives them so.
pub struct ReportWriter {
    reporter: ReporterInfo,
    policy: PublishedPolicy,
    begin: i64,
    end: i64,
    report_id: String,
    format: ReportFormat,
    xml: XmlWriter,
    encoder: flate2::write::GzEncoder<Vec<u8>>,
    message_count: u64,
    row_count: u64,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("report_id", &self.report_id)
            .field("rows", &self.row_count)
            .finish_non_exhaustive()
    }
}

impl ReportWriter {
    /// Starts the report of `policy` (its latest published policy, RFC 9990
    /// §3.1) for `[begin, end)`.
    pub fn new(
        reporter: &ReporterInfo,
        policy: &PublishedPolicy,
        begin: i64,
        end: i64,
        format: ReportFormat,
    ) -> ReportWriter {
        let mut policy = policy.clone();
        policy.domain = policy.domain.to_ascii_lowercase();
        let last = last_second(begin, end);
        let report_id = format!(
            "{}!{begin}!{last}@{}",
            mail::dot_atom(&policy.domain),
            mail::dot_atom(&reporter.domain)
        );
        let mut writer = ReportWriter {
            reporter: reporter.clone(),
            policy,
            begin,
            end,
            report_id,
            format,
            xml: XmlWriter::default(),
            encoder: mail::gzip_encoder(),
            message_count: 0,
            row_count: 0,
        };
        writer.write_head();
        writer
    }

    /// Writes one row counting `count` messages.
    pub fn push(&mut self, row: &Row, count: u64) {
        write_record(&mut self.xml, self.format, row, count);
        self.message_count = self.message_count.saturating_add(count);
        self.row_count += 1;
        self.drain();
    }

    /// Ends the document; `None` when no row was written (RFC 9990 §3.1.1:
    /// a report has at least one record).
    pub fn finish(mut self) -> Option<AggregateReport> {
        if self.row_count == 0 {
            return None;
        }
        self.xml.close("feedback");
        self.drain();
        Some(AggregateReport {
            reporter: self.reporter,
            policy: self.policy,
            begin: self.begin,
            end: self.end,
            report_id: self.report_id,
            format: self.format,
            gzip: mail::gzip_finish(self.encoder),
            message_count: self.message_count,
            row_count: self.row_count,
            rows: Vec::new(),
        })
    }

    /// Moves the XML written so far into the encoder.
    fn drain(&mut self) {
        mail::gzip_write(&mut self.encoder, self.xml.out.as_bytes());
        self.xml.out.clear();
    }

    fn write_head(&mut self) {
        let rfc9990 = self.format == ReportFormat::Rfc9990;
        let xml = &mut self.xml;
        xml.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if rfc9990 {
            xml.open_tag(&format!("feedback xmlns=\"{NAMESPACE}\""));
            // RFC 9990 §3.1.1: `version` "MUST have the value 1.0".
            xml.leaf("version", "1.0");
        } else {
            xml.open("feedback");
        }

        xml.open("report_metadata");
        xml.leaf("org_name", &self.reporter.org_name);
        xml.leaf("email", &self.reporter.email);
        if let Some(extra) = &self.reporter.extra_contact_info {
            xml.leaf("extra_contact_info", extra);
        }
        xml.leaf("report_id", &self.report_id);
        xml.open("date_range");
        xml.leaf("begin", &self.begin.to_string());
        xml.leaf("end", &last_second(self.begin, self.end).to_string());
        xml.close("date_range");
        if rfc9990 {
            xml.leaf("generator", &self.reporter.generator);
        }
        xml.close("report_metadata");
        write_policy_published(xml, self.format, &self.policy);
        self.drain();
    }
}

impl AggregateReport {
    /// Groups the records of `policy_domain` (compared without regard to
    /// case) into rows with their message counts.
    ///
    /// `begin` and `end` are the period, seconds since the epoch, `end`
    /// exclusive; they are taken as given (the caller selected `records`
    /// for that period). `policy_published` is the policy of the most
    /// recent record (RFC 9990 §3.1: "the reporting entity SHOULD note only
    /// the final configuration observed during the period").
    ///
    /// Returns `None` when no record has a policy found at `policy_domain`
    /// (RFC 9990 §3.1.1: a report has at least one record).
    pub fn build(
        reporter: &ReporterInfo,
        policy_domain: &str,
        begin: i64,
        end: i64,
        records: &[EvaluationRecord],
        format: ReportFormat,
    ) -> Option<AggregateReport> {
        let mut rows = BTreeMap::new();
        let mut latest: Option<(i64, &PublishedPolicy)> = None;
        for record in records {
            let Some(policy) = &record.policy else {
                continue;
            };
            if !policy.domain.eq_ignore_ascii_case(policy_domain) {
                continue;
            }
            // Later records win ties, so the last of equal times counts.
            if latest.is_none_or(|(time, _)| record.time >= time) {
                latest = Some((record.time, policy));
            }
            *rows.entry(row_of(record)).or_insert(0u64) += 1;
        }
        let (_, policy) = latest?;
        let mut writer = ReportWriter::new(reporter, policy, begin, end, format);
        for (row, count) in &rows {
            writer.push(row, *count);
        }
        let mut report = writer.finish()?;
        report.rows = rows.into_iter().collect();
        Some(report)
    }

    /// The `report_id` (see the module documentation for the scheme).
    pub fn report_id(&self) -> &str {
        &self.report_id
    }

    /// The DMARC Policy Domain, lower case.
    pub fn policy_domain(&self) -> &str {
        &self.policy.domain
    }

    /// The policy reported as `policy_published`.
    pub fn policy(&self) -> &PublishedPolicy {
        &self.policy
    }

    /// The reporter.
    pub fn reporter(&self) -> &ReporterInfo {
        &self.reporter
    }

    /// Start of the period (inclusive), seconds since the epoch.
    pub fn begin(&self) -> i64 {
        self.begin
    }

    /// End of the period (exclusive), seconds since the epoch. The report
    /// writes `end - 1`, the last second of the period.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// The schema the report is written in.
    pub fn format(&self) -> ReportFormat {
        self.format
    }

    /// The rows with their message counts, in report order, of a report
    /// built in memory with [`AggregateReport::build`]; empty for one
    /// written from the store by a [`ReportWriter`] (read its XML).
    pub fn rows(&self) -> impl Iterator<Item = (&Row, u64)> {
        self.rows.iter().map(|(row, count)| (row, *count))
    }

    /// How many rows the report has.
    pub fn row_count(&self) -> u64 {
        self.row_count
    }

    /// How many messages the report covers (the sum of the row counts).
    pub fn message_count(&self) -> u64 {
        self.message_count
    }

    /// The XML document (UTF-8, LF line endings), in the schema of
    /// [`AggregateReport::format`], starting with the XML declaration
    /// (the gzip file, decompressed).
    pub fn to_xml(&self) -> String {
        let mut xml = String::new();
        let mut decoder = flate2::read::GzDecoder::new(self.gzip.as_slice());
        // Decompressing what this module compressed, in memory.
        let _ = std::io::Read::read_to_string(&mut decoder, &mut xml);
        xml
    }

    /// The XML compressed with gzip (RFC 1952), with a zero modification
    /// time so the same report always gives the same bytes: the attached
    /// `.xml.gz` file.
    pub fn gzip(&self) -> &[u8] {
        &self.gzip
    }

    /// The size of the report payload in bytes: the gzip file as attached,
    /// before the base64 encoding of the mail. This is what a `rua` size
    /// limit (`mailto:...!10m`, RFC 7489 §6.2: "so long as the report
    /// payload does not exceed" the limit) is compared with. RFC 9989
    /// removed size limits (Appendix C.4); callers honouring an RFC 7489
    /// limit compare it with this.
    pub fn size_bytes(&self) -> u64 {
        u64::try_from(self.gzip.len()).unwrap_or(u64::MAX)
    }

    /// The attachment's file name (RFC 9990 §3.5.2):
    /// `receiver "!" policy-domain "!" begin "!" end ".xml.gz"`, without the
    /// optional unique-id (one store makes one report per domain and
    /// period). Re-sending the report gives the same name, as §3.5.2
    /// requires. Both domains are reduced like the `report_id`'s.
    pub fn file_name(&self) -> String {
        format!(
            "{}!{}!{}!{}.xml.gz",
            mail::dot_atom(&self.reporter.domain),
            mail::dot_atom(&self.policy.domain),
            self.begin,
            last_second(self.begin, self.end)
        )
    }

    /// The Subject field value (RFC 9990 §3.5.2 `dmarc-subject`), folded as
    /// in the RFC's example, CRLF line endings:
    /// `Report Domain: example.com\r\n Submitter: mx.example.net\r\n
    /// Report-ID: <...>`.
    pub fn subject(&self) -> String {
        format!(
            "Report Domain: {}\r\n Submitter: {}\r\n Report-ID: <{}>",
            mail::dot_atom(&self.policy.domain),
            mail::dot_atom(&self.reporter.domain),
            self.report_id
        )
    }

    /// The complete report message (RFC 5322, CRLF line endings) from
    /// `from` to `to`, dated `date` (seconds since the epoch): a
    /// `multipart/mixed` with a short `text/plain` part and the gzip file as
    /// an `application/gzip` attachment in base64 (RFC 9990 §3.5.2).
    ///
    /// The Message-ID is derived from the report, the recipient and
    /// `message_id_domain`, so the same report to the same recipient always
    /// has the same Message-ID (RFC 9990 §3.5.2 suggests reusing the
    /// Report-ID there to make re-transmissions recognisable). Control
    /// characters in `from` and `to` are replaced with spaces: they cannot
    /// add header fields.
    pub fn report_mail(&self, from: &str, to: &str, date: i64, message_id_domain: &str) -> Vec<u8> {
        let boundary = format!(
            "=_dmarc_aggregate_{:016x}",
            mail::fnv64(self.report_id.as_bytes())
        );
        let message_id = format!(
            "<{}!{}!{}.{:08x}@{}>",
            mail::dot_atom(&self.policy.domain),
            self.begin,
            last_second(self.begin, self.end),
            mail::fnv64(to.as_bytes()) & 0xffff_ffff,
            mail::dot_atom(message_id_domain)
        );
        let file_name = self.file_name();
        let text = format!(
            "This is a DMARC aggregate report (RFC 9990) from {} ({}).\r\n\
             \r\n\
             Report Domain: {}\r\n\
             Period: {} to {} UTC\r\n\
             Messages: {} in {} rows\r\n\
             Report-ID: {}\r\n",
            mail::body_text(&self.reporter.org_name)
                .chars()
                .take(200)
                .collect::<String>(),
            mail::dot_atom(&self.reporter.domain),
            mail::dot_atom(&self.policy.domain),
            mail::utc_text(self.begin),
            mail::utc_text(last_second(self.begin, self.end)),
            self.message_count(),
            self.row_count,
            self.report_id,
        );

        let mut out = String::new();
        mail::header(&mut out, "From", &mail::header_text(from));
        mail::header(&mut out, "To", &mail::header_text(to));
        mail::header(&mut out, "Subject", &self.subject());
        mail::header(&mut out, "Date", &mail::rfc5322_date(date));
        mail::header(&mut out, "Message-ID", &message_id);
        mail::header(&mut out, "MIME-Version", "1.0");
        mail::header(&mut out, "Auto-Submitted", "auto-generated");
        mail::header(
            &mut out,
            "Content-Type",
            &format!("multipart/mixed;\r\n boundary=\"{boundary}\""),
        );
        out.push_str("\r\nThis is a multipart message in MIME format.\r\n");

        let _ = write!(out, "\r\n--{boundary}\r\n");
        mail::text_part(&mut out, &text);

        let _ = write!(out, "\r\n--{boundary}\r\n");
        mail::header(
            &mut out,
            "Content-Type",
            &format!("application/gzip;\r\n name=\"{file_name}\""),
        );
        mail::header(&mut out, "Content-Transfer-Encoding", "base64");
        mail::header(
            &mut out,
            "Content-Disposition",
            &format!("attachment;\r\n filename=\"{file_name}\""),
        );
        out.push_str("\r\n");
        out.push_str(&mail::base64_lines(&self.gzip));
        let _ = write!(out, "\r\n--{boundary}--\r\n");
        out.into_bytes()
    }
}

/// `policy_published` (RFC 9990 §3.1.1).
fn write_policy_published(xml: &mut XmlWriter, format: ReportFormat, policy: &PublishedPolicy) {
    // RFC 9990 §3.1.1: "Unspecified tags have their default values", so
    // sp falls back to p and np to sp (RFC 9989 §4.7).
    let sp = policy.sp.unwrap_or(policy.p);
    xml.open("policy_published");
    xml.leaf("domain", &policy.domain);
    match format {
        ReportFormat::Rfc9990 => {
            xml.leaf("discovery_method", policy.discovery_method.as_str());
            xml.leaf("p", policy.p.as_str());
            xml.leaf("sp", sp.as_str());
            xml.leaf("np", policy.np.unwrap_or(sp).as_str());
            xml.leaf("fo", &policy.fo);
            xml.leaf("adkim", policy.adkim.as_str());
            xml.leaf("aspf", policy.aspf.as_str());
            xml.leaf("testing", if policy.testing { "y" } else { "n" });
        }
        ReportFormat::Rfc7489 => {
            xml.leaf("adkim", policy.adkim.as_str());
            xml.leaf("aspf", policy.aspf.as_str());
            xml.leaf("p", policy.p.as_str());
            xml.leaf("sp", sp.as_str());
            xml.leaf("pct", &policy.pct.to_string());
            xml.leaf("fo", &policy.fo);
        }
    }
    xml.close("policy_published");
}

/// One `record` element.
fn write_record(xml: &mut XmlWriter, format: ReportFormat, row: &Row, count: u64) {
    let rfc9990 = format == ReportFormat::Rfc9990;
    xml.open("record");
    xml.open("row");
    xml.leaf("source_ip", &row.source_ip.to_string());
    xml.leaf("count", &count.to_string());
    xml.open("policy_evaluated");
    let disposition = match (format, row.disposition) {
        // RFC 7489 Appendix C knows no `pass` disposition: no action.
        (ReportFormat::Rfc7489, ActionDisposition::Pass) => ActionDisposition::None,
        (_, disposition) => disposition,
    };
    xml.leaf("disposition", disposition.as_str());
    xml.leaf("dkim", row.dkim_aligned.as_str());
    xml.leaf("spf", row.spf_aligned.as_str());
    for reason in &row.reasons {
        let (kind, comment) = match format {
            ReportFormat::Rfc9990 => (reason.kind.as_str(), reason.comment.as_deref()),
            ReportFormat::Rfc7489 => rfc7489_reason(reason),
        };
        xml.open("reason");
        xml.leaf("type", kind);
        if let Some(comment) = comment {
            xml.leaf("comment", comment);
        }
        xml.close("reason");
    }
    xml.close("policy_evaluated");
    xml.close("row");

    xml.open("identifiers");
    if rfc9990 {
        xml.leaf("header_from", &row.header_from);
        if let Some(envelope_from) = &row.envelope_from {
            xml.leaf("envelope_from", envelope_from);
        }
        if let Some(envelope_to) = &row.envelope_to {
            xml.leaf("envelope_to", envelope_to);
        }
    } else {
        if let Some(envelope_to) = &row.envelope_to {
            xml.leaf("envelope_to", envelope_to);
        }
        // Required by RFC 7489 Appendix C.
        xml.leaf("envelope_from", row.envelope_from.as_deref().unwrap_or(""));
        xml.leaf("header_from", &row.header_from);
    }
    xml.close("identifiers");

    xml.open("auth_results");
    for dkim in &row.dkim {
        xml.open("dkim");
        xml.leaf("domain", &dkim.domain);
        // RFC 9990 §3.1.1: the selector is required, even when empty.
        xml.leaf("selector", &dkim.selector);
        xml.leaf("result", dkim.result.as_str());
        if let Some(human) = &dkim.human_result {
            xml.leaf("human_result", human);
        }
        xml.close("dkim");
    }
    match (&row.spf, format) {
        (Some(spf), ReportFormat::Rfc9990) => {
            xml.open("spf");
            xml.leaf("domain", &spf.domain);
            // The schema allows only `mfrom`; a HELO result has no scope.
            if spf.scope == SpfScopeWord::MailFrom {
                xml.leaf("scope", spf.scope.as_str());
            }
            xml.leaf("result", spf.result.as_str());
            if let Some(human) = &spf.human_result {
                xml.leaf("human_result", human);
            }
            xml.close("spf");
        }
        (None, ReportFormat::Rfc9990) => {}
        (spf, ReportFormat::Rfc7489) => {
            // RFC 7489 Appendix C requires at least one SPF result.
            let (domain, scope, result) = match spf {
                Some(spf) => (spf.domain.as_str(), spf.scope, spf.result),
                None => (
                    row.envelope_from.as_deref().unwrap_or(""),
                    SpfScopeWord::MailFrom,
                    SpfWord::None,
                ),
            };
            let result = match result {
                SpfWord::Policy => SpfWord::Neutral,
                result => result,
            };
            xml.open("spf");
            xml.leaf("domain", domain);
            xml.leaf("scope", scope.as_str());
            xml.leaf("result", result.as_str());
            xml.close("spf");
        }
    }
    xml.close("auth_results");
    xml.close("record");
}

/// The last second of the half-open period `[begin, end)`.
fn last_second(begin: i64, end: i64) -> i64 {
    end.saturating_sub(1).max(begin)
}

/// The row a record is counted in: its facts in normal form
/// ([`EvaluationRecord::normalized`]), so that the same facts are one row
/// whatever their case or the order of the signatures.
fn row_of(record: &EvaluationRecord) -> Row {
    let record = record.clone().normalized();
    Row {
        source_ip: record.source_ip,
        header_from: record.header_from,
        envelope_from: record.envelope_from,
        envelope_to: record.envelope_to,
        disposition: record.disposition,
        dkim_aligned: record.dkim_aligned,
        spf_aligned: record.spf_aligned,
        reasons: record.reasons,
        spf: record.spf,
        dkim: record.dkim,
    }
}

/// True when `a` and `b` are equal or one is a subdomain of the other.
pub(crate) fn related_domains(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.');
    let b = b.trim_end_matches('.');
    let is_below = |child: &str, parent: &str| {
        child.len() > parent.len()
            && child
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", parent.to_ascii_lowercase()))
    };
    !a.is_empty() && (a.eq_ignore_ascii_case(b) || is_below(a, b) || is_below(b, a))
}

/// An override reason in RFC 7489's words (Appendix C `PolicyOverrideType`).
fn rfc7489_reason(reason: &PolicyOverride) -> (&'static str, Option<&str>) {
    let comment = reason.comment.as_deref();
    match reason.kind {
        // model.rs writes pct sampling as `other` with this comment; RFC
        // 7489 has a word for it.
        OverrideWord::Other if comment.is_some_and(|c| c.starts_with("sampled out")) => {
            ("sampled_out", comment)
        }
        OverrideWord::PolicyTestMode => ("other", Some(comment.unwrap_or("policy_test_mode"))),
        kind => (kind.as_str(), comment),
    }
}

/// A minimal XML writer: two-space indentation, every text value escaped.
#[derive(Default)]
struct XmlWriter {
    out: String,
    depth: usize,
}

impl XmlWriter {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.open_tag(name);
    }

    /// Writes `<tag>`, where `tag` is an element name with attributes.
    fn open_tag(&mut self, tag: &str) {
        self.indent();
        let _ = writeln!(self.out, "<{tag}>");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        let _ = write!(self.out, "<{name}>");
        xml_escape_into(&mut self.out, text);
        let _ = writeln!(self.out, "</{name}>");
    }
}

/// Appends `text` escaped for XML character data or an attribute value;
/// see the module documentation for what is replaced.
fn xml_escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// The pieces of a report mail shared by aggregate and failure reports.
pub(crate) mod mail;
