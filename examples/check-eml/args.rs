//! The command line, parsed by clap; its errors are turned into one line on
//! stderr and exit status 2 by `main`.

use clap::{Parser, ValueEnum};
use dmarc_verifier::{
    message::normalize_domain, DiscoveryMethod, Disposition, PctMode, PolicyOverride,
    TrustedForwarder,
};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// The authserv-id written into the Authentication-Results header when
/// `--authserv-id` is not given: fixed, so that the output of a run does not
/// depend on the machine, and clearly not the name of a real MX.
pub const DEFAULT_AUTHSERV_ID: &str = "check-eml.local";

/// Verify a saved message (.eml) against SPF, DKIM and DMARC.
///
/// Prints the DMARC verdict, the reason for each check, the envelope values
/// used (and where they were taken from) and the Authentication-Results
/// header a receiver would add. Envelope values not given as options are
/// inferred from the headers the receiving MTA added.
#[derive(Debug, Parser)]
#[command(
    name = "check-eml",
    version,
    after_help = "Exit status: 0 when the evaluation completed, whatever the verdict; \
                  1 when the tool could not run (no DNS resolver); \
                  2 for bad arguments or an input that is not a mail message."
)]
pub struct Args {
    /// The message (RFC 5322, as saved by a mail client or `postcat -bh`),
    /// or `-` to read it from standard input.
    #[arg(value_name = "FILE.eml | -")]
    pub file: PathBuf,

    /// The SMTP client's address [default: from the topmost Received header].
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<IpAddr>,

    /// The HELO/EHLO name [default: from the topmost Received header].
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,

    /// The MAIL FROM address; an empty string is the null sender `<>`
    /// [default: from the Return-Path header].
    #[arg(long, value_name = "ADDR")]
    pub mail_from: Option<String>,

    /// Ask this DNS server (repeatable; the port defaults to 53)
    /// [default: the system resolver].
    #[arg(
        long = "nameserver",
        value_name = "IP[:PORT]",
        value_parser = parse_nameserver,
        conflicts_with = "zone"
    )]
    pub nameservers: Vec<SocketAddr>,

    /// Seconds to wait for one DNS answer (tries: 2)
    /// [default: 5].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub dns_timeout: Option<Duration>,

    /// Answer every DNS question from this RFC 1035 zone file, served on
    /// 127.0.0.1 by an in-process server: no other network access.
    #[arg(long, value_name = "FILE")]
    pub zone: Option<PathBuf>,

    /// How the DMARC record and Organizational Domains are found: the
    /// Public Suffix List (RFC 7489) or the DNS tree walk (RFC 9989).
    #[arg(long, value_enum, value_name = "METHOD", default_value = "psl")]
    pub discovery: Discovery,

    /// What `pct` does: honor it (RFC 7489), ignore it (RFC 9989), or read
    /// pct<100 as t=y.
    #[arg(long, value_enum, value_name = "MODE", default_value = "honor")]
    pub pct: Pct,

    /// Fix the pct sampling draw: the message is sampled when N < pct
    /// [default: random].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=99))]
    pub pct_draw: Option<u8>,

    /// The Public Suffix List file [default: Debian's
    /// /usr/share/publicsuffix/public_suffix_list.dat, else the library's
    /// bundled copy].
    #[arg(long, value_name = "FILE")]
    pub psl: Option<PathBuf>,

    /// The authserv-id of the Authentication-Results header.
    #[arg(long, value_name = "ID", default_value = DEFAULT_AUTHSERV_ID)]
    pub authserv_id: String,

    /// Trust the ARC sets sealed by this domain (the ARC-Seal's d=;
    /// repeatable): a chain that passes, whose newest set sealed by it
    /// recorded dmarc=pass for the From domain and still verifies, turns a
    /// DMARC failure into accept (override trusted_forwarder).
    #[arg(long = "trusted-arc-sealer", value_name = "DOMAIN", value_parser = parse_domain)]
    pub trusted_arc_sealers: Vec<String>,

    /// Trust mail from this client address or network, or with a passing
    /// DKIM signature of this domain (dkim:DOMAIN; repeatable): a DMARC
    /// failure becomes accept (override trusted_forwarder).
    #[arg(
        long = "trusted-forwarder",
        value_name = "IP|CIDR|dkim:DOMAIN",
        value_parser = parse_forwarder
    )]
    pub trusted_forwarders: Vec<TrustedForwarder>,

    /// What a DMARC failure becomes for mailing-list mail: a List-Id whose
    /// domain a passing DKIM signature or SPF pass is aligned with
    /// (override mailing_list).
    #[arg(long, value_enum, value_name = "ACTION", default_value = "quarantine")]
    pub mailing_list_action: ListAction,

    /// What a DMARC failure of this From domain becomes: accept or
    /// quarantine (DOMAIN=ACTION; repeatable; override local_policy).
    #[arg(
        long = "policy-override",
        value_name = "DOMAIN=ACTION",
        value_parser = parse_policy_override
    )]
    pub policy_overrides: Vec<PolicyOverride>,

    /// Print one JSON object instead of text (schema: docs/check-eml.md).
    #[arg(long)]
    pub json: bool,

    /// Also print the decision trail: every DNS question and answer, the
    /// record applied, each alignment check, the policy before and after
    /// pct and t.
    #[arg(long)]
    pub explain: bool,
}

/// `--discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Discovery {
    /// Public Suffix List (RFC 7489).
    Psl,
    /// DNS tree walk (RFC 9989 §4.10).
    TreeWalk,
}

impl From<Discovery> for DiscoveryMethod {
    fn from(discovery: Discovery) -> Self {
        match discovery {
            Discovery::Psl => DiscoveryMethod::Psl,
            Discovery::TreeWalk => DiscoveryMethod::TreeWalk,
        }
    }
}

/// `--pct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pct {
    /// Messages not sampled get the next lower policy (RFC 7489 §6.6.4).
    Honor,
    /// pct is historic and ignored (RFC 9989).
    Ignore,
    /// pct below 100 is read as t=y.
    AsTestMode,
}

impl From<Pct> for PctMode {
    fn from(pct: Pct) -> Self {
        match pct {
            Pct::Honor => PctMode::Honor,
            Pct::Ignore => PctMode::Ignore,
            Pct::AsTestMode => PctMode::AsTestMode,
        }
    }
}

/// A number of seconds above zero, such as `5` or `0.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "expected a number of seconds above 0, such as 5 or 0.5".to_string())
}

/// `--mailing-list-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListAction {
    /// Deliver to quarantine (the default).
    Quarantine,
    /// Deliver normally.
    Accept,
    /// No mailing-list override.
    Off,
}

impl ListAction {
    /// The library's setting: `None` for off.
    pub fn disposition(self) -> Option<Disposition> {
        match self {
            ListAction::Quarantine => Some(Disposition::Quarantine),
            ListAction::Accept => Some(Disposition::Accept),
            ListAction::Off => None,
        }
    }
}

/// A domain name, as DMARC compares it (A-labels, lower case).
fn parse_domain(text: &str) -> Result<String, String> {
    normalize_domain(text).map_err(|_| "expected a domain name".to_string())
}

/// `IP`, `IP/LEN` or `dkim:DOMAIN`.
fn parse_forwarder(text: &str) -> Result<TrustedForwarder, String> {
    text.parse()
}

/// `DOMAIN=accept` or `DOMAIN=quarantine`.
fn parse_policy_override(text: &str) -> Result<PolicyOverride, String> {
    let (domain, action) = text
        .split_once('=')
        .ok_or("expected DOMAIN=ACTION, such as partner.example=quarantine")?;
    let action = match action {
        "accept" => Disposition::Accept,
        "quarantine" => Disposition::Quarantine,
        other => return Err(format!("{other:?} is not an action (accept or quarantine)")),
    };
    Ok(PolicyOverride {
        from_domain: parse_domain(domain)?,
        action,
    })
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 when none is given.
fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| "expected an IP address with an optional :PORT".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "x", "inf", "NaN", "7200"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn override_option_forms() {
        assert_eq!(
            parse_domain("Lists.Example.ORG."),
            Ok("lists.example.org".into())
        );
        assert!(parse_domain("not a domain").is_err());
        assert_eq!(
            parse_policy_override("Partner.example=quarantine"),
            Ok(PolicyOverride {
                from_domain: "partner.example".into(),
                action: Disposition::Quarantine
            })
        );
        for bad in [
            "partner.example",
            "partner.example=reject",
            "=accept",
            "x y=accept",
        ] {
            assert!(parse_policy_override(bad).is_err(), "{bad}");
        }
        assert!(parse_forwarder("dkim:forwarder.example.net").is_ok());
        assert!(parse_forwarder("192.0.2.0/24").is_ok());
        assert!(parse_forwarder("forwarder.example.net").is_err());
    }

    #[test]
    fn nameserver_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("192.0.2.53", Some("192.0.2.53:53")),
            ("127.0.0.1:5353", Some("127.0.0.1:5353")),
            ("2001:db8::53", Some("[2001:db8::53]:53")),
            ("[2001:db8::53]", Some("[2001:db8::53]:53")),
            ("[::1]:5353", Some("[::1]:5353")),
            ("ns.example.com", None),
            ("127.0.0.1:x", None),
        ];
        for &(text, expected) in cases {
            let got = parse_nameserver(text).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), expected, "{text}");
        }
    }
}
