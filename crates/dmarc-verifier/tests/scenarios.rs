//! DMARC scenarios through the real resolver and a real DNS server: a zone,
//! a message, an envelope, the expected verdict and header.

mod common;

use common::{data, envelope, explain, message, setup, zone};
use dmarc_verifier::{
    policy::PolicySource, DiscoveryMethod, Disposition, DkimResult, DmarcResult, InvalidFromResult,
    OverrideReason, PctMode, Policy, SpfResult, SpfScope, TempErrorAction,
};
use test_dns::Fault;

/// example.com: SPF for 192.0.2.0/24, p=reject with sp=quarantine and
/// np=reject; mail.example.com exists; example.net: SPF -all.
const BASE: &str = r#"
example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:dmarc@example.com"
mail.example.com. IN A 192.0.2.1
mail.example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
example.net. IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
"#;

#[tokio::test]
async fn spf_only_pass_is_dmarc_pass() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("192.0.2.5", "user@example.com"),
            &message("User <user@example.com>"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::Pass, "{}", explain(&verdict));
    assert_eq!(verdict.disposition, Disposition::Accept);
    let eval = verdict.decisive_evaluation().unwrap();
    assert!(eval.spf_aligned && !eval.dkim_aligned);
    assert_eq!(eval.policy_domain.as_deref(), Some("example.com"));
    assert_eq!(
        verdict.authentication_results,
        "mx.test;\n\tspf=pass smtp.mailfrom=example.com;\n\tdkim=none;\n\tarc=none;\n\tdmarc=pass (p=reject sp=quarantine dis=none) header.from=example.com policy.dmarc=reject"
    );
    assert_eq!(
        verdict.authentication_results_header("\r\n"),
        "Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=example.com;\r\n\tdkim=none;\r\n\tarc=none;\r\n\tdmarc=pass (p=reject sp=quarantine dis=none) header.from=example.com policy.dmarc=reject"
    );
}

#[tokio::test]
async fn dkim_only_pass_is_dmarc_pass() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    // Relayed from a host example.net's SPF does not allow.
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "bounce@example.net"),
            &data("dkim-pass-rsa.eml"),
        )
        .await;
    assert_eq!(verdict.spf.result, SpfResult::Fail);
    assert_eq!(verdict.dkim.len(), 1);
    let sig = &verdict.dkim[0];
    assert_eq!(
        (sig.result, sig.domain.as_str(), sig.selector.as_str()),
        (DkimResult::Pass, "example.com", "s2048")
    );
    assert_eq!(sig.algorithm, "rsa-sha256");
    assert_eq!(sig.key_bits, Some(2048));
    assert_eq!(sig.b_prefix.len(), 8);
    assert_eq!(verdict.dmarc, DmarcResult::Pass, "{}", explain(&verdict));
    let eval = verdict.decisive_evaluation().unwrap();
    assert!(eval.dkim_aligned && !eval.spf_aligned);
    assert_eq!(
        verdict.authentication_results,
        format!(
            "mx.test;\n\tspf=fail smtp.mailfrom=example.net;\n\tdkim=pass header.d=example.com header.s=s2048 header.b={};\n\tarc=none;\n\tdmarc=pass (p=reject sp=quarantine dis=none) header.from=example.com policy.dmarc=reject",
            // base64 may hold "/" and "+", which a token cannot (RFC 2045 §5.1).
            dmarc_verifier::auth_results::quote_value(&sig.b_prefix)
        )
    );
}

/// `trail: false` leaves the trail empty and changes nothing else.
#[tokio::test]
async fn without_the_trail_the_verdict_is_the_same() {
    let (_dns, with) = setup(&zone(BASE), |_| {}).await;
    let (_dns2, without) = setup(&zone(BASE), |c| c.trail = false).await;
    let env = envelope("203.0.113.9", "bounce@example.net");
    let message = data("dkim-pass-rsa.eml");
    let a = with.verify_with_draw(&env, &message, 0).await;
    let b = without.verify_with_draw(&env, &message, 0).await;
    assert!(!a.trail.is_empty());
    assert!(b.trail.is_empty());
    assert_eq!(a.authentication_results, b.authentication_results);
    assert_eq!(
        (a.dmarc, a.disposition, a.dkim.clone(), a.spf.clone()),
        (b.dmarc, b.disposition, b.dkim.clone(), b.spf.clone())
    );
}

#[tokio::test]
async fn both_pass_with_ed25519() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("192.0.2.7", "user@example.com"),
            &data("dkim-pass-ed25519.eml"),
        )
        .await;
    assert_eq!(
        verdict.dkim[0].result,
        DkimResult::Pass,
        "{}",
        explain(&verdict)
    );
    assert_eq!(verdict.dkim[0].algorithm, "ed25519-sha256");
    assert_eq!(verdict.dkim[0].key_bits, Some(256));
    let eval = verdict.decisive_evaluation().unwrap();
    assert!(eval.spf_aligned && eval.dkim_aligned);
    assert_eq!(verdict.dmarc, DmarcResult::Pass);
}

#[tokio::test]
async fn neither_passes_and_p_reject_rejects() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "ceo@example.com"),
            &message("\"CEO\" <ceo@example.com>"),
        )
        .await;
    assert_eq!(verdict.spf.result, SpfResult::Fail);
    assert_eq!(verdict.dmarc, DmarcResult::Fail);
    assert_eq!(verdict.disposition, Disposition::Reject);
    assert_eq!(verdict.override_reason, None);
    assert_eq!(
        verdict.authentication_results,
        "mx.test;\n\tspf=fail smtp.mailfrom=example.com;\n\tdkim=none;\n\tarc=none;\n\tdmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com policy.dmarc=reject"
    );
}

#[tokio::test]
async fn relaxed_and_strict_alignment() {
    // d=sub.example.com signs for user@example.com.
    let relaxed = zone(&format!(
        "{BASE}\n_dmarc.example.org. IN TXT \"v=DMARC1; p=none\""
    ));
    let (_dns, verifier) = setup(&relaxed, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "x@example.net"),
            &data("dkim-sub.eml"),
        )
        .await;
    assert_eq!(
        verdict.dkim[0].result,
        DkimResult::Pass,
        "{}",
        explain(&verdict)
    );
    assert_eq!(verdict.dmarc, DmarcResult::Pass, "{}", explain(&verdict));
    let alignment = verdict.decisive_evaluation().unwrap().dkim_alignments[0]
        .clone()
        .unwrap();
    assert_eq!(
        alignment.explain(),
        "relaxed: organizational domains example.com = example.com"
    );

    let strict = zone(
        r#"example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
mail.example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
example.net. IN TXT "v=spf1 -all""#,
    );
    let (_dns, verifier) = setup(&strict, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("192.0.2.9", "bounce@mail.example.com"),
            &data("dkim-sub.eml"),
        )
        .await;
    assert_eq!(verdict.spf.result, SpfResult::Pass);
    let eval = verdict.decisive_evaluation().unwrap();
    assert!(
        !eval.spf_aligned && !eval.dkim_aligned,
        "{}",
        explain(&verdict)
    );
    assert_eq!(
        eval.spf_alignment.as_ref().unwrap().explain(),
        "strict: mail.example.com ≠ example.com"
    );
    assert_eq!(verdict.dmarc, DmarcResult::Fail);
    assert_eq!(verdict.disposition, Disposition::Reject);
}

#[tokio::test]
async fn third_party_signature_does_not_align() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "x@example.net"),
            &data("dkim-third-party.eml"),
        )
        .await;
    assert_eq!(verdict.dkim[0].result, DkimResult::Pass);
    assert_eq!(verdict.dkim[0].domain, "example.net");
    assert_eq!(verdict.dmarc, DmarcResult::Fail, "{}", explain(&verdict));
    let alignment = verdict.decisive_evaluation().unwrap().dkim_alignments[0]
        .clone()
        .unwrap();
    assert_eq!(
        alignment.explain(),
        "relaxed: organizational domains example.net ≠ example.com"
    );
}

#[tokio::test]
async fn existing_subdomain_gets_sp() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@mail.example.com"),
            &message("a@mail.example.com"),
        )
        .await;
    let eval = verdict.decisive_evaluation().unwrap();
    assert_eq!(
        eval.policy_domain.as_deref(),
        Some("example.com"),
        "{}",
        explain(&verdict)
    );
    let policy = eval.policy.unwrap();
    assert_eq!(
        (policy.source, policy.published),
        (PolicySource::Sp, Policy::Quarantine)
    );
    assert_eq!(verdict.disposition, Disposition::Quarantine);
}

#[tokio::test]
async fn non_existent_subdomain_gets_np() {
    // np is an RFC 9989 tag: under PSL (RFC 7489) discovery it is unknown,
    // sp applies, and nobody asks whether the domain exists.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@nope.example.com"),
            &message("a@nope.example.com"),
        )
        .await;
    let policy = verdict.decisive_evaluation().unwrap().policy.unwrap();
    assert_eq!(
        (policy.source, policy.published),
        (PolicySource::Sp, Policy::Quarantine),
        "{}",
        explain(&verdict)
    );
    assert_eq!(
        dns.query_count("nope.example.com"),
        1,
        "only its SPF record"
    );

    let (dns, verifier) = setup(&zone(BASE), |c| {
        c.discovery = dmarc_verifier::DiscoveryMethod::TreeWalk
    })
    .await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@nope.example.com"),
            &message("a@nope.example.com"),
        )
        .await;
    let policy = verdict.decisive_evaluation().unwrap().policy.unwrap();
    assert_eq!(
        (policy.source, policy.published),
        (PolicySource::Np, Policy::Reject),
        "{}",
        explain(&verdict)
    );
    assert_eq!(verdict.disposition, Disposition::Reject);
    // RFC 8020: the existence question was asked of the Author Domain.
    assert!(dns.query_count("nope.example.com") >= 1);
}

#[tokio::test]
async fn pct_with_a_fixed_draw() {
    let pct_zone = |pct: u8| {
        zone(&format!(
            "example.com. IN TXT \"v=spf1 -all\"\n_dmarc.example.com. IN TXT \"v=DMARC1; p=reject; pct={pct}\""
        ))
    };
    // (pct, mode, draw) → (disposition, sampled, override)
    let cases = [
        (100, PctMode::Honor, 99, Disposition::Reject, true, None),
        (50, PctMode::Honor, 49, Disposition::Reject, true, None),
        (
            50,
            PctMode::Honor,
            50,
            Disposition::Quarantine,
            false,
            Some(OverrideReason::SampledOut),
        ),
        (
            0,
            PctMode::Honor,
            0,
            Disposition::Quarantine,
            false,
            Some(OverrideReason::SampledOut),
        ),
        (0, PctMode::Ignore, 0, Disposition::Reject, true, None),
        (
            50,
            PctMode::AsTestMode,
            0,
            Disposition::Quarantine,
            true,
            Some(OverrideReason::PolicyTestMode),
        ),
    ];
    for (pct, mode, draw, disposition, sampled, reason) in cases {
        let (_dns, verifier) = setup(&pct_zone(pct), |c| c.pct = mode).await;
        let verdict = verifier
            .verify_with_draw(
                &envelope("203.0.113.9", "a@example.com"),
                &message("a@example.com"),
                draw,
            )
            .await;
        let policy = verdict.decisive_evaluation().unwrap().policy.unwrap();
        assert_eq!(
            (verdict.disposition, policy.sampled, verdict.override_reason),
            (disposition, sampled, reason),
            "pct={pct} {mode:?} draw={draw}\n{}",
            explain(&verdict)
        );
    }
}

#[tokio::test]
async fn test_mode_lowers_the_policy() {
    let z = zone("example.com. IN TXT \"v=spf1 -all\"\n_dmarc.example.com. IN TXT \"v=DMARC1; p=reject; t=y\"");
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
    assert_eq!(verdict.disposition, Disposition::Quarantine);
    assert_eq!(
        verdict.override_reason,
        Some(OverrideReason::PolicyTestMode)
    );
    assert!(verdict.authentication_results.ends_with(
        "dmarc=fail (p=reject sp=reject dis=quarantine) header.from=example.com policy.dmarc=quarantine"
    ), "{}", verdict.authentication_results);
}

#[tokio::test]
async fn several_records_at_one_name() {
    let z = zone(
        r#"example.org. IN TXT "v=spf1 -all"
_dmarc.multi.example.org. IN TXT "v=DMARC1; p=none"
_dmarc.multi.example.org. IN TXT "v=DMARC1; p=quarantine"
_dmarc.multi.example.org. IN TXT "unrelated text"
_dmarc.example.org. IN TXT "v=DMARC1; p=reject""#,
    );
    // RFC 7489 §6.6.3 step 5: several records end discovery.
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@multi.example.org"),
            &message("a@multi.example.org"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::None, "{}", explain(&verdict));
    assert_eq!(verdict.disposition, Disposition::Accept);
    // RFC 9989 §4.10 step 2: they are discarded and the walk goes on.
    let (_dns, verifier) = setup(&z, |c| c.discovery = DiscoveryMethod::TreeWalk).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@multi.example.org"),
            &message("a@multi.example.org"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::Fail, "{}", explain(&verdict));
    assert_eq!(
        verdict
            .decisive_evaluation()
            .unwrap()
            .policy_domain
            .as_deref(),
        Some("example.org")
    );
    assert_eq!(verdict.disposition, Disposition::Reject);
}

/// dept.example.com declares itself an Organizational Domain (psd=n); the
/// PSL says example.com.
const PSD_N: &str = r#"
example.com. IN TXT "v=spf1 -all"
_dmarc.example.com. IN TXT "v=DMARC1; p=none"
_dmarc.dept.example.com. IN TXT "v=DMARC1; p=reject; psd=n"
mail.dept.example.com. IN A 192.0.2.3
"#;

#[tokio::test]
async fn tree_walk_and_psl_disagree_and_shadow_discovery_says_so() {
    let author = "a@mail.dept.example.com";
    let (_dns, verifier) = setup(&zone(PSD_N), |c| c.shadow_discovery = true).await;
    let verdict = verifier
        .verify(&envelope("203.0.113.9", author), &message(author))
        .await;
    let eval = verdict.decisive_evaluation().unwrap();
    assert_eq!(
        eval.policy_domain.as_deref(),
        Some("example.com"),
        "{}",
        explain(&verdict)
    );
    assert_eq!(eval.org_domain.as_deref(), Some("example.com"));
    assert_eq!(verdict.disposition, Disposition::Accept);
    assert_eq!(verdict.shadow.len(), 1);
    assert_eq!(
        verdict.shadow[0].shadow.1.as_deref(),
        Some("dept.example.com")
    );
    assert_eq!(verifier.shadow_difference_count(), 1);

    let (_dns, verifier) = setup(&zone(PSD_N), |c| c.discovery = DiscoveryMethod::TreeWalk).await;
    let verdict = verifier
        .verify(&envelope("203.0.113.9", author), &message(author))
        .await;
    let eval = verdict.decisive_evaluation().unwrap();
    assert_eq!(
        eval.policy_domain.as_deref(),
        Some("dept.example.com"),
        "{}",
        explain(&verdict)
    );
    assert_eq!(eval.org_domain.as_deref(), Some("dept.example.com"));
    assert_eq!(verdict.disposition, Disposition::Reject);
}

#[tokio::test]
async fn tree_walk_finds_a_public_suffix_domain_policy() {
    let z = zone(
        r#"_dmarc.com. IN TXT "v=DMARC1; p=reject; psd=y"
nodmarc.com. IN SOA ns.nodmarc.com. h.nodmarc.com. 1 3600 900 604800 300
nodmarc.com. IN TXT "v=spf1 -all""#,
    );
    let (_dns, verifier) = setup(&z, |c| c.discovery = DiscoveryMethod::TreeWalk).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@nodmarc.com"),
            &message("a@nodmarc.com"),
        )
        .await;
    let eval = verdict.decisive_evaluation().unwrap();
    assert_eq!(
        eval.policy_domain.as_deref(),
        Some("com"),
        "{}",
        explain(&verdict)
    );
    assert_eq!(eval.org_domain.as_deref(), Some("nodmarc.com"));
    assert_eq!(verdict.disposition, Disposition::Reject);
    // The PSL method never asks _dmarc.com.
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@nodmarc.com"),
            &message("a@nodmarc.com"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::None, "{}", explain(&verdict));
}

#[tokio::test]
async fn multi_from_applies_the_strictest_failing_policy() {
    // CVE-2019-16378: a second mailbox must not hide a failing domain.
    let z = zone(&format!(
        "{BASE}\nexample.org. IN TXT \"v=spf1 -all\"\n_dmarc.example.org. IN TXT \"v=DMARC1; p=quarantine\""
    ));
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("192.0.2.5", "user@example.com"),
            &message("user@example.com, Boss <boss@example.org>"),
        )
        .await;
    assert_eq!(verdict.evaluations.len(), 2);
    assert_eq!(verdict.evaluations[0].result, DmarcResult::Pass);
    assert_eq!(verdict.evaluations[1].result, DmarcResult::Fail);
    assert_eq!(verdict.dmarc, DmarcResult::Fail);
    assert_eq!(verdict.decisive, Some(1));
    assert_eq!(
        verdict.disposition,
        Disposition::Quarantine,
        "{}",
        explain(&verdict)
    );
    assert!(verdict
        .authentication_results
        .contains("header.from=example.com"));
    assert!(verdict
        .authentication_results
        .contains("header.from=example.org"));

    // Over the cap: its own outcome.
    let (_dns, verifier) = setup(&z, |c| c.max_author_domains = 1).await;
    let verdict = verifier
        .verify(
            &envelope("192.0.2.5", "user@example.com"),
            &message("user@example.com, boss@example.org"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::PermError);
    assert_eq!(verdict.disposition, Disposition::Reject);
    assert!(verdict
        .authentication_results
        .ends_with("dmarc=permerror reason=too-many-from-domains"));
}

#[tokio::test]
async fn missing_or_repeated_from_is_a_distinct_outcome() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let no_from = b"To: rcpt@example.org\r\nSubject: no from\r\n\r\nHi\r\n";
    let verdict = verifier
        .verify(&envelope("192.0.2.5", "user@example.com"), no_from)
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::PermError);
    assert_eq!(verdict.disposition, Disposition::Reject);
    assert!(verdict
        .authentication_results
        .ends_with("dmarc=permerror reason=no-from"));

    let two_from = b"From: a@example.com\r\nFrom: b@evil.example\r\nSubject: x\r\n\r\nHi\r\n";
    let verdict = verifier
        .verify(&envelope("192.0.2.5", "user@example.com"), two_from)
        .await;
    assert!(verdict
        .authentication_results
        .ends_with("dmarc=permerror reason=multiple-from"));

    let (_dns, verifier) = setup(&zone(BASE), |c| {
        c.invalid_from_result = InvalidFromResult::None;
        c.invalid_from_disposition = Disposition::Accept;
    })
    .await;
    let verdict = verifier
        .verify(&envelope("192.0.2.5", "user@example.com"), no_from)
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::None);
    assert_eq!(verdict.disposition, Disposition::Accept);
}

#[tokio::test]
async fn dns_timeout_on_the_record_is_temperror() {
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("_dmarc.example.com", None, Fault::Timeout);
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
    assert_eq!(
        verdict.dmarc,
        DmarcResult::TempError,
        "{}",
        explain(&verdict)
    );
    assert_eq!(verdict.disposition, Disposition::Tempfail);
    assert!(verdict
        .authentication_results
        .ends_with("dmarc=temperror reason=dns-error header.from=example.com"));

    let (dns, verifier) = setup(&zone(BASE), |c| c.dmarc_temperror = TempErrorAction::Accept).await;
    dns.set_fault("_dmarc.example.com", None, Fault::ServFail);
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::TempError);
    assert_eq!(verdict.disposition, Disposition::Accept);
}

#[tokio::test]
async fn spf_temperror_on_an_aligned_domain_tempfails() {
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("example.com", None, Fault::ServFail);
    let verdict = verifier
        .verify(
            &envelope("192.0.2.5", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
    assert_eq!(
        verdict.spf.result,
        SpfResult::TempError,
        "{}",
        explain(&verdict)
    );
    assert_eq!(verdict.dmarc, DmarcResult::TempError);
    assert_eq!(verdict.disposition, Disposition::Tempfail);
}

#[tokio::test]
async fn a_hostile_display_name_cannot_change_the_domain_or_the_header() {
    let z = zone(&format!(
        "{BASE}\nevil.example.org. IN TXT \"v=spf1 ip4:203.0.113.0/24 -all\""
    ));
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let from = "\"ceo@example.com; dmarc=pass header.from=example.com\" <x@evil.example.org>";
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "x@evil.example.org"),
            &message(from),
        )
        .await;
    assert_eq!(
        verdict.author_domains,
        Ok(vec!["evil.example.org".to_string()])
    );
    assert_eq!(
        verdict.authentication_results,
        "mx.test;\n\tspf=pass smtp.mailfrom=evil.example.org;\n\tdkim=none;\n\tarc=none;\n\tdmarc=none header.from=evil.example.org"
    );
    // A From domain that is not a plain domain is refused, not quoted.
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "x@evil.example.org"),
            &message("x@evil.example;dmarc=pass"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::PermError);
    assert!(verdict
        .authentication_results
        .ends_with("dmarc=permerror reason=unparseable-from"));
}

#[tokio::test]
async fn null_sender_is_checked_as_the_helo_name() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(&envelope("192.0.2.5", ""), &message("a@example.com"))
        .await;
    assert_eq!(
        (
            verdict.spf.result,
            verdict.spf.scope,
            verdict.spf.domain.as_str()
        ),
        (SpfResult::Pass, SpfScope::Helo, "mail.example.com")
    );
    assert!(verdict
        .authentication_results
        .contains("spf=pass smtp.helo=mail.example.com"));
    // mail.example.com is relaxed-aligned with example.com.
    assert_eq!(verdict.dmarc, DmarcResult::Pass, "{}", explain(&verdict));
}

#[tokio::test]
async fn without_a_client_ip_spf_is_none_with_a_reason() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let env = dmarc_verifier::Envelope {
        mail_from: "a@example.com".into(),
        ..Default::default()
    };
    let verdict = verifier.verify(&env, &message("a@example.com")).await;
    assert_eq!(verdict.spf.result, SpfResult::None);
    assert!(verdict
        .authentication_results
        .contains("spf=none reason=\"no client IP\" smtp.mailfrom=example.com"));
}

#[tokio::test]
async fn rfc8301_weak_keys_and_rsa_sha1() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let env = envelope("203.0.113.9", "x@example.net");
    let cases: &[(&str, DkimResult, Option<u32>)] = &[
        ("dkim-weak-key.eml", DkimResult::Fail, Some(512)),
        ("dkim-1024.eml", DkimResult::Pass, Some(1024)),
        ("dkim-rsa-sha1.eml", DkimResult::Policy, Some(2048)),
        // RFC 8601 §2.7.1: a body hash that does not verify is a fail, and
        // b= of a signature that did not verify says nothing of the key.
        ("dkim-body-tampered.eml", DkimResult::Fail, None),
        ("dkim-pass-lf.eml", DkimResult::Pass, Some(2048)),
    ];
    for (file, result, bits) in cases {
        let verdict = verifier.verify(&env, &data(file)).await;
        assert_eq!(verdict.dkim.len(), 1, "{file}");
        assert_eq!(
            (verdict.dkim[0].result, verdict.dkim[0].key_bits),
            (*result, *bits),
            "{file}\n{}",
            explain(&verdict)
        );
    }
    let (_dns, verifier) = setup(&zone(BASE), |c| c.allow_rsa_sha1 = true).await;
    let verdict = verifier.verify(&env, &data("dkim-rsa-sha1.eml")).await;
    assert_eq!(verdict.dkim[0].result, DkimResult::Pass);
}

#[tokio::test]
async fn every_signature_is_reported() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "x@example.net"),
            &data("dkim-two-sigs.eml"),
        )
        .await;
    let got: Vec<(&str, DkimResult)> = verdict
        .dkim
        .iter()
        .map(|d| (d.domain.as_str(), d.result))
        .collect();
    assert_eq!(got.len(), 2, "{}", explain(&verdict));
    assert!(got.contains(&("example.net", DkimResult::Pass)), "{got:?}");
    assert!(
        got.iter()
            .any(|(d, r)| *d == "example.com" && *r != DkimResult::Pass),
        "{got:?}"
    );
    assert_eq!(verdict.dmarc, DmarcResult::Fail);
}

#[tokio::test]
async fn monitor_mode_accepts_but_reports() {
    let (_dns, verifier) = setup(&zone(BASE), |c| {
        c.enforcement = dmarc_verifier::Enforcement::Monitor
    })
    .await;
    let verdict = verifier
        .verify(
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
    assert_eq!(verdict.dmarc, DmarcResult::Fail);
    assert_eq!(verdict.disposition, Disposition::Accept);
    assert_eq!(verdict.override_reason, Some(OverrideReason::LocalPolicy));
}

#[tokio::test]
async fn answers_are_cached_across_messages() {
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let env = envelope("192.0.2.5", "user@example.com");
    let first = verifier.verify(&env, &data("dkim-pass-rsa.eml")).await;
    let asked = dns.queries().len();
    let second = verifier.verify(&env, &data("dkim-pass-rsa.eml")).await;
    assert_eq!(dns.queries().len(), asked, "the second message asked again");
    assert_eq!(first.authentication_results, second.authentication_results);
    assert!(second
        .trail
        .iter()
        .any(|s| matches!(s, dmarc_verifier::trail::Step::Dns(e) if e.cached)));
}

#[tokio::test]
async fn an_ipv4_mapped_client_is_checked_as_ipv4() {
    // RFC 7208 §5: ::ffff:192.0.2.5 is 192.0.2.5 (found by the RFC 7208 suite).
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let verdict = verifier
        .verify(
            &envelope("::ffff:192.0.2.5", "user@example.com"),
            &message("user@example.com"),
        )
        .await;
    assert_eq!(verdict.spf.result, SpfResult::Pass, "{}", explain(&verdict));
    assert_eq!(verdict.dmarc, DmarcResult::Pass);
}

#[tokio::test]
async fn the_authserv_id_can_be_given_per_message() {
    let (_dns, verifier) = setup(&zone(BASE), |_| {}).await;
    let options = dmarc_verifier::VerifyOptions {
        authserv_id: Some("mx2.example.net".into()),
        draw: Some(0),
    };
    let verdict = verifier
        .verify_with(
            &envelope("192.0.2.5", "user@example.com"),
            &message("user@example.com"),
            &options,
        )
        .await;
    assert!(verdict
        .authentication_results
        .starts_with("mx2.example.net;\n\tspf=pass"));
    let verdict = verifier
        .verify(
            &envelope("192.0.2.5", "user@example.com"),
            &message("user@example.com"),
        )
        .await;
    assert!(verdict
        .authentication_results
        .starts_with("mx.test;\n\tspf=pass"));
}
