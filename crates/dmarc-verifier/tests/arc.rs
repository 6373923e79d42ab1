//! Indirect mail flows (issue 13): ARC chains made by dkimpy (an
//! independent implementation) and by mail-auth's sealer, the four
//! overrides in their order, and the limits of ARC checking. Every case is
//! a scenario of `tools/arc_chains.py`: a message from example.com
//! (`p=reject`) that a mailing list (lists.example.org) changed, relayed
//! from 198.51.100.7 with the list's bounce address.

mod chains;
mod common;

use chains::Chains;
use common::explain;
use dmarc_verifier::{
    arc::{AmsResult, ArcResult, ArcSealer, ChainValidation},
    dns::zone::RecordType,
    trail::Step,
    Disposition, DmarcResult, Envelope, OverrideConfig, OverrideReason, PolicyOverride, Verdict,
    Verifier,
};
use test_dns::{Fault, TestDns};

const CLIENT: &str = "198.51.100.7";

/// A verifier over the chains' zone with `tweak` applied to the overrides
/// (default overrides otherwise: no trusted party, lists quarantined).
async fn setup(tweak: impl FnOnce(&mut OverrideConfig)) -> (TestDns, Verifier) {
    common::setup(&Chains::get().zone(), |config| {
        config.pct_draw = Some(0);
        tweak(&mut config.overrides);
    })
    .await
}

fn list_envelope() -> Envelope {
    Envelope::new(
        CLIENT.parse().unwrap(),
        "mail.lists.example.org",
        "dev-bounces@lists.example.org",
    )
}

async fn check(verifier: &Verifier, scenario: &str) -> Verdict {
    verifier
        .verify(&list_envelope(), &Chains::get().message(scenario))
        .await
}

fn trusting<'a>(sealers: &'a [&'a str]) -> impl FnOnce(&mut OverrideConfig) + 'a {
    move |o| o.trusted_arc_sealers = sealers.iter().map(|s| s.to_string()).collect()
}

/// The DMARC result, disposition, reason and comment of a verdict.
fn outcome(
    v: &Verdict,
) -> (
    DmarcResult,
    Disposition,
    Option<OverrideReason>,
    Option<&str>,
) {
    (
        v.dmarc,
        v.disposition,
        v.override_reason,
        v.override_comment.as_deref(),
    )
}

fn trail_text(v: &Verdict) -> String {
    v.trail
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_trusted_sealer_that_saw_dmarc_pass_turns_the_reject_into_accept() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    let v = check(&verifier, "list-trusted").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Accept,
            Some(OverrideReason::TrustedForwarder),
            Some("arc=pass i=1 sealer=lists.example.org")
        ),
        "{}",
        explain(&v)
    );
    assert_eq!(v.arc.result, ArcResult::Pass);
    assert_eq!(v.arc.oldest_pass, Some(0));
    let set = &v.arc.chain[0];
    assert_eq!(
        (
            set.instance,
            set.sealer.as_str(),
            set.selector.as_str(),
            set.cv,
            set.ams
        ),
        (
            1,
            "lists.example.org",
            "arc",
            ChainValidation::None,
            AmsResult::Pass
        )
    );
    let results = set.results.as_ref().expect("the AAR parses");
    assert_eq!(results.authserv_id, "lists.example.org");
    // The exact header: arc between dkim and dmarc, the override in the
    // dmarc comment.
    let dkim_b = &v.dkim[0].b_prefix;
    assert_eq!(
        v.authentication_results,
        format!(
            "mx.test;\n\tspf=fail smtp.mailfrom=lists.example.org;\n\tdkim=fail reason=\"body hash did not verify\" header.d=example.com header.s=s1 header.b={};\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=198.51.100.7;\n\tdmarc=fail (p=reject sp=reject dis=none override=trusted_forwarder: arc=pass i=1 sealer=lists.example.org) header.from=example.com policy.dmarc=reject",
            dmarc_verifier::auth_results::quote_value(dkim_b)
        )
    );
    // The evaluation carries the same reason and comment (reports read it).
    let e = v.decisive_evaluation().unwrap();
    assert_eq!(
        (e.override_reason, e.override_comment.as_deref()),
        (
            Some(OverrideReason::TrustedForwarder),
            Some("arc=pass i=1 sealer=lists.example.org")
        )
    );

    // An aligned dkim=pass recorded by the trusted hop (no dmarc result)
    // vouches too.
    let v = check(&verifier, "list-aar-dkim").await;
    assert_eq!(outcome(&v).1, Disposition::Accept, "{}", explain(&v));

    // Nothing trusted: the list's mail is rejected (its List-Id is not
    // authenticated), and the trail says why each override did not apply.
    let (_dns, verifier) = setup(|_| {}).await;
    let v = check(&verifier, "list-trusted").await;
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );
    let trail = trail_text(&v);
    for tried in [
        "override trusted ARC sealer for example.com: does not apply: no trusted_arc_sealers",
        "override trusted forwarder for example.com: does not apply: no trusted_forwarders",
        "override mailing list for example.com: does not apply: List-Id <dev.lists.example.org> is not authenticated",
        "override local policy for example.com: does not apply: no policy_override",
    ] {
        assert!(trail.contains(tried), "{tried}\n{trail}");
    }
    assert!(v
        .authentication_results
        .contains("arc=pass header.oldest-pass=0"));
}

#[tokio::test]
async fn a_later_hop_keeps_the_override_only_for_the_message_the_trusted_hop_saw() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    // An untrusted forwarder sealed i=2 without changing anything.
    let v = check(&verifier, "list-then-forwarded").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Accept,
            Some(OverrideReason::TrustedForwarder),
            Some("arc=pass i=1 sealer=lists.example.org")
        ),
        "{}",
        explain(&v)
    );
    assert_eq!(v.arc.chain.len(), 2);
    assert_eq!(v.arc.chain[1].cv, ChainValidation::Pass);
    assert_eq!(v.arc.oldest_pass, Some(0));

    // It rewrote the body before sealing: the chain still passes, but the
    // list's AMS no longer verifies, so what it vouched for is gone.
    let v = check(&verifier, "list-then-rewritten").await;
    assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
    assert_eq!(v.arc.oldest_pass, Some(2));
    assert_eq!(
        (v.arc.chain[0].ams, v.arc.chain[1].ams),
        (AmsResult::Fail, AmsResult::Pass)
    );
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );
    assert!(v
        .authentication_results
        .contains("arc=pass header.oldest-pass=2"));
    assert!(
        trail_text(&v).contains("no longer verifies"),
        "{}",
        explain(&v)
    );
}

/// What the trusted hop vouched for must still be in force and be all the
/// message says (found by review): an expired trusted AMS under someone
/// else's newer seal, or a second Subject added above the signed one,
/// leaves the chain valid but gives no override.
#[tokio::test]
async fn an_expired_or_extended_trusted_set_gives_no_override() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    let v = check(&verifier, "list-expired-then-sealed").await;
    assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
    assert_eq!(v.arc.chain[0].ams, AmsResult::Fail, "{}", explain(&v));
    assert!(
        v.arc.chain[0]
            .ams_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("signature expired")),
        "{:?}",
        v.arc.chain[0]
    );
    assert_eq!(v.arc.oldest_pass, Some(2));
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );

    let v = check(&verifier, "list-extra-subject").await;
    assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
    assert_eq!(v.arc.chain[0].ams, AmsResult::Pass);
    assert_eq!(
        v.arc.chain[0].ams_added.as_deref(),
        Some("the message has 2 subject fields where its h= signs 1")
    );
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );
    assert!(
        trail_text(&v).contains("the message is more than lists.example.org sealed"),
        "{}",
        explain(&v)
    );
}

#[tokio::test]
async fn untrusted_or_forged_sealers_and_hops_that_saw_a_failure_change_nothing() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(trusting(&["other.example"])).await;
    let v = check(&verifier, "list-trusted").await;
    assert_eq!(outcome(&v).1, Disposition::Reject, "{}", explain(&v));

    let (_dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    // attacker.example sealed an AAR written as if by lists.example.org.
    let v = check(&verifier, "forged-aar").await;
    assert_eq!(v.arc.result, ArcResult::Pass);
    assert_eq!(v.arc.chain[0].sealer, "attacker.example");
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );
    // The trusted list itself saw dmarc=fail (with an aligned dkim=pass).
    let v = check(&verifier, "list-aar-fail").await;
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );
    assert!(trail_text(&v).contains("it saw dmarc=fail for example.com"));
}

#[tokio::test]
async fn broken_chains_fail_and_trusted_sealers_do_not_help() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(trusting(&["lists.example.org", "forwarder.example.net"])).await;
    for (scenario, why) in [
        ("list-broken-after-seal", "body hash"),
        ("cv-fail", "cv=fail"),
        ("fifty-one", "i=51"),
    ] {
        let v = check(&verifier, scenario).await;
        assert_eq!(v.arc.result, ArcResult::Fail, "{scenario}: {}", explain(&v));
        assert!(
            v.arc.reason.as_deref().unwrap_or("").contains(why),
            "{scenario}: {:?}",
            v.arc.reason
        );
        assert_eq!(v.arc.oldest_pass, None);
        assert_eq!(
            outcome(&v),
            (DmarcResult::Fail, Disposition::Reject, None, None),
            "{scenario}: {}",
            explain(&v)
        );
        assert!(
            v.authentication_results.contains("arc=fail reason="),
            "{}",
            v.authentication_results
        );
    }
    // Fifty sets is the limit, not over it. The newest trusted set decides:
    // the forwarder's i=50 recorded only arc=pass, so nothing changes...
    let v = check(&verifier, "fifty").await;
    assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
    assert_eq!(v.arc.chain.len(), 50);
    assert_eq!(v.arc.oldest_pass, Some(0));
    assert_eq!(v.disposition, Disposition::Reject, "{}", explain(&v));
    assert!(
        trail_text(&v).contains("i=50 sealed by forwarder.example.net: it recorded no dmarc=pass")
    );
    // ... while trusting only the list, its i=1 vouches for the unchanged
    // message 49 hops later.
    let (_dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    let v = check(&verifier, "fifty").await;
    assert_eq!(
        v.override_comment.as_deref(),
        Some("arc=pass i=1 sealer=lists.example.org"),
        "{}",
        explain(&v)
    );
}

#[tokio::test]
async fn list_mail_is_quarantined_only_when_the_list_id_is_authenticated() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(|_| {}).await;
    let v = check(&verifier, "list-dkim").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Quarantine,
            Some(OverrideReason::MailingList),
            Some("list-id=dev.lists.example.org dkim=pass header.d=lists.example.org")
        ),
        "{}",
        explain(&v)
    );
    let v = check(&verifier, "list-id-alone").await;
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None),
        "{}",
        explain(&v)
    );

    let (_dns, verifier) = setup(|o| o.mailing_list_action = Some(Disposition::Accept)).await;
    assert_eq!(
        check(&verifier, "list-dkim").await.disposition,
        Disposition::Accept
    );
    let (_dns, verifier) = setup(|o| o.mailing_list_action = None).await;
    assert_eq!(
        check(&verifier, "list-dkim").await.disposition,
        Disposition::Reject
    );

    // A List-Id repeated, or whose domain is not the signer's: ignored.
    let (_dns, verifier) = setup(|_| {}).await;
    let message = Chains::get().message("list-dkim");
    let twice = [b"List-Id: <dev.lists.example.org>\r\n".as_slice(), &message].concat();
    let v = verifier.verify(&list_envelope(), &twice).await;
    assert_eq!(v.disposition, Disposition::Reject, "{}", explain(&v));
    let other = String::from_utf8(message)
        .unwrap()
        .replace("<dev.lists.example.org>", "<dev.lists.example.net>");
    let v = verifier.verify(&list_envelope(), other.as_bytes()).await;
    assert_eq!(v.disposition, Disposition::Reject, "{}", explain(&v));
    // White space before the colon does not hide the field.
    let spaced = String::from_utf8(Chains::get().message("list-dkim"))
        .unwrap()
        .replacen("List-Id:", "List-Id :", 1);
    let v = verifier.verify(&list_envelope(), spaced.as_bytes()).await;
    assert_eq!(v.disposition, Disposition::Quarantine, "{}", explain(&v));
}

#[tokio::test]
async fn trusted_forwarders_by_network_and_by_dkim_domain() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(|o| {
        o.trusted_forwarders = vec!["198.51.100.0/24".parse().unwrap()];
    })
    .await;
    let v = check(&verifier, "list-id-alone").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Accept,
            Some(OverrideReason::TrustedForwarder),
            Some("client=198.51.100.7 in 198.51.100.0/24")
        ),
        "{}",
        explain(&v)
    );
    // Another client is not trusted.
    let other = Envelope::new(
        "203.0.113.5".parse().unwrap(),
        "mail.example.net",
        "dev-bounces@lists.example.org",
    );
    let v = verifier
        .verify(&other, &Chains::get().message("list-id-alone"))
        .await;
    assert_eq!(v.disposition, Disposition::Reject, "{}", explain(&v));

    let (_dns, verifier) = setup(|o| {
        o.trusted_forwarders = vec!["dkim:forwarder.example.net".parse().unwrap()];
        o.trusted_forwarder_action = Disposition::Quarantine;
    })
    .await;
    let v = check(&verifier, "forwarder-dkim").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Quarantine,
            Some(OverrideReason::TrustedForwarder),
            Some("dkim=pass header.d=forwarder.example.net")
        ),
        "{}",
        explain(&v)
    );
    // Its signature must pass: the list-id-alone message has none.
    let v = check(&verifier, "list-id-alone").await;
    assert_eq!(v.disposition, Disposition::Reject, "{}", explain(&v));
}

#[tokio::test]
async fn local_policy_per_from_domain() {
    if !chains::available() {
        return;
    }
    let (_dns, verifier) = setup(|o| {
        o.policy_overrides = vec![PolicyOverride {
            from_domain: "example.com".into(),
            action: Disposition::Quarantine,
        }];
    })
    .await;
    let v = check(&verifier, "list-id-alone").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Quarantine,
            Some(OverrideReason::LocalPolicy),
            Some("policy_override from_domain=example.com action=quarantine")
        ),
        "{}",
        explain(&v)
    );
}

#[tokio::test]
async fn the_first_override_that_applies_wins_in_order() {
    if !chains::available() {
        return;
    }
    let all = |o: &mut OverrideConfig| {
        o.trusted_arc_sealers = vec!["lists.example.org".into()];
        o.arc_override_action = Disposition::Quarantine;
        o.trusted_forwarders = vec!["198.51.100.7".parse().unwrap()];
        o.mailing_list_action = Some(Disposition::Accept);
        o.policy_overrides = vec![PolicyOverride {
            from_domain: "example.com".into(),
            action: Disposition::Accept,
        }];
    };
    let (_dns, verifier) = setup(all).await;
    // The sealer comes first, even with a stricter action than the others.
    let v = check(&verifier, "list-trusted").await;
    assert_eq!(
        outcome(&v),
        (
            DmarcResult::Fail,
            Disposition::Quarantine,
            Some(OverrideReason::TrustedForwarder),
            Some("arc=pass i=1 sealer=lists.example.org")
        ),
        "{}",
        explain(&v)
    );
    let trail = trail_text(&v);
    assert!(
        trail.contains("override trusted ARC sealer for example.com: reject becomes quarantine")
    );
    assert!(!trail.contains("override trusted forwarder"), "{trail}");
    // Without a chain, the forwarder comes next.
    let v = check(&verifier, "list-dkim").await;
    assert_eq!(
        outcome(&v).3,
        Some("client=198.51.100.7 in 198.51.100.7/32"),
        "{}",
        explain(&v)
    );
}

#[tokio::test]
async fn overrides_never_apply_to_pass_none_or_temperror() {
    if !chains::available() {
        return;
    }
    let everything = |o: &mut OverrideConfig| {
        o.trusted_arc_sealers = vec!["lists.example.org".into()];
        o.trusted_forwarders = vec![
            "0.0.0.0/0".parse().unwrap(),
            "::/0".parse().unwrap(),
            "dkim:example.com".parse().unwrap(),
        ];
        o.mailing_list_action = Some(Disposition::Accept);
        o.policy_overrides = ["example.com", "nodmarc.example"]
            .iter()
            .map(|d| PolicyOverride {
                from_domain: d.to_string(),
                action: Disposition::Accept,
            })
            .collect();
    };
    let (dns, verifier) = setup(everything).await;
    // pass
    let v = check(&verifier, "original").await;
    assert_eq!(
        outcome(&v),
        (DmarcResult::Pass, Disposition::Accept, None, None),
        "{}",
        explain(&v)
    );
    // none (no DMARC record), even with a trusted sealer's chain
    let v = check(&verifier, "nodmarc-forwarded").await;
    assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
    assert_eq!(
        outcome(&v),
        (DmarcResult::None, Disposition::Accept, None, None),
        "{}",
        explain(&v)
    );
    // temperror: the DMARC record cannot be fetched (a fresh cache).
    drop((dns, verifier));
    let (dns, verifier) = setup(everything).await;
    dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::ServFail);
    let v = check(&verifier, "list-trusted").await;
    assert_eq!(
        outcome(&v),
        (DmarcResult::TempError, Disposition::Tempfail, None, None),
        "{}",
        explain(&v)
    );
    assert!(!trail_text(&v).contains("override "), "{}", explain(&v));
}

#[tokio::test]
async fn every_instance_reads_as_dkimpy_reads_it() {
    if !chains::available() {
        return;
    }
    // The independent implementation and ours agree on the chain result and
    // on every AMS of every chain that passes. One documented difference:
    // dkimpy fails a chain whose older ARC-Seal carries an `x=` in the
    // past; RFC 8617 §4.1.3 defines no `x=` for the ARC-Seal and mail-auth
    // ignores it, so the chain passes for us, with that set's AMS failing
    // as expired (RFC 6376 §3.5; see an_expired_or_extended_trusted_set_gives_no_override).
    let chains = Chains::get();
    let (_dns, verifier) = setup(|_| {}).await;
    for scenario in chains.scenarios() {
        if scenario == "list-expired-then-sealed" {
            continue;
        }
        let message = chains.message(&scenario);
        let v = verifier.verify(&list_envelope(), &message).await;
        let dkimpy: serde_json::Value =
            serde_json::from_str(&chains.dkimpy_verify(&chains.zone_path(), &message)).unwrap();
        let theirs = match dkimpy["cv"].as_str() {
            Some("pass") => ArcResult::Pass,
            Some("none") => ArcResult::None,
            _ => ArcResult::Fail,
        };
        assert_eq!(
            v.arc.result,
            theirs,
            "{scenario}: {dkimpy}\n{}",
            explain(&v)
        );
        if theirs != ArcResult::Pass {
            continue;
        }
        for instance in dkimpy["instances"].as_array().unwrap() {
            let i = instance["instance"].as_u64().unwrap() as usize;
            let ours = v.arc.chain[i - 1].ams == AmsResult::Pass;
            assert_eq!(
                ours,
                instance["ams"].as_bool().unwrap(),
                "{scenario} i={i}: {dkimpy}"
            );
            assert_eq!(v.arc.chain[i - 1].sealer, instance["d"].as_str().unwrap());
        }
    }
}

/// A verifier that also holds the key of the sealer `d=our.example`.
async fn sealing_setup(
    key_record: &str,
    tweak: impl FnOnce(&mut OverrideConfig),
) -> (TestDns, Verifier, String) {
    let zone = format!(
        "{}\nseal._domainkey.our.example. 300 IN TXT {key_record}\n",
        Chains::get().zone()
    );
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("arc-our-zone-{}", key_record.len()));
    std::fs::write(&path, &zone).unwrap();
    let (dns, verifier) = common::setup(&zone, |config| {
        config.pct_draw = Some(0);
        tweak(&mut config.overrides);
    })
    .await;
    (dns, verifier, path.display().to_string())
}

/// An RSA-2048 key in PKCS #8 PEM and its DKIM key record.
fn rsa_key() -> (String, String) {
    use aws_lc_rs::{encoding::AsDer, rsa::KeyPair, rsa::KeySize, signature::KeyPair as _};
    use base64::Engine;
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    let spki = pair.public_key().as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        pem("PRIVATE KEY", pkcs8.as_ref()),
        txt(&format!("v=DKIM1; k=rsa; p={}", b64.encode(spki.as_ref()))),
    )
}

/// An Ed25519 key in PKCS #8 PEM and its DKIM key record.
fn ed25519_key() -> (String, String) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    use base64::Engine;
    let pkcs8 = mail_auth_pkcs8();
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        pem("PRIVATE KEY", &pkcs8),
        txt(&format!(
            "v=DKIM1; k=ed25519; p={}",
            b64.encode(pair.public_key().as_ref())
        )),
    )
}

fn mail_auth_pkcs8() -> Vec<u8> {
    use aws_lc_rs::{rand::SystemRandom, signature::Ed25519KeyPair};
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A TXT record's text in zone syntax (strings of at most 250 octets).
fn txt(record: &str) -> String {
    record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sealed message: our set on top.
fn sealed(fields: &[(String, String)], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn our_seals_verify_with_dkimpy_and_with_ourselves() {
    if !chains::available() {
        return;
    }
    let chains = Chains::get();
    for (key, record) in [rsa_key(), ed25519_key()] {
        let (_dns, verifier, zone_path) =
            sealing_setup(&record, trusting(&["lists.example.org"])).await;
        let sealer = ArcSealer::from_pem("our.example", "seal", &key).unwrap();
        // The list's message, trusted and accepted, sealed as i=2 after our
        // A-R was added on top.
        let message = chains.message("list-trusted");
        let v = verifier.verify(&list_envelope(), &message).await;
        assert_eq!(v.disposition, Disposition::Accept, "{}", explain(&v));
        let delivered = [
            v.authentication_results_header("\r\n").as_bytes(),
            b"\r\n",
            &message,
        ]
        .concat();
        let fields = sealer.seal(&verifier, &delivered, &v).await.unwrap();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ARC-Seal",
                "ARC-Message-Signature",
                "ARC-Authentication-Results"
            ]
        );
        assert!(fields[0].1.starts_with("i=2; "), "{}", fields[0].1);
        assert!(fields[0].1.contains("cv=pass"), "{}", fields[0].1);
        assert!(
            fields[2].1.starts_with("i=2;\r\n\tmx.test;\r\n\tspf=fail"),
            "{}",
            fields[2].1
        );
        let ours = sealed(&fields, &delivered);

        // dkimpy validates our set (and the list's).
        if sealer.algorithm() == "rsa-sha256" {
            let dkimpy: serde_json::Value = serde_json::from_str(
                &chains.dkimpy_verify(std::path::Path::new(&zone_path), &ours),
            )
            .unwrap();
            assert_eq!(dkimpy["cv"], "pass", "{dkimpy}");
            assert_eq!(dkimpy["instances"][0]["d"], "our.example");
        }
        // So do we. A downstream hop trusting us sees that we saw
        // dmarc=fail (our override is ours): nothing changes there.
        let (_dns, downstream, _) = sealing_setup(&record, trusting(&["our.example"])).await;
        let relayed = Envelope::new(
            "203.0.113.25".parse().unwrap(),
            "mx.our.example",
            "user@our.example",
        );
        let v = downstream.verify(&relayed, &ours).await;
        assert_eq!(v.arc.result, ArcResult::Pass, "{}", explain(&v));
        assert_eq!(v.arc.chain.len(), 2);
        assert_eq!(v.arc.chain[1].sealer, "our.example");
        assert_eq!(
            outcome(&v),
            (DmarcResult::Fail, Disposition::Reject, None, None),
            "{}",
            explain(&v)
        );

        // A message without a chain gets i=1 cv=none.
        let original = chains.message("original");
        let v = verifier.verify(&list_envelope(), &original).await;
        let fields = sealer.seal(&verifier, &original, &v).await.unwrap();
        assert!(fields[0].1.starts_with("i=1; "), "{}", fields[0].1);
        assert!(fields[0].1.contains("cv=none"), "{}", fields[0].1);
        let ours = sealed(&fields, &original);
        if sealer.algorithm() == "rsa-sha256" {
            let dkimpy: serde_json::Value = serde_json::from_str(
                &chains.dkimpy_verify(std::path::Path::new(&zone_path), &ours),
            )
            .unwrap();
            assert_eq!(dkimpy["cv"], "pass", "{dkimpy}");
        }
        // A downstream hop trusting us, where the author's DKIM key is gone
        // (rotated), relies on our dmarc=pass.
        let zone = format!(
            "{}\nseal._domainkey.our.example. 300 IN TXT {record}\n",
            Chains::get().zone()
        )
        .lines()
        .filter(|l| !l.starts_with("s1._domainkey.example.com."))
        .collect::<Vec<_>>()
        .join("\n");
        let (_dns, downstream) = common::setup(&zone, |config| {
            config.pct_draw = Some(0);
            config.overrides.trusted_arc_sealers = vec!["our.example".into()];
        })
        .await;
        let relayed = Envelope::new(
            "203.0.113.25".parse().unwrap(),
            "mx.our.example",
            "user@our.example",
        );
        let v = downstream.verify(&relayed, &ours).await;
        assert_eq!(
            outcome(&v),
            (
                DmarcResult::Fail,
                Disposition::Accept,
                Some(OverrideReason::TrustedForwarder),
                Some("arc=pass i=1 sealer=our.example")
            ),
            "{}",
            explain(&v)
        );

        // A broken chain is sealed with cv=fail; a cv=fail chain is not
        // sealed at all (RFC 8617 §5.1.2).
        let broken = chains.message("list-broken-after-seal");
        let v = verifier.verify(&list_envelope(), &broken).await;
        let fields = sealer.seal(&verifier, &broken, &v).await.unwrap();
        assert!(fields[0].1.contains("cv=fail"), "{}", fields[0].1);
        let ended = chains.message("cv-fail");
        let v = verifier.verify(&list_envelope(), &ended).await;
        assert!(sealer.seal(&verifier, &ended, &v).await.is_err());
        // A message whose first line is a continuation would take our last
        // field in (found by the arc fuzz target): refused.
        let folded = [b"\tcontinued\r\n".as_slice(), &original].concat();
        let v = verifier.verify(&list_envelope(), &folded).await;
        assert!(sealer.seal(&verifier, &folded, &v).await.is_err());
    }
}

#[tokio::test]
async fn limits_gaps_duplicates_and_garbage_fail_without_dns() {
    if !chains::available() {
        return;
    }
    let chains = Chains::get();
    let (dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    let two = String::from_utf8(chains.message("list-then-forwarded")).unwrap();
    let fields: Vec<&str> = two.split("\r\n").collect();
    let set_of = |i: &str| -> String {
        // The three fields of set i, each with its continuation lines.
        let mut out = String::new();
        let mut take = false;
        for line in &fields {
            if !line.starts_with([' ', '\t']) {
                take = line.starts_with("ARC-") && line.contains(&format!("i={i};"));
            }
            if take {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out
    };
    let set1 = set_of("1");
    assert_eq!(set1.matches("ARC-").count(), 3, "{set1}");
    let without_set1 = two.replace(&set1, "");
    let cases: Vec<(&str, String)> = vec![
        ("a gap", without_set1.clone()),
        ("a duplicate set", format!("{set1}{two}")),
        (
            "a duplicate seal",
            format!("{}{two}", set1.lines().next().unwrap().to_string() + "\r\n"),
        ),
        (
            "a seal that does not parse",
            format!("ARC-Seal: i=1; cv=none; garbage\r\n{without_set1}"),
        ),
        ("an AMS with l=", two.replacen("ARC-Message-Signature: i=2;", "ARC-Message-Signature: i=2; l=5;", 1)),
        (
            "10000 ARC fields",
            format!("{}{two}", "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.example; s=s; b=AAAA\r\n".repeat(10_000)),
        ),
        (
            "a seal alone",
            String::from_utf8(chains.message("list-id-alone")).unwrap().replacen(
                "List-Id:",
                "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=lists.example.org; s=arc; b=AAAA\r\nList-Id:",
                1,
            ),
        ),
    ];
    for (what, message) in cases {
        dns.clear_queries();
        let v = verifier.verify(&list_envelope(), message.as_bytes()).await;
        assert_eq!(v.arc.result, ArcResult::Fail, "{what}: {}", explain(&v));
        assert_eq!(
            v.disposition,
            Disposition::Reject,
            "{what}: {}",
            explain(&v)
        );
        let asked_keys: Vec<_> = dns
            .queries()
            .into_iter()
            .filter(|q| q.name.contains("._domainkey.") && !q.name.contains("s1._domainkey"))
            .collect();
        assert!(asked_keys.is_empty(), "{what}: asked {asked_keys:?}");
    }
}

#[tokio::test]
async fn a_message_without_arc_fields_is_arc_none_with_no_question() {
    if !chains::available() {
        return;
    }
    let (dns, verifier) = setup(|_| {}).await;
    let v = check(&verifier, "original").await;
    assert_eq!(v.arc.result, ArcResult::None);
    assert!(v.arc.chain.is_empty());
    assert!(v
        .authentication_results
        .contains(";\n\tarc=none;\n\tdmarc=pass"));
    assert!(!v
        .trail
        .iter()
        .any(|s| matches!(s, Step::Dns(e) if e.name.contains("arc._domainkey"))));
    let keys: Vec<String> = dns
        .queries()
        .into_iter()
        .map(|q| q.name)
        .filter(|name| name.contains("._domainkey."))
        .collect();
    assert_eq!(keys, ["s1._domainkey.example.com"]);
}

#[tokio::test]
async fn an_arc_key_that_cannot_be_fetched_fails_the_chain() {
    if !chains::available() {
        return;
    }
    let (dns, verifier) = setup(trusting(&["lists.example.org"])).await;
    dns.set_fault("arc._domainkey.lists.example.org", None, Fault::ServFail);
    let v = check(&verifier, "list-trusted").await;
    // RFC 8617 §5.2.1: no temperror for ARC; the reject stands.
    assert_eq!(v.arc.result, ArcResult::Fail, "{}", explain(&v));
    assert_eq!(
        outcome(&v),
        (DmarcResult::Fail, Disposition::Reject, None, None)
    );
}
