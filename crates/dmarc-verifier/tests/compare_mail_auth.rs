//! Our tree-walk evaluation against mail-auth's own `verify_dmarc` (which
//! implements RFC 9989 §4.10) on the same zone, message and envelope, through
//! the same DNS server. Where the two differ, one of us is wrong: each
//! expected difference names the RFC section that decides, and the test
//! fails if a listed difference disappears or an unlisted one appears.

mod common;

use common::{data, envelope, explain, message, setup, zone};
use dmarc_verifier::{DiscoveryMethod, DmarcResult, Envelope, PctMode, Policy};
use mail_auth::{
    dmarc::verify::DmarcParameters,
    hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    spf::verify::SpfParameters,
    AuthenticatedMessage, DmarcResult as MaResult, MessageAuthenticator,
};
use std::{net::SocketAddr, time::Duration};

fn authenticator(addr: SocketAddr) -> MessageAuthenticator {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])],
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(400);
    opts.attempts = 1;
    opts.ndots = 0;
    MessageAuthenticator::new(config, opts).expect("resolver")
}

/// mail-auth's verdict: (result word, policy in force).
async fn mail_auth_verdict(addr: SocketAddr, env: &Envelope, raw: &[u8]) -> (&'static str, Policy) {
    let auth = authenticator(addr);
    let raw = String::from_utf8_lossy(raw)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let message = AuthenticatedMessage::parse(raw.as_bytes()).expect("message");
    let dkim = auth.verify_dkim(&message).await;
    let ip = env.client_ip.expect("client ip");
    let spf = auth
        .check_host(SpfParameters::mail_from(
            ip,
            &env.helo,
            "mx.test",
            &env.mail_from,
        ))
        .await;
    let mail_from_domain = env.mail_from_domain().unwrap_or(&env.helo).to_string();
    let output = auth
        .verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            &mail_from_domain,
            &spf,
        ))
        .await;
    let result = match output.result() {
        MaResult::Pass => "pass",
        MaResult::Fail(_) => "fail",
        MaResult::TempError(_) => "temperror",
        MaResult::PermError(_) => "permerror",
        MaResult::None => "none",
    };
    let policy = match output.policy() {
        mail_auth::dmarc::Policy::Reject => Policy::Reject,
        mail_auth::dmarc::Policy::Quarantine => Policy::Quarantine,
        _ => Policy::None,
    };
    (result, policy)
}

struct Case {
    name: &'static str,
    zone: &'static str,
    ip: &'static str,
    mail_from: &'static str,
    message: Message,
    /// `Some(reason)` when we knowingly differ, with the deciding rule.
    differs: Option<&'static str>,
}

enum Message {
    From(&'static str),
    File(&'static str),
}

const BASE: &str = r#"
example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject"
mail.example.com. IN A 192.0.2.1
example.net. IN TXT "v=spf1 -all"
example.org. IN TXT "v=spf1 -all"
_dmarc.example.org. IN TXT "v=DMARC1; p=quarantine; t=y"
_dmarc.multi.example.org. IN TXT "v=DMARC1; p=none"
_dmarc.multi.example.org. IN TXT "v=DMARC1; p=none"
_dmarc.dept.example.com. IN TXT "v=DMARC1; p=none; psd=n"
a.dept.example.com. IN A 192.0.2.2
_dmarc.com. IN TXT "v=DMARC1; p=reject; psd=y"
"#;

fn cases() -> Vec<Case> {
    use Message::*;
    vec![
        Case { name: "aligned SPF pass", zone: BASE, ip: "192.0.2.5", mail_from: "a@example.com", message: From("a@example.com"), differs: None },
        Case { name: "forged, p=reject", zone: BASE, ip: "203.0.113.9", mail_from: "a@example.com", message: From("a@example.com"), differs: None },
        Case { name: "aligned DKIM pass", zone: BASE, ip: "203.0.113.9", mail_from: "x@example.net", message: File("dkim-pass-rsa.eml"), differs: None },
        Case { name: "relaxed DKIM from a subdomain", zone: BASE, ip: "203.0.113.9", mail_from: "x@example.net", message: File("dkim-sub.eml"), differs: None },
        Case { name: "third-party DKIM", zone: BASE, ip: "203.0.113.9", mail_from: "x@example.net", message: File("dkim-third-party.eml"), differs: None },
        Case { name: "existing subdomain, sp", zone: BASE, ip: "203.0.113.9", mail_from: "a@mail.example.com", message: From("a@mail.example.com"), differs: None },
        Case { name: "non-existent subdomain, np", zone: BASE, ip: "203.0.113.9", mail_from: "a@nope.example.com", message: From("a@nope.example.com"), differs: None },
        Case { name: "t=y lowers quarantine", zone: BASE, ip: "203.0.113.9", mail_from: "a@example.org", message: From("a@example.org"), differs: None },
        Case { name: "psd=n marks the organizational domain", zone: BASE, ip: "203.0.113.9", mail_from: "a@a.dept.example.com", message: From("a@a.dept.example.com"), differs: None },
        Case { name: "public suffix domain policy", zone: BASE, ip: "203.0.113.9", mail_from: "a@nodmarc.com", message: From("a@nodmarc.com"), differs: None },
        Case {
            name: "several records at the author domain",
            zone: BASE,
            ip: "203.0.113.9",
            mail_from: "a@multi.example.org",
            message: From("a@multi.example.org"),
            differs: None,
        },
        Case {
            name: "From with two domains",
            zone: BASE,
            ip: "192.0.2.5",
            mail_from: "a@example.com",
            message: From("a@example.com, b@example.org"),
            differs: Some(
                "RFC 9989 §11.5 (RFC 7489 §6.6.1): apply DMARC to each Author Domain and the strictest failing policy; \
                 mail-auth exempts such messages (result none), which lets a spoofed second domain through",
            ),
        },
    ]
}

#[tokio::test]
async fn tree_walk_agrees_with_mail_auth_verify_dmarc() {
    let mut problems = Vec::new();
    for case in cases() {
        let (dns, verifier) = setup(&zone(case.zone), |c| {
            c.discovery = DiscoveryMethod::TreeWalk;
            // RFC 9989 has no pct; mail-auth ignores it too.
            c.pct = PctMode::Ignore;
        })
        .await;
        let raw = match case.message {
            Message::From(from) => message(from),
            Message::File(file) => data(file),
        };
        let env = envelope(case.ip, case.mail_from);
        let ours = verifier.verify(&env, &raw).await;
        let our_policy = ours
            .decisive_evaluation()
            .and_then(|e| e.policy)
            .map_or(Policy::None, |p| p.applied);
        let our_result = ours.dmarc.as_str();
        // mail-auth reports the policy only for failing messages.
        let our_policy = if ours.dmarc == DmarcResult::Fail {
            our_policy
        } else {
            Policy::None
        };
        let theirs = mail_auth_verdict(dns.addr(), &env, &raw).await;
        let theirs_policy = if theirs.0 == "fail" {
            theirs.1
        } else {
            Policy::None
        };
        let same = (our_result, our_policy) == (theirs.0, theirs_policy);
        match (same, case.differs) {
            (true, None) | (false, Some(_)) => {}
            (true, Some(reason)) => problems.push(format!(
                "{}: listed as a difference ({reason}) but both say {our_result}/{our_policy}",
                case.name
            )),
            (false, None) => problems.push(format!(
                "{}: ours {our_result}/{our_policy}, mail-auth {}/{}\n{}",
                case.name,
                theirs.0,
                theirs_policy,
                explain(&ours)
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
