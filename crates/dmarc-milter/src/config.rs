//! The configuration file: TOML, read in two steps.
//!
//! [`RawConfig`] holds every key as written, with the line it came from;
//! [`Config::build`] turns it into a validated [`Config`], applying every
//! default in one place. An error names the file, the line, the key and the
//! bad value: `dmarc-milter.toml line 7: invalid value "rejekt" for
//! invalid_from_disposition (expected reject, quarantine, accept or
//! tempfail)`. Unknown keys are errors, so a typo never silently falls back
//! to a default.
//!
//! Every key, its default and its meaning are listed in the crate's
//! README.md and in `dmarc-milter.toml`, the documented configuration the
//! Debian package installs (and `dmarc-milter.toml(5)` is generated from).

use crate::logging::LogFormat;
use crate::message::Forged;
use crate::socket::SocketSpec;
use dmarc_report::{
    aggregate::{ReportFormat, ReporterInfo},
    deliver::Transport,
    store::StoreLocation,
};
use dmarc_verifier::{
    dns::DnsObserver, message::normalize_domain, DiscoveryMethod, Disposition, DnsConfig,
    Enforcement, InvalidFromResult, Nameservers, PctMode, PublicSuffixList, TempErrorAction,
    Verifier, VerifierConfig,
};
use ipnet::IpNet;
use std::{
    collections::BTreeMap,
    fmt, fs, io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use toml::{Spanned, Value};

mod indirect;
#[cfg(test)]
mod tests;

pub use crate::cli::DEFAULT_CONFIG_PATH;
pub use indirect::ArcSealConfig;

/// Every key the file may hold. README.md and the sample configuration
/// document each one (a test checks the sample mentions them all).
pub const KEYS: &[&str] = &[
    "socket",
    "socket_mode",
    "max_connections",
    "shutdown_timeout",
    "log_level",
    "authserv_id",
    "authserv_id_aliases",
    "host_name",
    "nameservers",
    "dns_timeout",
    "dns_attempts",
    "dns_cache_size",
    "dns_max_negative_ttl",
    "spf_timeout",
    "discovery",
    "shadow_discovery",
    "public_suffix_list",
    "pct",
    "dry_run",
    "dmarc_temperror",
    "spf_temperror",
    "dkim_temperror",
    "invalid_from_result",
    "invalid_from_disposition",
    "max_author_domains",
    "max_dkim_signatures",
    "allow_rsa_sha1",
    "min_rsa_key_bits",
    "max_message_size",
    "remove_all_authentication_results",
    "max_forged_authentication_results",
    "quarantine_action",
    "reject_text",
    "tempfail_text",
    "skip_authenticated",
    "ignore_hosts",
    "ignore_from_domains",
    "ignore_hosts_file",
    "add_header_to_skipped",
    "report_store",
    "report_queue_size",
    "report_no_policy",
    "report_org_name",
    "report_domain",
    "report_email",
    "report_extra_contact_info",
    "report_format",
    "report_transport",
    "report_exclude_domains",
    "report_max_attempts",
    "report_retention_days",
    "failure_reports",
    "failure_reports_per_hour",
    "failure_report_content",
    // Bounds of reporting (issue 16).
    "report_store_required",
    "report_queue_memory",
    "report_max_rua",
    "report_max_ruf",
    "report_max_per_destination_domain",
    "report_consent_budget",
    "failure_reports_per_domain_per_hour",
    "failure_reports_max_per_hour",
    "failure_report_max_size",
    // Observability (issue 15).
    "log_format",
    "metrics_listen",
    // Indirect mail flows (issue 13).
    "trusted_arc_sealers",
    "arc_override_action",
    "trusted_forwarders",
    "trusted_forwarder_action",
    "mailing_list_action",
    "policy_override",
    "arc_seal",
];

/// Default `max_forged_authentication_results`.
pub const DEFAULT_MAX_FORGED_AUTH_RESULTS: usize = 50;

/// Default `spf_timeout`: the longest one SPF check may wait on the DNS.
pub const DEFAULT_SPF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Default `max_message_size`: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Default `reject_text`.
pub const DEFAULT_REJECT_TEXT: &str = "DMARC policy of {domain} rejects this message";
/// Default `tempfail_text`.
pub const DEFAULT_TEMPFAIL_TEXT: &str =
    "DMARC policy of {domain} could not be checked, try again later";

/// What a quarantine disposition does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuarantineAction {
    /// The milter quarantine action: Postfix puts the message on hold
    /// (`postqueue -j` / `mailq` shows it, `postsuper -H` releases it).
    #[default]
    Hold,
    /// Deliver with our Authentication-Results only; filtering further
    /// down (Sieve, the mail client) moves it to a spam folder.
    HeaderOnly,
}

/// The log level set by `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    /// Only failures to provide service.
    Error,
    /// Misconfiguration and peers breaking the protocol.
    Warn,
    /// One verdict line per message (default).
    #[default]
    Info,
    /// The decision trail of every message.
    Debug,
    /// Everything, including indymilter's protocol trace.
    Trace,
}

impl LogLevel {
    /// `"error"`, `"warn"`, `"info"`, `"debug"` or `"trace"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A pattern of `ignore_from_domains`: `example.com` matches that domain
/// only, `.example.com` every domain below it (not example.com itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// This domain exactly (A-label, lower case).
    Exact(String),
    /// Any subdomain of this domain.
    Below(String),
}

impl DomainPattern {
    /// True when `domain` (an A-label, lower case, as the verifier returns
    /// Author Domains) matches.
    pub fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => domain == d,
            DomainPattern::Below(d) => domain
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.ends_with('.')),
        }
    }
}

/// The clients whose mail is not checked (`ignore_hosts` and the lines of
/// `ignore_hosts_file`), as OpenDMARC's `IgnoreHosts`: addresses and
/// networks, and host names matched against the client's name as the MTA
/// verified it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostList {
    /// Addresses and networks.
    pub nets: Vec<IpNet>,
    /// Host names: `mail.example.com` that name, `.example.com` every name
    /// below it.
    pub names: Vec<DomainPattern>,
}

impl HostList {
    /// True when the client is in the list: its address in one of the
    /// networks (an IPv4-mapped IPv6 address counts as the IPv4 address),
    /// or its name matching one of the names.
    ///
    /// `name` is the client's host name as the MTA gives it at CONNECT.
    /// Postfix gives a name only when it is verified (the reverse lookup of
    /// the address and the forward lookup of that name agree), otherwise
    /// `unknown`; Sendmail gives `[IP]` without a reverse name. Neither
    /// matches a name in the list, so an unverified PTR record cannot make
    /// a client ignored.
    pub fn contains(&self, ip: Option<IpAddr>, name: &str) -> bool {
        let by_address = ip.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            self.nets.iter().any(|net| net.contains(&ip))
        });
        by_address || self.contains_name(name)
    }

    fn contains_name(&self, name: &str) -> bool {
        if self.names.is_empty() || name.eq_ignore_ascii_case("unknown") {
            return false;
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        normalize_domain(name)
            .is_ok_and(|name| self.names.iter().any(|pattern| pattern.matches(&name)))
    }

    /// Adds one entry: an address (`192.0.2.1`, `2001:db8::1`), a network
    /// (`192.0.2.0/24`, also Postfix's `[2001:db8::]/32`), or a host name
    /// (`mail.example.com`, `.example.com`). `None` for anything else,
    /// including Postfix's placeholder `unknown`.
    fn push(&mut self, entry: &str) -> Option<()> {
        if let Some(net) = parse_net(entry) {
            self.nets.push(net);
            return Some(());
        }
        if entry.eq_ignore_ascii_case("unknown") || entry.eq_ignore_ascii_case(".unknown") {
            return None;
        }
        let pattern = parse_domain_pattern(entry)?;
        let (DomainPattern::Exact(name) | DomainPattern::Below(name)) = &pattern;
        // A mistyped address (192.0.2.300) is not a host name: no top-level
        // domain is all digits (RFC 3696 §2).
        if name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        self.names.push(pattern);
        Some(())
    }
}

/// What a failure report carries of the original message (RFC 9991 §5:
/// privacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailureReportContent {
    /// Its header fields only (`text/rfc822-headers`), the default.
    #[default]
    Headers,
    /// The whole message (`message/rfc822`).
    Full,
}

/// Aggregate and failure reporting (`report_*` and `failure_*` keys),
/// present when `report_store` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportingConfig {
    /// Where evaluations and outgoing reports are kept (`report_store`).
    pub store: StoreLocation,
    /// Evaluations waiting to be written, at most (`report_queue_size`,
    /// default 10000); beyond, new ones are dropped and counted, mail is
    /// never slowed.
    pub queue_size: usize,
    /// Also record messages whose From domain has no DMARC record
    /// (`report_no_policy`, default false). They appear in no report.
    pub record_no_policy: bool,
    /// Who we are in reports (`report_org_name`, `report_domain`,
    /// `report_email`, `report_extra_contact_info`).
    pub reporter: ReporterInfo,
    /// RFC 9990 or the RFC 7489 schema (`report_format`).
    pub format: ReportFormat,
    /// Where report mail goes (`report_transport`, default
    /// `smtp:127.0.0.1:25`).
    pub transport: Transport,
    /// Policy domains never sent reports (`report_exclude_domains`).
    pub exclude_domains: Vec<DomainPattern>,
    /// Delivery attempts (report runs) before a report is given up
    /// (`report_max_attempts`, default 24).
    pub max_attempts: u32,
    /// Days evaluations and sent reports are kept (`report_retention_days`,
    /// default 30).
    pub retention_days: u32,
    /// Queue RFC 9991 failure reports (`failure_reports`, default false).
    pub failure_reports: bool,
    /// Failure reports to one recipient per hour (`failure_reports_per_hour`,
    /// default 10).
    pub failure_reports_per_hour: u64,
    /// What a failure report carries (`failure_report_content`).
    pub failure_report_content: FailureReportContent,
    /// The bounds of reporting (issue 16).
    pub limits: ReportLimits,
}

/// The bounds of reporting, each with its key. Every one is counted when
/// hit (see `dmarc_report::counters`); SECURITY.md says what happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLimits {
    /// Refuse to start when the report store cannot be opened
    /// (`report_store_required`, default false: the milter starts and
    /// verifies mail, reporting degraded and retried).
    pub store_required: bool,
    /// Bytes of evaluations waiting to be written, at most
    /// (`report_queue_memory`, default 64 MiB).
    pub queue_memory: usize,
    /// `rua` destinations used per record (`report_max_rua`, default 10).
    pub max_rua: usize,
    /// `ruf` destinations used per record (`report_max_ruf`, default 5).
    pub max_ruf: usize,
    /// Aggregate report mails to one destination domain (its
    /// Organizational Domain) per report run
    /// (`report_max_per_destination_domain`, default 1000).
    pub max_per_destination_domain: usize,
    /// Time one report run spends on consent look-ups (RFC 9990 §4) at
    /// most (`report_consent_budget`, default 60 s); destinations not
    /// checked wait for the next run.
    pub consent_budget: Duration,
    /// Failure reports about one policy domain per hour
    /// (`failure_reports_per_domain_per_hour`, default 20).
    pub failure_reports_per_domain_per_hour: u64,
    /// Failure reports per hour in all (`failure_reports_max_per_hour`,
    /// default 1000).
    pub failure_reports_max_per_hour: u64,
    /// The largest failure report (`failure_report_max_size`, default
    /// 64 KiB): the sample is cut to fit.
    pub failure_report_max_size: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits {
            store_required: false,
            queue_memory: 64 << 20,
            max_rua: dmarc_report::destination::DEFAULT_MAX_RUA,
            max_ruf: dmarc_report::destination::DEFAULT_MAX_RUF,
            max_per_destination_domain: dmarc_report::run::DEFAULT_MAX_PER_DESTINATION_DOMAIN,
            consent_budget: dmarc_report::deliver::DEFAULT_CHECK_BUDGET,
            failure_reports_per_domain_per_hour: 20,
            failure_reports_max_per_hour: 1000,
            failure_report_max_size: dmarc_report::failure::DEFAULT_MAX_REPORT_SIZE,
        }
    }
}

/// The validated configuration of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this came from (read again on SIGHUP).
    pub path: Option<PathBuf>,
    /// Where to listen (`socket`).
    pub socket: SocketSpec,
    /// Permissions of a UNIX-domain socket file (`socket_mode`, default 0660).
    pub socket_mode: u32,
    /// Most MTA connections served at once (`max_connections`, default 256).
    pub max_connections: usize,
    /// How long the whole shutdown may take: messages in flight, then the
    /// report queues (`shutdown_timeout`, default 30 s; keep it below the
    /// service manager's stop timeout).
    pub shutdown_timeout: Duration,
    /// Log level (`log_level`, default info; a reload applies it).
    pub log_level: LogLevel,
    /// Format of log lines (`log_format`, default text: logfmt).
    pub log_format: LogFormat,
    /// Where `/metrics` is served over HTTP (`metrics_listen`, default
    /// none: no metrics are recorded).
    pub metrics_listen: Option<SocketAddr>,
    /// The configured authserv-id; `None` means: macro `j` of the MTA, else
    /// the host name (which is then `verifier.authserv_id`).
    pub authserv_id: Option<String>,
    /// Other authserv-ids whose Authentication-Results are removed like
    /// our own (`authserv_id_aliases`): the names of sibling MX hosts of
    /// the same ADMD (RFC 8601 §5), which a forger may also claim.
    pub authserv_id_aliases: Vec<String>,
    /// The verifier's settings (its `authserv_id` is the fallback id).
    pub verifier: VerifierConfig,
    /// Bytes of header and body buffered per message (`max_message_size`).
    pub max_message_size: usize,
    /// Remove every incoming Authentication-Results, not only forged ones.
    pub remove_all_authentication_results: bool,
    /// Above this many Authentication-Results fields to delete, the message
    /// is rejected instead (`max_forged_authentication_results`, default
    /// 50): thousands of header edits break Postfix's cleanup.
    pub max_forged_authentication_results: usize,
    /// What quarantine does.
    pub quarantine_action: QuarantineAction,
    /// The 550 text; `{domain}` becomes the Author Domain.
    pub reject_text: String,
    /// The 451 text; `{domain}` becomes the Author Domain.
    pub tempfail_text: String,
    /// Skip DMARC for SMTP-authenticated clients (`{auth_authen}` set).
    pub skip_authenticated: bool,
    /// Clients whose mail is not checked (`ignore_hosts`, then the lines
    /// of `ignore_hosts_file`, read again on every reload).
    pub ignore_hosts: HostList,
    /// Author Domains whose mail is not checked.
    pub ignore_from_domains: Vec<DomainPattern>,
    /// Give mail that is not checked (authenticated, ignored client or
    /// From domain) our Authentication-Results with `dmarc=none` and the
    /// reason (`add_header_to_skipped`, default false: no header, as
    /// OpenDMARC; forged headers are removed either way).
    pub add_header_to_skipped: bool,
    /// Reporting, when `report_store` is set.
    pub reporting: Option<ReportingConfig>,
    /// Our ARC sealing, when `[arc_seal]` is set (the overrides of
    /// indirect flows are in `verifier.overrides`).
    pub arc_seal: Option<ArcSealConfig>,
}

impl Config {
    /// Which incoming Authentication-Results of a message whose
    /// authserv-id is `authserv_id` are forgeries to delete.
    pub(crate) fn forged<'a>(&'a self, authserv_id: &'a str) -> Forged<'a> {
        Forged {
            authserv_id,
            aliases: &self.authserv_id_aliases,
            remove_all: self.remove_all_authentication_results,
        }
    }

    /// Reads and validates a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, and for a bad key its line, name and
    /// value.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            kind: ConfigErrorKind::Read(e),
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for invalid TOML, an unknown key or a bad value.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::build(RawConfig::parse(text, file)?)
    }

    /// Applies the defaults to the keys given and checks every value.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a bad value.
    pub fn build(mut raw: RawConfig) -> Result<Config, ConfigError> {
        let mut verifier = VerifierConfig {
            // The milter logs the trail (debug) but never reads it from the
            // verdict: skip formatting it unless that log is on.
            trail: false,
            ..VerifierConfig::default()
        };
        let mut dns = DnsConfig::default();

        let socket = match raw.take("socket") {
            Some(entry) => {
                let text = raw.string(&entry, "socket", "inet:HOST:PORT or unix:/PATH")?;
                text.parse::<SocketSpec>()
                    .map_err(|expected| raw.invalid(&entry, "socket", expected))?
            }
            None => SocketSpec::default(),
        };
        let socket_mode = match raw.take("socket_mode") {
            Some(entry) => parse_mode(&entry.value).ok_or_else(|| {
                raw.invalid(&entry, "socket_mode", "an octal mode such as \"0660\"")
            })?,
            None => 0o660,
        };
        let max_connections = raw.integer("max_connections", 1, 100_000)?.unwrap_or(256);
        let shutdown_timeout = raw
            .seconds("shutdown_timeout")?
            .unwrap_or(Duration::from_secs(30));
        let log_level = raw
            .choice(
                "log_level",
                &[
                    ("error", LogLevel::Error),
                    ("warn", LogLevel::Warn),
                    ("info", LogLevel::Info),
                    ("debug", LogLevel::Debug),
                    ("trace", LogLevel::Trace),
                ],
                "error, warn, info, debug or trace",
            )?
            .unwrap_or_default();
        let log_format = raw
            .choice(
                "log_format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                "text or json",
            )?
            .unwrap_or_default();
        let metrics_listen = match raw.take("metrics_listen") {
            Some(entry) => {
                let expected = "an address and port such as \"127.0.0.1:9899\" or \"[::1]:9899\"";
                let text = raw.string(&entry, "metrics_listen", expected)?;
                Some(
                    text.parse::<SocketAddr>()
                        .map_err(|_| raw.invalid(&entry, "metrics_listen", expected))?,
                )
            }
            None => None,
        };

        let authserv_id = match raw.take("authserv_id") {
            Some(entry) => {
                let id = raw.string(&entry, "authserv_id", "a host name")?;
                if !valid_authserv_id(&id) {
                    return Err(raw.invalid(
                        &entry,
                        "authserv_id",
                        "a host name without spaces or ';'",
                    ));
                }
                verifier.authserv_id = id.clone();
                Some(id)
            }
            None => None,
        };
        let authserv_id_aliases = raw.authserv_ids("authserv_id_aliases")?;
        if let Some(entry) = raw.take("host_name") {
            verifier.host_name = Some(raw.string(&entry, "host_name", "a host name")?);
        }

        if let Some(entry) = raw.take("nameservers") {
            let expected = "a list of \"IP\" or \"IP:PORT\" strings";
            let Value::Array(items) = &entry.value else {
                return Err(raw.invalid(&entry, "nameservers", expected));
            };
            let mut addrs = Vec::new();
            for item in items {
                let addr = item.as_str().and_then(parse_nameserver);
                match addr {
                    Some(addr) => addrs.push(addr),
                    None => return Err(raw.invalid_item(&entry, item, "nameservers", expected)),
                }
            }
            if !addrs.is_empty() {
                dns.nameservers = Nameservers::Explicit(addrs);
            }
        }
        if let Some(timeout) = raw.seconds("dns_timeout")? {
            dns.timeout = timeout;
        }
        if let Some(attempts) = raw.integer("dns_attempts", 1, 10)? {
            dns.attempts = attempts;
        }
        if let Some(size) = raw.integer("dns_cache_size", 0, 10_000_000)? {
            dns.cache_size = size;
        }
        if let Some(ttl) = raw.seconds("dns_max_negative_ttl")? {
            dns.max_negative_ttl = ttl;
        }
        verifier.dns = dns;
        // RFC 7208 §4.6.4 suggests at least 20 s for one SPF check; a
        // milter answers inside Postfix's milter timeouts, and a sender
        // whose SPF needs longer gets temperror (the message is retried).
        verifier.spf_time_budget = raw.seconds("spf_timeout")?.unwrap_or(DEFAULT_SPF_TIMEOUT);

        if let Some(method) = raw.choice(
            "discovery",
            &[
                ("psl", DiscoveryMethod::Psl),
                ("tree-walk", DiscoveryMethod::TreeWalk),
            ],
            "psl or tree-walk",
        )? {
            verifier.discovery = method;
        }
        if let Some(shadow) = raw.boolean("shadow_discovery")? {
            verifier.shadow_discovery = shadow;
        }
        if let Some(entry) = raw.take("public_suffix_list") {
            let path = raw.string(&entry, "public_suffix_list", "a file name")?;
            verifier.psl_path = Some(PathBuf::from(path));
        }
        if let Some(pct) = raw.choice(
            "pct",
            &[
                ("honor", PctMode::Honor),
                ("ignore", PctMode::Ignore),
                ("as-test-mode", PctMode::AsTestMode),
            ],
            "honor, ignore or as-test-mode",
        )? {
            verifier.pct = pct;
        }
        if raw.boolean("dry_run")? == Some(true) {
            verifier.enforcement = Enforcement::Monitor;
        }
        let temperror = [
            ("tempfail", TempErrorAction::Tempfail),
            ("accept", TempErrorAction::Accept),
        ];
        if let Some(action) = raw.choice("dmarc_temperror", &temperror, "tempfail or accept")? {
            verifier.dmarc_temperror = action;
        }
        if let Some(action) = raw.choice("spf_temperror", &temperror, "tempfail or accept")? {
            verifier.spf_temperror = action;
        }
        if let Some(action) = raw.choice("dkim_temperror", &temperror, "tempfail or accept")? {
            verifier.dkim_temperror = action;
        }
        if let Some(result) = raw.choice(
            "invalid_from_result",
            &[
                ("permerror", InvalidFromResult::PermError),
                ("none", InvalidFromResult::None),
            ],
            "permerror or none",
        )? {
            verifier.invalid_from_result = result;
        }
        if let Some(disposition) = raw.choice(
            "invalid_from_disposition",
            &[
                ("reject", Disposition::Reject),
                ("quarantine", Disposition::Quarantine),
                ("accept", Disposition::Accept),
                ("tempfail", Disposition::Tempfail),
            ],
            "reject, quarantine, accept or tempfail",
        )? {
            verifier.invalid_from_disposition = disposition;
        }
        if let Some(max) = raw.integer("max_author_domains", 1, 100)? {
            verifier.max_author_domains = max;
        }
        if let Some(max) = raw.integer("max_dkim_signatures", 1, 100)? {
            verifier.max_dkim_signatures = max;
        }
        if let Some(allow) = raw.boolean("allow_rsa_sha1")? {
            verifier.allow_rsa_sha1 = allow;
        }
        if let Some(bits) = raw.integer("min_rsa_key_bits", 512, 8192)? {
            verifier.min_rsa_key_bits = u32::try_from(bits).unwrap_or(u32::MAX);
        }

        let max_message_size = match raw.take("max_message_size") {
            Some(entry) => parse_size(&entry.value).ok_or_else(|| {
                raw.invalid(
                    &entry,
                    "max_message_size",
                    "a size in bytes of at least 64k, such as 67108864 or \"64M\"",
                )
            })?,
            None => DEFAULT_MAX_MESSAGE_SIZE,
        };
        let remove_all_authentication_results = raw
            .boolean("remove_all_authentication_results")?
            .unwrap_or(false);
        let max_forged_authentication_results = raw
            .integer("max_forged_authentication_results", 1, 10_000)?
            .unwrap_or(DEFAULT_MAX_FORGED_AUTH_RESULTS);
        let quarantine_action = raw
            .choice(
                "quarantine_action",
                &[
                    ("hold", QuarantineAction::Hold),
                    ("header-only", QuarantineAction::HeaderOnly),
                ],
                "hold or header-only",
            )?
            .unwrap_or_default();
        let reject_text = raw
            .reply_text("reject_text")?
            .unwrap_or(DEFAULT_REJECT_TEXT.into());
        let tempfail_text = raw
            .reply_text("tempfail_text")?
            .unwrap_or(DEFAULT_TEMPFAIL_TEXT.into());
        let skip_authenticated = raw.boolean("skip_authenticated")?.unwrap_or(true);

        let mut ignore_hosts = match raw.take("ignore_hosts") {
            Some(entry) => {
                let expected = "a list of addresses, networks such as \"192.0.2.0/24\" or host names such as \"mail.example.com\" or \".example.com\"";
                let Value::Array(items) = &entry.value else {
                    return Err(raw.invalid(&entry, "ignore_hosts", expected));
                };
                let mut hosts = HostList::default();
                for item in items {
                    if item.as_str().and_then(|text| hosts.push(text)).is_none() {
                        return Err(raw.invalid_item(&entry, item, "ignore_hosts", expected));
                    }
                }
                hosts
            }
            None => default_ignore_hosts(),
        };
        let ignore_from_domains = raw.domain_patterns("ignore_from_domains")?;
        if let Some(entry) = raw.take("ignore_hosts_file") {
            let text = raw.string(&entry, "ignore_hosts_file", "an absolute file name")?;
            if !text.starts_with('/') {
                return Err(raw.invalid(&entry, "ignore_hosts_file", "an absolute file name"));
            }
            read_hosts_file(Path::new(&text), &mut ignore_hosts)?;
        }
        let add_header_to_skipped = raw.boolean("add_header_to_skipped")?.unwrap_or(false);

        let arc_seal = indirect::build(&mut raw, &mut verifier.overrides)?;
        let reporting = build_reporting(&mut raw, &verifier)?;

        if let Some((key, entry)) = raw.entries.iter().next() {
            return Err(raw.error(entry.line, ConfigErrorKind::UnknownKey(key.clone())));
        }

        let config = Config {
            authserv_id_aliases,
            path: None,
            socket,
            socket_mode,
            max_connections,
            shutdown_timeout,
            log_level,
            log_format,
            metrics_listen,
            authserv_id,
            verifier,
            max_message_size,
            remove_all_authentication_results,
            max_forged_authentication_results,
            quarantine_action,
            reject_text,
            tempfail_text,
            skip_authenticated,
            ignore_hosts,
            ignore_from_domains,
            add_header_to_skipped,
            reporting,
            arc_seal,
        };
        config
            .verifier
            .validate()
            .map_err(|e| raw.library_error(e))?;
        Ok(config)
    }

    /// Builds the verifier this configuration describes: checks the
    /// library settings and loads the Public Suffix List. `--check-config`
    /// and a reload call this, so a configuration that cannot serve mail is
    /// refused before it replaces a working one.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key when known.
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        Verifier::new(self.verifier.clone()).map_err(|e| self.library_error(e))
    }

    /// [`Config::verifier`] reporting every DNS question and cache lookup
    /// to `observer` (the daemon's metrics and DNS health warnings).
    ///
    /// # Errors
    ///
    /// As [`Config::verifier`].
    pub fn verifier_observed(
        &self,
        observer: Arc<dyn DnsObserver>,
    ) -> Result<Verifier, ConfigError> {
        let psl = PublicSuffixList::load(self.verifier.psl_path.as_deref())
            .map_err(|e| self.library_error(e))?;
        Verifier::with_dns_observer(self.verifier.clone(), psl, observer)
            .map_err(|e| self.library_error(e))
    }

    fn library_error(&self, e: dmarc_verifier::Error) -> ConfigError {
        ConfigError {
            file: self.file_name(),
            line: None,
            kind: ConfigErrorKind::Library(e),
        }
    }

    fn file_name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "configuration".to_string(), |p| p.display().to_string())
    }

    /// The authserv-id of a message: `authserv_id` when configured, else
    /// the MTA's host name (`macro_j`, Postfix's `$myhostname`) when it is
    /// usable, else this host's name.
    pub fn authserv_id_for(&self, macro_j: Option<&str>) -> String {
        if let Some(id) = &self.authserv_id {
            return id.clone();
        }
        match macro_j {
            Some(j) if valid_authserv_id(j) => j.to_ascii_lowercase(),
            Some(j) => {
                tracing::warn!(
                    macro_j = %j,
                    "the MTA's host name (macro j) is not usable as authserv-id; set authserv_id"
                );
                self.verifier.authserv_id.clone()
            }
            None => self.verifier.authserv_id.clone(),
        }
    }

    /// True when `ip` is in `ignore_hosts` (or `ignore_hosts_file`).
    pub fn is_ignored_host(&self, ip: IpAddr) -> bool {
        self.ignore_hosts.contains(Some(ip), "")
    }

    /// True when the client, by its address or by the host name the MTA
    /// verified for it, is in `ignore_hosts` (or `ignore_hosts_file`): see
    /// [`HostList::contains`].
    pub fn is_ignored_client(&self, ip: Option<IpAddr>, name: &str) -> bool {
        self.ignore_hosts.contains(ip, name)
    }

    /// True when every Author Domain matches `ignore_from_domains`.
    pub fn is_ignored_from(&self, domains: &[String]) -> bool {
        !domains.is_empty()
            && !self.ignore_from_domains.is_empty()
            && domains
                .iter()
                .all(|d| self.ignore_from_domains.iter().any(|p| p.matches(d)))
    }
}

/// The `report_*` and `failure_*` keys: `None` without `report_store`
/// (then no other of them may be set).
fn build_reporting(
    raw: &mut RawConfig,
    verifier: &VerifierConfig,
) -> Result<Option<ReportingConfig>, ConfigError> {
    let Some(store_entry) = raw.take("report_store") else {
        // Another report key without the store is a mistake, not a typo.
        if let Some((key, entry)) = raw
            .entries
            .iter()
            .find(|(key, _)| key.starts_with("report_") || key.starts_with("failure_report"))
        {
            let line = entry.line;
            let needed_by = key.clone();
            return Err(raw.error(
                line,
                ConfigErrorKind::MissingKey {
                    key: "report_store",
                    needed_by,
                },
            ));
        }
        return Ok(None);
    };
    let text = raw.string(
        &store_entry,
        "report_store",
        "an SQLite file (\"/var/lib/dmarc-milter/reports.db\" or \"sqlite:/path\") or a postgresql:// URL",
    )?;
    let store = if text.starts_with("postgresql://") || text.starts_with("postgres://") {
        StoreLocation::Postgres(text)
    } else {
        let path = text.strip_prefix("sqlite:").unwrap_or(&text);
        if !path.starts_with('/') {
            return Err(raw.invalid(
                &store_entry,
                "report_store",
                "an absolute SQLite file name or a postgresql:// URL",
            ));
        }
        StoreLocation::Sqlite(PathBuf::from(path))
    };
    let queue_size = raw
        .integer("report_queue_size", 1, 10_000_000)?
        .unwrap_or(10_000);
    let record_no_policy = raw.boolean("report_no_policy")?.unwrap_or(false);
    let required = |raw: &mut RawConfig, key: &'static str| -> Result<String, ConfigError> {
        match raw.take(key) {
            Some(entry) => raw.string(&entry, key, "a non-empty string"),
            None => Err(raw.error(
                store_entry.line,
                ConfigErrorKind::MissingKey {
                    key,
                    needed_by: "report_store".to_string(),
                },
            )),
        }
    };
    let org_name = required(raw, "report_org_name")?;
    let email = required(raw, "report_email")?;
    if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(raw.error(
            store_entry.line,
            ConfigErrorKind::InvalidValue {
                key: "report_email",
                value: email,
                expected: "a mail address",
            },
        ));
    }
    let domain = match raw.take("report_domain") {
        Some(entry) => {
            let text = raw.string(&entry, "report_domain", "a domain name")?;
            normalize_domain(&text)
                .map_err(|_| raw.invalid(&entry, "report_domain", "a domain name"))?
        }
        None => verifier.authserv_id.to_ascii_lowercase(),
    };
    let mut reporter = ReporterInfo::new(org_name, domain, email);
    if let Some(entry) = raw.take("report_extra_contact_info") {
        reporter.extra_contact_info =
            Some(raw.string(&entry, "report_extra_contact_info", "a non-empty string")?);
    }
    let format = raw
        .choice(
            "report_format",
            &[
                ("rfc9990", ReportFormat::Rfc9990),
                ("rfc7489", ReportFormat::Rfc7489),
            ],
            "rfc9990 or rfc7489",
        )?
        .unwrap_or_default();
    let transport = match raw.take("report_transport") {
        Some(entry) => {
            let text = raw.string(&entry, "report_transport", "smtp:HOST[:PORT] or dir:/PATH")?;
            Transport::parse(&text)
                .map_err(|expected| raw.invalid(&entry, "report_transport", expected))?
        }
        None => Transport::Smtp {
            host: "127.0.0.1".to_string(),
            port: 25,
        },
    };
    let exclude_domains = raw.domain_patterns("report_exclude_domains")?;
    let max_attempts = raw.integer("report_max_attempts", 1, 1000)?.unwrap_or(24);
    let retention_days = raw.integer("report_retention_days", 1, 3650)?.unwrap_or(30);
    let failure_reports = raw.boolean("failure_reports")?.unwrap_or(false);
    let failure_reports_per_hour = raw
        .integer("failure_reports_per_hour", 0, 100_000)?
        .unwrap_or(10);
    let failure_report_content = raw
        .choice(
            "failure_report_content",
            &[
                ("headers", FailureReportContent::Headers),
                ("full", FailureReportContent::Full),
            ],
            "headers or full",
        )?
        .unwrap_or_default();
    let limits = build_report_limits(raw)?;
    Ok(Some(ReportingConfig {
        store,
        queue_size,
        record_no_policy,
        reporter,
        format,
        transport,
        exclude_domains,
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        retention_days: u32::try_from(retention_days).unwrap_or(u32::MAX),
        failure_reports,
        failure_reports_per_hour: u64::try_from(failure_reports_per_hour).unwrap_or(u64::MAX),
        failure_report_content,
        limits,
    }))
}

/// The bounds of reporting (issue 16), each with its default.
fn build_report_limits(raw: &mut RawConfig) -> Result<ReportLimits, ConfigError> {
    let defaults = ReportLimits::default();
    let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(ReportLimits {
        store_required: raw
            .boolean("report_store_required")?
            .unwrap_or(defaults.store_required),
        queue_memory: raw
            .size("report_queue_memory", 1 << 20, 1 << 40)?
            .unwrap_or(defaults.queue_memory),
        max_rua: raw
            .integer("report_max_rua", 2, 100)?
            .unwrap_or(defaults.max_rua),
        max_ruf: raw
            .integer("report_max_ruf", 2, 100)?
            .unwrap_or(defaults.max_ruf),
        max_per_destination_domain: raw
            .integer("report_max_per_destination_domain", 1, 10_000_000)?
            .unwrap_or(defaults.max_per_destination_domain),
        consent_budget: raw
            .seconds("report_consent_budget")?
            .unwrap_or(defaults.consent_budget),
        failure_reports_per_domain_per_hour: raw
            .integer("failure_reports_per_domain_per_hour", 0, 100_000)?
            .map_or(defaults.failure_reports_per_domain_per_hour, to_u64),
        failure_reports_max_per_hour: raw
            .integer("failure_reports_max_per_hour", 0, 10_000_000)?
            .map_or(defaults.failure_reports_max_per_hour, to_u64),
        failure_report_max_size: raw
            .size("failure_report_max_size", 8 << 10, 1 << 20)?
            .unwrap_or(defaults.failure_report_max_size),
    })
}

/// `ignore_hosts` by default: the loopback networks.
fn default_ignore_hosts() -> HostList {
    HostList {
        nets: ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        names: Vec::new(),
    }
}

/// Adds the entries of `ignore_hosts_file` to `hosts`: one address,
/// network or host name per line; `#` starts a comment, blank lines are
/// skipped. The file is read at start and on every reload.
fn read_hosts_file(path: &Path, hosts: &mut HostList) -> Result<(), ConfigError> {
    let file = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        kind: ConfigErrorKind::Read(e),
    })?;
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        if hosts.push(entry).is_none() {
            return Err(ConfigError {
                file,
                line: Some(index + 1),
                kind: ConfigErrorKind::InvalidValue {
                    key: "ignore_hosts_file",
                    value: entry.to_string(),
                    expected: "one address, network such as 192.0.2.0/24 or host name such as mail.example.com or .example.com per line",
                },
            });
        }
    }
    Ok(())
}

/// The same rule as the library's: no spaces, controls or `;`.
pub(crate) fn valid_authserv_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == '"' || c == '(')
}

fn parse_nameserver(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// `192.0.2.0/24`, `192.0.2.1`, `2001:db8::/32`, `2001:db8::1`, and
/// Postfix's `mynetworks` notation for IPv6: `[2001:db8::]/32`, `[::1]`.
fn parse_net(text: &str) -> Option<IpNet> {
    let text = match text.strip_prefix('[') {
        Some(rest) => {
            let (address, length) = rest.split_once(']')?;
            if !(length.is_empty() || length.starts_with('/')) {
                return None;
            }
            return parse_net(&format!("{address}{length}"));
        }
        None => text,
    };
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

fn parse_domain_pattern(text: &str) -> Option<DomainPattern> {
    match text.strip_prefix('.') {
        Some(rest) => normalize_domain(rest).ok().map(DomainPattern::Below),
        None => normalize_domain(text).ok().map(DomainPattern::Exact),
    }
}

fn parse_mode(value: &Value) -> Option<u32> {
    let mode = match value {
        Value::Integer(n) => u32::try_from(*n).ok()?,
        Value::String(s) => u32::from_str_radix(s.strip_prefix("0o").unwrap_or(s), 8).ok()?,
        _ => return None,
    };
    (mode <= 0o777).then_some(mode)
}

fn parse_size(value: &Value) -> Option<usize> {
    size_of(value).filter(|&size| size >= 64 * 1024)
}

/// A size in bytes: a number, or a string such as `"64M"`, `"512k"`.
fn size_of(value: &Value) -> Option<usize> {
    let size = match value {
        Value::Integer(n) => usize::try_from(*n).ok()?,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let n: usize = digits.parse().ok()?;
            let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kib" | "kb" => 1 << 10,
                "m" | "mib" | "mb" => 1 << 20,
                "g" | "gib" | "gb" => 1 << 30,
                _ => return None,
            };
            n.checked_mul(factor)?
        }
        _ => return None,
    };
    Some(size)
}

/// One key of the file: its value and the line of the key.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    /// 1-based line number of the key.
    pub line: usize,
    /// The value as written.
    pub value: Value,
}

/// The file as written: each top-level key with its line, nothing checked
/// yet but the TOML syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct RawConfig {
    file: String,
    entries: BTreeMap<String, RawEntry>,
}

impl RawConfig {
    /// Parses TOML text; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for invalid TOML syntax.
    pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
        let table: BTreeMap<Spanned<String>, Spanned<Value>> =
            toml::from_str(text).map_err(|e| ConfigError {
                file: file.to_string(),
                line: e.span().map(|span| line_of(text, span.start)),
                kind: ConfigErrorKind::Syntax(e.message().trim().to_string()),
            })?;
        let entries = table
            .into_iter()
            .map(|(key, value)| {
                let line = line_of(text, key.span().start);
                (
                    key.into_inner(),
                    RawEntry {
                        line,
                        value: value.into_inner(),
                    },
                )
            })
            .collect();
        Ok(RawConfig {
            file: file.to_string(),
            entries,
        })
    }

    fn take(&mut self, key: &str) -> Option<RawEntry> {
        self.entries.remove(key)
    }

    fn error(&self, line: usize, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: Some(line),
            kind,
        }
    }

    fn invalid(&self, entry: &RawEntry, key: &'static str, expected: &'static str) -> ConfigError {
        self.invalid_item(entry, &entry.value, key, expected)
    }

    fn invalid_item(
        &self,
        entry: &RawEntry,
        value: &Value,
        key: &'static str,
        expected: &'static str,
    ) -> ConfigError {
        self.error(
            entry.line,
            ConfigErrorKind::InvalidValue {
                key,
                value: show_value(value),
                expected,
            },
        )
    }

    /// Maps a library setting error to our key and its line.
    fn library_error(&self, error: dmarc_verifier::Error) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: None,
            kind: ConfigErrorKind::Library(error),
        }
    }

    fn string(
        &self,
        entry: &RawEntry,
        key: &'static str,
        expected: &'static str,
    ) -> Result<String, ConfigError> {
        match &entry.value {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(self.invalid(entry, key, expected)),
        }
    }

    /// A list of domain patterns (`"example.com"`, `".example.com"`);
    /// empty when the key is absent.
    /// A list of authserv-ids (host names without spaces or `;`).
    fn authserv_ids(&mut self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(Vec::new());
        };
        let expected = "a list of host names such as [\"mx2.example.net\"]";
        let Value::Array(items) = &entry.value else {
            return Err(self.invalid(&entry, key, expected));
        };
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .filter(|id| valid_authserv_id(id))
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| self.invalid_item(&entry, item, key, expected))
            })
            .collect()
    }

    fn domain_patterns(&mut self, key: &'static str) -> Result<Vec<DomainPattern>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(Vec::new());
        };
        let expected = "a list of domains such as \"example.com\" or \".example.com\"";
        let Value::Array(items) = &entry.value else {
            return Err(self.invalid(&entry, key, expected));
        };
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(parse_domain_pattern)
                    .ok_or_else(|| self.invalid_item(&entry, item, key, expected))
            })
            .collect()
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        match entry.value {
            Value::Boolean(b) => Ok(Some(b)),
            _ => Err(self.invalid(&entry, key, "true or false")),
        }
    }

    fn integer(
        &mut self,
        key: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Option<usize>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        match entry.value {
            Value::Integer(n) => match usize::try_from(n) {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(self.range_error(&entry, key, min, max)),
            },
            _ => Err(self.range_error(&entry, key, min, max)),
        }
    }

    fn range_error(
        &self,
        entry: &RawEntry,
        key: &'static str,
        min: usize,
        max: usize,
    ) -> ConfigError {
        // `expected` is static text; the common ranges are spelled out.
        let expected: &'static str = match (min, max) {
            (1, 100_000) => "a whole number from 1 to 100000",
            (1, 10) => "a whole number from 1 to 10",
            (0, 10_000_000) => "a whole number from 0 to 10000000",
            (1, 100) => "a whole number from 1 to 100",
            (512, 8192) => "a number of bits from 512 to 8192",
            (1, 10_000_000) => "a whole number from 1 to 10000000",
            (1, 1000) => "a whole number from 1 to 1000",
            (1, 3650) => "a whole number of days from 1 to 3650",
            (0, 100_000) => "a whole number from 0 to 100000",
            (2, 100) => "a whole number from 2 to 100",
            (1, 10_000) => "a whole number from 1 to 10000",
            _ => "a whole number in range",
        };
        self.invalid(entry, key, expected)
    }

    /// A size in bytes (a number or `"64M"`, `"512k"`) from `min` to
    /// `max`.
    fn size(
        &mut self,
        key: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Option<usize>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        match size_of(&entry.value) {
            Some(size) if (min..=max).contains(&size) => Ok(Some(size)),
            _ => Err(self.invalid(
                &entry,
                key,
                match key {
                    "report_queue_memory" => "a size from 1M to 1T, such as \"64M\"",
                    _ => "a size from 8k to 1M, such as \"64k\"",
                },
            )),
        }
    }

    fn seconds(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        let seconds = match entry.value {
            Value::Integer(n) => n as f64,
            Value::Float(f) => f,
            _ => f64::NAN,
        };
        if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
            Ok(Some(Duration::from_secs_f64(seconds)))
        } else {
            Err(self.invalid(&entry, key, "a number of seconds above 0, such as 5 or 0.5"))
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        choices: &[(&str, T)],
        expected: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        let found = entry
            .value
            .as_str()
            .and_then(|s| choices.iter().find(|(name, _)| *name == s))
            .map(|(_, value)| *value);
        match found {
            Some(value) => Ok(Some(value)),
            None => Err(self.invalid(&entry, key, expected)),
        }
    }

    fn reply_text(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(entry) = self.take(key) else {
            return Ok(None);
        };
        match &entry.value {
            // indymilter refuses CR, LF and lines over 980 octets; a domain
            // is at most 253.
            Value::String(s)
                if !s.is_empty() && s.len() <= 700 && !s.chars().any(|c| c.is_control()) =>
            {
                Ok(Some(s.clone()))
            }
            _ => Err(self.invalid(
                &entry,
                key,
                "one line of text of at most 700 characters, {domain} for the domain",
            )),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why a configuration was refused.
#[derive(Debug)]
pub struct ConfigError {
    /// The file (as given on the command line).
    pub file: String,
    /// The line of the offending key, when there is one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// What is wrong with a configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Read(io::Error),
    /// The text is not valid TOML.
    Syntax(String),
    /// A key we do not know (a typo, or a section).
    UnknownKey(String),
    /// A value of the wrong type or out of range.
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// The verifier refused the settings (or the Public Suffix List or the
    /// resolver configuration could not be loaded).
    Library(dmarc_verifier::Error),
    /// A key that another key needs is not set.
    MissingKey {
        /// The key missing.
        key: &'static str,
        /// The key that needs it.
        needed_by: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        f.write_str(": ")?;
        match &self.kind {
            ConfigErrorKind::Read(e) => write!(f, "cannot read the file: {e}"),
            ConfigErrorKind::Syntax(message) => write!(f, "invalid TOML: {message}"),
            ConfigErrorKind::UnknownKey(key) => write!(f, "unknown key {key:?}"),
            ConfigErrorKind::InvalidValue {
                key,
                value,
                expected,
            } => write!(f, "invalid value {value:?} for {key} (expected {expected})"),
            ConfigErrorKind::Library(e) => write!(f, "{e}"),
            ConfigErrorKind::MissingKey { key, needed_by } => {
                write!(f, "{key} is missing; {needed_by} needs it")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Read(e) => Some(e),
            ConfigErrorKind::Library(e) => Some(e),
            _ => None,
        }
    }
}
