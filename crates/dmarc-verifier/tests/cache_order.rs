//! The shared DNS cache: for random sequences of messages over a random zone
//! whose names are asked for several purposes (SPF records, `exp=` texts,
//! DKIM keys, DMARC records), every verdict of a verifier that has seen the
//! messages before equals the verdict of a verifier with an empty cache.
//! That is the promise of SECURITY.md: what one sender makes us ask cannot
//! change the answer another sender's message gets.

mod common;

use base64::Engine as _;
use common::config;
use dmarc_verifier::{Envelope, Verdict, Verifier};
use mail_auth::{crypto::Ed25519Key, dkim::DkimSigner, headers::HeaderWriter};
use proptest::prelude::*;
use test_dns::TestDns;

/// Names that each hold records of any kind.
const NAMES: &[&str] = &[
    "a.test",
    "b.test",
    "x.a.test",
    "s._domainkey.a.test",
    "s._domainkey.b.test",
    "_dmarc.a.test",
    "_dmarc.b.test",
];

/// Author Domains (no underscores).
const AUTHORS: &[&str] = &["a.test", "b.test", "x.a.test"];

/// What a name holds.
#[derive(Debug, Clone)]
enum Content {
    Nothing,
    SpfPass,
    SpfInclude(usize),
    SpfExp(usize),
    SpfRedirect(usize),
    DkimKey,
    DmarcReject,
    DmarcNone,
    Explanation,
    SpfAndKey,
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        Just(Content::Nothing),
        Just(Content::SpfPass),
        (0..NAMES.len()).prop_map(Content::SpfInclude),
        (0..NAMES.len()).prop_map(Content::SpfExp),
        (0..NAMES.len()).prop_map(Content::SpfRedirect),
        Just(Content::DkimKey),
        Just(Content::DmarcReject),
        Just(Content::DmarcNone),
        Just(Content::Explanation),
        Just(Content::SpfAndKey),
    ]
}

/// One message: From, MAIL FROM, client, and its DKIM signature.
#[derive(Debug, Clone)]
struct Mail {
    author: usize,
    mail_from: usize,
    client_in_range: bool,
    /// None, or (signing domain author index, real signature?).
    signature: Option<(usize, bool)>,
}

fn mail() -> impl Strategy<Value = Mail> {
    (
        0..AUTHORS.len(),
        0..NAMES.len(),
        any::<bool>(),
        proptest::option::of((0..2usize, any::<bool>())),
    )
        .prop_map(|(author, mail_from, client_in_range, signature)| Mail {
            author,
            mail_from,
            client_in_range,
            signature,
        })
}

fn zone_text(contents: &[Content], key_record: &str) -> String {
    let mut zone = String::from("test. IN SOA ns.test. h.test. 1 3600 900 604800 300\n");
    for (name, content) in NAMES.iter().zip(contents) {
        let txt = |text: &str| format!("{name}. IN TXT \"{text}\"\n");
        zone.push_str(&match content {
            Content::Nothing => String::new(),
            Content::SpfPass => txt("v=spf1 ip4:192.0.2.0/24 -all"),
            Content::SpfInclude(i) => txt(&format!("v=spf1 include:{} -all", NAMES[*i])),
            Content::SpfExp(i) => txt(&format!("v=spf1 -all exp={}", NAMES[*i])),
            Content::SpfRedirect(i) => txt(&format!("v=spf1 redirect={}", NAMES[*i])),
            Content::DkimKey => txt(key_record),
            Content::DmarcReject => txt("v=DMARC1; p=reject"),
            Content::DmarcNone => txt("v=DMARC1; p=none"),
            Content::Explanation => txt("not authorized: %{i}"),
            Content::SpfAndKey => txt("v=spf1 ip4:192.0.2.0/24 -all") + &txt(key_record),
        });
    }
    zone
}

fn raw_message(mail: &Mail, pkcs8: &[u8]) -> (Envelope, Vec<u8>) {
    let author = AUTHORS[mail.author];
    let body =
        format!("From: someone@{author}\r\nTo: r@example.org\r\nSubject: s\r\n\r\nHello.\r\n")
            .into_bytes();
    let raw = match mail.signature {
        None => body,
        Some((domain, real)) => {
            let domain = AUTHORS[domain];
            let header = if real {
                let key = Ed25519Key::from_pkcs8_der(pkcs8).expect("key");
                DkimSigner::from_key(key)
                    .domain(domain)
                    .selector("s")
                    .headers(["From", "Subject"])
                    .sign(&body)
                    .expect("sign")
                    .to_header()
            } else {
                format!("DKIM-Signature: v=1; a=ed25519-sha256; d={domain}; s=s; h=from; bh=AAAA; b=AAAA\r\n")
            };
            [header.into_bytes(), body].concat()
        }
    };
    let ip = if mail.client_in_range {
        "192.0.2.5"
    } else {
        "203.0.113.5"
    };
    let envelope = Envelope::new(
        ip.parse().expect("ip"),
        "mx.test",
        &format!("bounce@{}", NAMES[mail.mail_from]),
    );
    (envelope, raw)
}

/// What must not depend on the cache.
fn essence(v: &Verdict) -> String {
    format!(
        "spf={} dkim={:?} dmarc={} disposition={}",
        v.spf.result.as_str(),
        v.dkim
            .iter()
            .map(|d| (d.domain.clone(), d.result.as_str()))
            .collect::<Vec<_>>(),
        v.dmarc.as_str(),
        v.disposition
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn order_of_messages_does_not_change_verdicts(
        contents in proptest::collection::vec(content(), NAMES.len()),
        mails in proptest::collection::vec(mail(), 2..7),
    ) {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("generate");
        let public = Ed25519Key::from_pkcs8_der(&pkcs8).expect("key").public_key();
        let key_record = format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(public)
        );
        let zone = zone_text(&contents, &key_record);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let dns = TestDns::start(&zone).await.expect("test DNS");
            let shared = Verifier::new(config(&dns)).expect("verifier");
            for mail in &mails {
                let (envelope, raw) = raw_message(mail, &pkcs8);
                let warm = shared.verify_with_draw(&envelope, &raw, 0).await;
                let fresh = Verifier::new(config(&dns))
                    .expect("verifier")
                    .verify_with_draw(&envelope, &raw, 0)
                    .await;
                prop_assert_eq!(
                    essence(&warm),
                    essence(&fresh),
                    "message {:?} after {:?}\nzone:\n{}",
                    mail,
                    mails,
                    zone
                );
            }
            Ok(())
        })?;
    }
}
