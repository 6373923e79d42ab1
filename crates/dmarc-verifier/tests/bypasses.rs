//! Issue 11: forged mail for a `p=reject` domain must never be accepted
//! or turned into a tempfail by malformed grammar, cross-message or
//! cross-record-type cache state, DKIM signatures that do not cover From,
//! or DNS failures that cannot matter. Each test is a class of the review's
//! reproductions, with variants.
//!
//! The zone: `victim.com` publishes `v=spf1 ip4:192.0.2.0/24 -all` and
//! `p=reject`; `evil.net` is the attacker's, `v=spf1 ip4:203.0.113.0/24
//! -all`. DKIM keys are Ed25519 keys made for each run.

mod common;

use base64::Engine as _;
use common::{config, explain};
use dmarc_verifier::{
    DiscoveryMethod, Disposition, DkimResult, DmarcResult, Envelope, SpfResult, Verdict, Verifier,
    VerifierConfig,
};
use mail_auth::{crypto::Ed25519Key, dkim::DkimSigner, headers::HeaderWriter};
use test_dns::{Fault, TestDns};

const VICTIM_ZONE: &str = r#"
victim.com. IN SOA ns.victim.com. hostmaster.victim.com. 1 3600 900 604800 300
victim.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.victim.com. IN TXT "v=DMARC1; p=reject; rua=mailto:d@victim.com"
evil.net. IN SOA ns.evil.net. hostmaster.evil.net. 1 3600 900 604800 300
evil.net. IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
"#;

/// An Ed25519 key pair made for this run.
struct Key {
    pkcs8: Vec<u8>,
    public: String,
}

impl Key {
    fn new() -> Key {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("generate");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("key");
        let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
        Key { pkcs8, public }
    }

    /// The key record text (`k=ed25519`).
    fn record(&self) -> String {
        format!("v=DKIM1; k=ed25519; p={}", self.public)
    }

    /// `message` with a DKIM-Signature by this key for `d=`/`s=` over
    /// `headers` prepended.
    fn sign(&self, domain: &str, selector: &str, headers: &[&str], message: &[u8]) -> Vec<u8> {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("key");
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(headers.iter().copied())
            .sign(message)
            .expect("sign");
        let mut out = signature.to_header().into_bytes();
        out.extend_from_slice(message);
        out
    }
}

fn message_from(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\nDate: Mon, 10 Jun 2024 06:13:20 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// The review's envelope: the attacker's client, HELO and MAIL FROM.
fn attacker() -> Envelope {
    Envelope::new("203.0.113.5".parse().unwrap(), "mx.evil.net", "a@evil.net")
}

/// The victim's own outbound server.
fn victim() -> Envelope {
    Envelope::new(
        "192.0.2.5".parse().unwrap(),
        "mail.victim.com",
        "bounce@victim.com",
    )
}

async fn start(extra: &str, tweak: impl FnOnce(&mut VerifierConfig)) -> (TestDns, Verifier) {
    let dns = TestDns::start(&format!("{VICTIM_ZONE}\n{extra}\n"))
        .await
        .expect("test DNS");
    let mut cfg = config(&dns);
    tweak(&mut cfg);
    let verifier = Verifier::new(cfg).expect("verifier");
    (dns, verifier)
}

async fn check(verifier: &Verifier, envelope: &Envelope, message: &[u8]) -> Verdict {
    verifier.verify_with_draw(envelope, message, 0).await
}

/// Asserts the forgery is not delivered: rejected (or, where the grammar
/// is broken, refused as a permerror).
#[track_caller]
fn assert_refused(what: &str, verdict: &Verdict) {
    assert_eq!(
        verdict.disposition,
        Disposition::Reject,
        "{what}: {} {}\n{}\n{}",
        verdict.dmarc.as_str(),
        verdict.disposition,
        verdict.authentication_results,
        explain(verdict)
    );
}

// §1 Author Domain extraction.

#[tokio::test]
async fn malformed_from_fields_are_refused_never_read_short() {
    let (_dns, verifier) = start("", |_| {}).await;
    let values = [
        // obs-route swallowing mailboxes (RFC 5322 §4.4).
        "<@x>, ceo@victim.com, <:y@evil.net>",
        "<@x>,ceo@victim.com,<@y:z@evil.net>",
        "<@x, ceo@victim.com:y@evil.net>",
        "<,ceo@victim.com>, <x@evil.net>",
        "<@evil.net:x@evil.net>, <@x>, ceo@victim.com",
        // Text that breaks RFC 2047 §5(3) is not an encoded-word.
        "=?x?q?,ceo@victim.com,?= <x@evil.net>",
        "=?utf-8?q?ceo@victim.com?= <x@evil.net>",
        "=?x?b?<ceo@victim.com>?= x@evil.net",
        "=?x?q?a?= ceo@victim.com, =?x?q?b?= <x@evil.net>",
        "=?x?q?;?= ceo@victim.com, x@evil.net",
        "Group:=?x?q?,?= ceo@victim.com;, x@evil.net",
    ];
    for value in values {
        let verdict = check(&verifier, &attacker(), &message_from(value, "s")).await;
        assert_refused(value, &verdict);
        // Never evil.net alone.
        assert_ne!(
            verdict.author_domains,
            Ok(vec!["evil.net".to_string()]),
            "{value}"
        );
    }
}

#[tokio::test]
async fn white_space_before_the_colon_still_names_a_from_field() {
    let (_dns, verifier) = start("", |_| {}).await;
    for name in ["From ", "From\t", "FROM  ", "from \t ", "fRoM"] {
        // Two From fields, one in obsolete syntax: multiple-from.
        let raw =
            format!("{name}: ceo@victim.com\r\nFrom: a@evil.net\r\nSubject: s\r\n\r\nHi.\r\n");
        let verdict = check(&verifier, &attacker(), raw.as_bytes()).await;
        assert_refused(name, &verdict);
        assert!(
            verdict
                .authentication_results
                .contains("reason=multiple-from"),
            "{name:?}: {}",
            verdict.authentication_results
        );
        // The other order.
        let raw =
            format!("From: a@evil.net\r\n{name}: ceo@victim.com\r\nSubject: s\r\n\r\nHi.\r\n");
        let verdict = check(&verifier, &attacker(), raw.as_bytes()).await;
        assert_refused(name, &verdict);
        // Alone, it is the From field, and victim.com's policy applies.
        let raw = format!("{name}: ceo@victim.com\r\nSubject: s\r\n\r\nHi.\r\n");
        let verdict = check(&verifier, &attacker(), raw.as_bytes()).await;
        assert_eq!(
            verdict.author_domains,
            Ok(vec!["victim.com".to_string()]),
            "{name:?}"
        );
        assert_refused(name, &verdict);
    }
}

// §2 The DNS cache: an answer is what the DNS gives, whoever asked first.

/// The zone extra for the cache tests: victim.com's DKIM key at s1, and
/// attacker domains whose SPF records point at the victim's names.
fn cache_zone(key: &Key) -> String {
    format!(
        r#"
s1._domainkey.victim.com. IN TXT "{}"
inc.evil.net. IN TXT "v=spf1 include:s1._domainkey.victim.com -all"
exp.evil.net. IN TXT "v=spf1 -all exp=victim.com"
exp2.evil.net. IN TXT "v=spf1 -all exp=s1._domainkey.victim.com"
dmarc.evil.net. IN TXT "v=spf1 include:_dmarc.victim.com -all"
redir.evil.net. IN TXT "v=spf1 redirect=s1._domainkey.victim.com"
"#,
        key.record()
    )
}

#[tokio::test]
async fn a_dkim_key_name_as_the_spf_domain_of_the_same_message() {
    let key = Key::new();
    let (_dns, verifier) = start(&cache_zone(&key), |_| {}).await;
    // A bogus signature makes the key of s1._domainkey.victim.com be asked
    // for; MAIL FROM names the same name.
    let raw = [
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=victim.com; s=s1; h=from; bh=AAAA; b=AAAA\r\n".as_slice(),
        &message_from("ceo@victim.com", "s"),
    ]
    .concat();
    for mail_from in ["a@s1._domainkey.victim.com", "a@S1._DOMAINKEY.victim.com."] {
        let env = Envelope::new("203.0.113.5".parse().unwrap(), "mx.evil.net", mail_from);
        let verdict = check(&verifier, &env, &raw).await;
        assert_eq!(verdict.spf.result, SpfResult::None, "{}", explain(&verdict));
        assert_eq!(verdict.dmarc, DmarcResult::Fail, "{}", explain(&verdict));
        assert_refused(mail_from, &verdict);
    }
}

#[tokio::test]
async fn no_sender_changes_another_senders_verdict() {
    let key = Key::new();
    let (_dns, verifier) = start(&cache_zone(&key), |_| {}).await;
    let legit = key.sign(
        "victim.com",
        "s1",
        &["From", "To", "Subject"],
        &message_from("ceo@victim.com", "legit"),
    );
    let attacks: Vec<(Envelope, Vec<u8>)> = [
        "inc.evil.net",
        "exp.evil.net",
        "exp2.evil.net",
        "dmarc.evil.net",
        "redir.evil.net",
    ]
    .iter()
    .map(|domain| {
        (
            Envelope::new(
                "203.0.113.5".parse().unwrap(),
                "mx.evil.net",
                &format!("a@{domain}"),
            ),
            message_from(&format!("a@{domain}"), "attack"),
        )
    })
    .collect();
    let legit_is_fine = |verdict: &Verdict, when: &str| {
        assert_eq!(
            verdict.spf.result,
            SpfResult::Pass,
            "{when}: {}",
            explain(verdict)
        );
        assert_eq!(
            verdict.dkim[0].result,
            DkimResult::Pass,
            "{when}: {}",
            explain(verdict)
        );
        assert_eq!(verdict.dmarc, DmarcResult::Pass, "{when}");
        assert_eq!(verdict.disposition, Disposition::Accept, "{when}");
    };
    // Attacks first, then the victim's mail; then interleaved, both orders.
    for (env, raw) in &attacks {
        let _ = check(&verifier, env, raw).await;
    }
    legit_is_fine(&check(&verifier, &victim(), &legit).await, "after attacks");
    for (env, raw) in &attacks {
        legit_is_fine(
            &check(&verifier, &victim(), &legit).await,
            "before an attack",
        );
        let verdict = check(&verifier, env, raw).await;
        assert_ne!(verdict.spf.result, SpfResult::Pass, "{}", explain(&verdict));
        legit_is_fine(
            &check(&verifier, &victim(), &legit).await,
            "after an attack",
        );
    }
    // A forgery signed with the wrong key never passes, whatever came before.
    let other = Key::new();
    let forged = other.sign(
        "victim.com",
        "s1",
        &["From", "To", "Subject"],
        &message_from("ceo@victim.com", "forged"),
    );
    assert_refused(
        "forged signature",
        &check(&verifier, &attacker(), &forged).await,
    );
}

// §3 DKIM.

#[tokio::test]
async fn a_signature_that_does_not_cover_from_is_ignored() {
    let key = Key::new();
    let (dns, verifier) = start(&cache_zone(&key), |_| {}).await;
    for headers in [
        &["To", "Subject"][..],
        &["Subject"],
        &["To", "Subject", "Date"],
    ] {
        // Signed by the victim over To and Subject; the forger then writes
        // a From above the signature.
        let signed = key.sign(
            "victim.com",
            "s1",
            headers,
            b"To: rcpt@example.org\r\nSubject: hi\r\n\r\nHello.\r\n",
        );
        let raw = [b"From: helpdesk@victim.com\r\n".as_slice(), &signed].concat();
        let before = dns.query_count("s1._domainkey.victim.com");
        let verdict = check(&verifier, &attacker(), &raw).await;
        assert_eq!(verdict.dkim.len(), 1);
        assert_eq!(
            verdict.dkim[0].result,
            DkimResult::PermError,
            "{}",
            explain(&verdict)
        );
        assert_eq!(
            verdict.dkim[0].reason.as_deref(),
            Some("From field not signed (RFC 6376 §6.1.1)")
        );
        assert_eq!(verdict.dkim[0].domain, "victim.com");
        assert!(!verdict.evaluations[0].dkim_aligned);
        assert_refused("h= without From", &verdict);
        // Ignored means not verified: its key is not even asked for.
        assert_eq!(dns.query_count("s1._domainkey.victim.com"), before);
    }
    // "from" in any case, anywhere in h=, is a signed From.
    let signed = key.sign(
        "victim.com",
        "s1",
        &["Subject", "FROM"],
        &message_from("ceo@victim.com", "ok"),
    );
    let verdict = check(&verifier, &victim(), &signed).await;
    assert_eq!(
        verdict.dkim[0].result,
        DkimResult::Pass,
        "{}",
        explain(&verdict)
    );
}

#[tokio::test]
async fn result_words_follow_rfc8601_and_the_key_comes_before_the_body() {
    let key = Key::new();
    let spki = {
        // A 32-byte Ed25519 key wrapped in SubjectPublicKeyInfo (RFC 8463
        // §4.2 wants the bare key).
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&key.public)
            .unwrap();
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&raw);
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let extra = format!(
        r#"
good._domainkey.victim.com. IN TXT "{good}"
revoked._domainkey.victim.com. IN TXT "v=DKIM1; k=ed25519; p="
garbage._domainkey.victim.com. IN TXT "v=DKIM1; k=ed25519; p=bm90IGEga2V5"
spki._domainkey.victim.com. IN TXT "v=DKIM1; k=ed25519; p={spki}"
wrongk._domainkey.victim.com. IN TXT "v=DKIM1; k=rsa; p={public}"
wrongh._domainkey.victim.com. IN TXT "v=DKIM1; k=ed25519; h=sha1; p={public}"
nodata._domainkey.victim.com. IN A 192.0.2.1
slow._domainkey.victim.com. IN TXT "{good}"
"#,
        good = key.record(),
        public = key.public,
    );
    let (dns, verifier) = start(&extra, |_| {}).await;
    dns.set_fault("slow._domainkey.victim.com", None, Fault::Timeout);
    let cases: &[(&str, DkimResult, DkimResult)] = &[
        // selector, body intact, body rewritten after signing
        ("good", DkimResult::Pass, DkimResult::Fail),
        ("missing", DkimResult::PermError, DkimResult::PermError),
        ("nodata", DkimResult::PermError, DkimResult::PermError),
        ("revoked", DkimResult::PermError, DkimResult::PermError),
        ("garbage", DkimResult::PermError, DkimResult::PermError),
        ("spki", DkimResult::PermError, DkimResult::PermError),
        ("wrongk", DkimResult::PermError, DkimResult::PermError),
        ("slow", DkimResult::TempError, DkimResult::TempError),
    ];
    for &(selector, intact, tampered) in cases {
        let signed = key.sign(
            "victim.com",
            selector,
            &["From", "To", "Subject"],
            &message_from("ceo@victim.com", selector),
        );
        let verdict = check(&verifier, &attacker(), &signed).await;
        assert_eq!(
            verdict.dkim[0].result,
            intact,
            "{selector} intact\n{}",
            explain(&verdict)
        );
        let body_changed = [
            signed.as_slice(),
            b"A footer added by a list.\r\n".as_slice(),
        ]
        .concat();
        let verdict = check(&verifier, &attacker(), &body_changed).await;
        assert_eq!(
            verdict.dkim[0].result,
            tampered,
            "{selector} tampered\n{}",
            explain(&verdict)
        );
        if tampered == DkimResult::Fail {
            assert_eq!(
                verdict.dkim[0].reason.as_deref(),
                Some("body hash did not verify")
            );
            assert!(verdict
                .authentication_results
                .contains("dkim=fail reason=\"body hash did not verify\""));
        }
        // A signature that did not verify has no key size.
        assert_eq!(verdict.dkim[0].key_bits, None, "{selector}");
        // The key cannot be fetched but the body hash failed: no answer
        // could have made it pass, so DMARC is not a temperror.
        assert_refused(selector, &verdict);
    }
    // h= of the key record not allowing sha256: unusable whatever the body.
    let signed = key.sign(
        "victim.com",
        "wrongh",
        &["From"],
        &message_from("ceo@victim.com", "h"),
    );
    let body_changed = [signed.as_slice(), b"x\r\n"].concat();
    let verdict = check(&verifier, &attacker(), &body_changed).await;
    assert_eq!(
        verdict.dkim[0].result,
        DkimResult::PermError,
        "{}",
        explain(&verdict)
    );
    // The trail never guesses a key size from b= (it once said "24-bit key").
    let raw = [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=victim.com; s=good; h=from; bh=AAAA; b=AAAA\r\n"
            .as_slice(),
        &message_from("ceo@victim.com", "bogus"),
    ]
    .concat();
    let verdict = check(&verifier, &attacker(), &raw).await;
    assert_eq!(verdict.dkim[0].key_bits, None);
    assert!(!explain(&verdict).contains("-bit"), "{}", explain(&verdict));
}

// §4 DNS failures that cannot change the verdict.

#[tokio::test]
async fn failures_on_unrelated_names_are_not_temperrors() {
    let long_label = "a".repeat(63);
    // An SPF domain so long that _dmarc.<name> is over 255 octets.
    let long_spf = format!(
        "{long_label}.{long_label}.{long_label}.{}.evil.net",
        "b".repeat(50)
    );
    assert!(long_spf.len() <= 253 && long_spf.len() + 7 > 253);
    // The victim's own subdomain with a name that long, authorizing the
    // client: aligned (its walk skips the name that cannot be asked).
    let long_victim = format!(
        "{long_label}.{long_label}.{long_label}.{}.victim.com",
        "b".repeat(48)
    );
    assert!(long_victim.len() <= 253 && long_victim.len() + 7 > 253);
    let extra = format!(
        r#"
pass.evil.net. IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
{long_spf}. IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
{long_victim}. IN TXT "v=spf1 ip4:203.0.113.0/24 -all"
"#
    );
    for method in [DiscoveryMethod::TreeWalk, DiscoveryMethod::Psl] {
        let (dns, verifier) = start(&extra, |c| c.discovery = method).await;
        // SERVFAIL, timeouts and refusals on the attacker's names.
        for fault in [Fault::ServFail, Fault::Timeout, Fault::Refused] {
            dns.set_fault("_dmarc.evil.net", None, fault);
            dns.set_fault("_dmarc.pass.evil.net", None, fault);
            let env = Envelope::new(
                "203.0.113.5".parse().unwrap(),
                "mx.evil.net",
                "a@pass.evil.net",
            );
            let verdict = check(&verifier, &env, &message_from("ceo@victim.com", "s")).await;
            assert_eq!(verdict.spf.result, SpfResult::Pass);
            assert_eq!(
                verdict.dmarc,
                DmarcResult::Fail,
                "{method:?} {fault:?}\n{}",
                explain(&verdict)
            );
            assert_refused("unrelated SPF domain", &verdict);
            dns.clear_faults();
        }
        let env = Envelope::new(
            "203.0.113.5".parse().unwrap(),
            "mx.evil.net",
            &format!("a@{long_spf}"),
        );
        let verdict = check(&verifier, &env, &message_from("ceo@victim.com", "s")).await;
        assert_eq!(verdict.spf.result, SpfResult::Pass, "{}", explain(&verdict));
        assert_refused("long SPF domain", &verdict);
        let env = Envelope::new(
            "203.0.113.5".parse().unwrap(),
            "mx.evil.net",
            &format!("a@{long_victim}"),
        );
        let verdict = check(&verifier, &env, &message_from("ceo@victim.com", "s")).await;
        assert_eq!(
            (verdict.dmarc, verdict.disposition),
            (DmarcResult::Pass, Disposition::Accept),
            "{method:?}\n{}",
            explain(&verdict)
        );
    }
}

#[tokio::test]
async fn a_name_that_cannot_be_asked_has_no_record() {
    // _dmarc.<author> is over 255 octets: no record there, discovery goes
    // on to victim.com (RFC 7489 §6.6.3 step 3; RFC 9989 §4.10.1).
    let label = "c".repeat(60);
    let author = format!("{label}.{label}.{label}.{}.victim.com", "d".repeat(53));
    assert!(
        author.len() <= 253 && author.len() + 7 > 253,
        "{}",
        author.len()
    );
    for method in [DiscoveryMethod::Psl, DiscoveryMethod::TreeWalk] {
        let (_dns, verifier) = start("", |c| c.discovery = method).await;
        let verdict = check(
            &verifier,
            &attacker(),
            &message_from(&format!("ceo@{author}"), "s"),
        )
        .await;
        assert_eq!(
            verdict.dmarc,
            DmarcResult::Fail,
            "{method:?}\n{}",
            explain(&verdict)
        );
        assert_eq!(
            verdict
                .decisive_evaluation()
                .and_then(|e| e.policy_domain.as_deref()),
            Some("victim.com")
        );
        assert_refused("long author domain", &verdict);
    }
}

#[tokio::test]
async fn an_exact_identifier_passes_whatever_the_record() {
    // The record cannot be fetched, but SPF passed for the Author Domain
    // itself: aligned in every mode, so the message is accepted (and the
    // result says the record was not seen).
    let (dns, verifier) = start(
        r#"mail.victim.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all""#,
        |_| {},
    )
    .await;
    dns.set_fault("_dmarc.victim.com", None, Fault::ServFail);
    let env = Envelope::new(
        "192.0.2.5".parse().unwrap(),
        "mail.victim.com",
        "ceo@victim.com",
    );
    let verdict = check(&verifier, &env, &message_from("ceo@victim.com", "s")).await;
    assert_eq!(verdict.dmarc, DmarcResult::TempError);
    assert_eq!(
        verdict.disposition,
        Disposition::Accept,
        "{}",
        explain(&verdict)
    );
    // SPF passes for a subdomain: its alignment depends on the record
    // (adkim/aspf) and the Organizational Domain, so a tempfail.
    let env = Envelope::new(
        "192.0.2.5".parse().unwrap(),
        "mail.victim.com",
        "b@mail.victim.com",
    );
    let verdict = check(&verifier, &env, &message_from("ceo@victim.com", "s")).await;
    assert_eq!(
        verdict.disposition,
        Disposition::Tempfail,
        "{}",
        explain(&verdict)
    );
}

// §5 What we show is what we applied.

#[tokio::test]
async fn the_comment_shows_the_policy_applied() {
    let extra = r#"
np.example. IN SOA ns.np.example. h.np.example. 1 3600 900 604800 300
_dmarc.np.example. IN TXT "v=DMARC1; p=reject; np=bogus; rua=mailto:d@np.example"
_dmarc.sp.example. IN TXT "v=DMARC1; p=reject; sp=quarantine; np=none"
"#;
    let cases = [
        // (discovery, From, comment, disposition)
        (
            DiscoveryMethod::Psl,
            "a@np.example",
            "(p=reject sp=reject dis=reject)",
            Disposition::Reject,
        ),
        // Under RFC 9989 an invalid np makes the record p=none (valid rua).
        (
            DiscoveryMethod::TreeWalk,
            "a@np.example",
            "(p=none sp=none dis=none)",
            Disposition::Accept,
        ),
        (
            DiscoveryMethod::Psl,
            "a@x.sp.example",
            "(p=reject sp=quarantine dis=quarantine)",
            Disposition::Quarantine,
        ),
        (
            DiscoveryMethod::TreeWalk,
            "a@x.sp.example",
            "(p=reject sp=quarantine np=none dis=none)",
            Disposition::Accept,
        ),
    ];
    for (method, from, comment, disposition) in cases {
        let (_dns, verifier) = start(extra, |c| c.discovery = method).await;
        let verdict = check(&verifier, &attacker(), &message_from(from, "s")).await;
        assert!(
            verdict.authentication_results.contains(comment),
            "{method:?} {from}: {}\n{}",
            verdict.authentication_results,
            explain(&verdict)
        );
        assert_eq!(verdict.disposition, disposition, "{method:?} {from}");
    }
}

/// Our Authentication-Results is ASCII whatever the reasons cite or the
/// message holds (found by review: ARC and DKIM reasons put a raw `§` in
/// the header; RFC 5322 §2.2).
#[tokio::test]
async fn our_header_is_ascii_whatever_the_reasons_say() {
    let (_dns, verifier) = start("", |_| {}).await;
    let mut message = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=evil.net; s=s; b=AAAA\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=evil.net; s=s\xc3\xa9l; h=subject; bh=AAAA; b=AAAA\r\n"
        .to_vec();
    message.extend(message_from("ceo@victim.com", "ascii"));
    let verdict = check(&verifier, &attacker(), &message).await;
    let header = &verdict.authentication_results;
    assert!(header.is_ascii(), "{header}");
    assert!(header.contains("arc=fail reason=\""), "{header}");
    assert!(header.contains("section "), "{header}");
    assert_refused("ASCII header", &verdict);
}
