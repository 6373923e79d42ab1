//! Properties that must hold for any input (proptest).

use dmarc_verifier::{
    alignment::Alignment,
    auth_results::{self, parse, AuthResults},
    message::{author_domains, is_valid_a_label_domain},
    policy::{apply_pct_and_t, PolicySource},
    record::DmarcRecord,
    DkimCheck, DkimResult, PctMode, Policy, SpfCheck, SpfResult, SpfScope,
};
use proptest::prelude::*;

/// What our quoting keeps of a value: control characters become spaces;
/// the header is ASCII, so `§` becomes `section ` and any other non-ASCII
/// character `?`.
fn as_quoted(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            c if c.is_control() => out.push(' '),
            c if c.is_ascii() => out.push(c),
            '§' => out.push_str("section "),
            _ => out.push('?'),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authentication_results_parse_back(
        id in "[a-z0-9.-]{1,30}",
        spf_domain in any::<String>(),
        dkim_domain in any::<String>(),
        selector in any::<String>(),
        reason in any::<String>(),
        b in "[A-Za-z0-9+/]{8}",
    ) {
        let mut ar = AuthResults::new(&id);
        let spf = SpfCheck { result: SpfResult::Pass, domain: spf_domain.clone(), scope: SpfScope::MailFrom, reason: None, record: None };
        ar.push(auth_results::spf_resinfo(&spf));
        let dkim = DkimCheck {
            result: DkimResult::Fail,
            domain: dkim_domain.clone(),
            selector: selector.clone(),
            algorithm: "rsa-sha256".into(),
            key_bits: Some(2048),
            b_prefix: b.clone(),
            reason: Some(reason.clone()),
            body_hash: Some(true),
        };
        ar.push(auth_results::dkim_resinfo(&dkim));
        let value = ar.value();
        let parsed = parse(&value).map_err(|e| TestCaseError::fail(format!("{value:?}: {e}")))?;
        prop_assert_eq!(&parsed.authserv_id, &id);
        prop_assert_eq!(parsed.results.len(), 2);
        prop_assert_eq!(&parsed.results[0].method, "spf");
        prop_assert_eq!(&parsed.results[0].result, "pass");
        let spf_props: Vec<String> = parsed.results[0].props.iter().map(|p| p.value.clone()).collect();
        if spf_domain.is_empty() {
            prop_assert!(spf_props.is_empty());
        } else {
            prop_assert_eq!(spf_props, vec![as_quoted(&spf_domain)]);
        }
        let d = &parsed.results[1];
        prop_assert_eq!(&d.method, "dkim");
        prop_assert_eq!(&d.result, "fail");
        prop_assert_eq!(d.reason.clone(), Some(as_quoted(&reason)));
        let mut expected = Vec::new();
        if !dkim_domain.is_empty() { expected.push(("d", as_quoted(&dkim_domain))); }
        if !selector.is_empty() { expected.push(("s", as_quoted(&selector))); }
        expected.push(("b", b.clone()));
        let got: Vec<(String, String)> = d.props.iter().map(|p| (p.property.clone(), p.value.clone())).collect();
        let expected: Vec<(String, String)> = expected.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        prop_assert_eq!(got, expected);
        // A forged result can never be smuggled in: exactly two results.
        prop_assert!(!value.contains("\r") && value.matches('\n').count() == 2);
        prop_assert!(value.is_ascii(), "{:?}", value);
    }

    #[test]
    fn from_parsing_never_panics_and_yields_a_labels(value in any::<String>()) {
        if let Ok(domains) = author_domains(&[value.as_bytes()], 5) {
            prop_assert!(!domains.is_empty());
            for domain in domains {
                prop_assert!(is_valid_a_label_domain(&domain), "{:?} from {:?}", domain, value);
            }
        }
    }

    #[test]
    fn from_parsing_of_structured_input(
        display in "[ -~]{0,20}",
        local in "[a-zA-Z0-9.+_-]{1,10}",
        labels in proptest::collection::vec("[a-z0-9]{1,10}", 1..4),
    ) {
        let domain = labels.join(".");
        let quoted = display.replace('\\', "\\\\").replace('"', "\\\"");
        let value = format!("\"{quoted}\" <{local}@{domain}>");
        prop_assert_eq!(author_domains(&[value.as_bytes()], 5), Ok(vec![domain]));
    }

    #[test]
    fn record_parsing_never_panics(raw in any::<String>()) {
        let _ = DmarcRecord::parse(&raw).map(|r| r.effective_policies(dmarc_verifier::DiscoveryMethod::TreeWalk));
    }

    #[test]
    fn record_parsing_of_tag_soup(tags in proptest::collection::btree_map("[a-z]{1,5}", "[!-:<-~][ -:<-~]{0,11}", 0..12)) {
        // Any grammatical tag-list (RFC 9989 §4.8) parses, whatever the
        // values: invalid values fall back to defaults.
        let tags: Vec<(String, String)> = tags.into_iter().filter(|(k, _)| k != "v").collect();
        let raw = std::iter::once("v=DMARC1".to_string())
            .chain(tags.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join("; ");
        let record = DmarcRecord::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert!(record.pct() <= 100);
        // The same list with one tag repeated is invalid (RFC 6376 §3.2).
        if let Some((k, v)) = tags.first() {
            let repeated = format!("{raw}; {}={v}", k.to_ascii_uppercase());
            prop_assert!(matches!(
                DmarcRecord::parse(&repeated),
                Err(dmarc_verifier::record::RecordError::InvalidTagList(_))
            ), "{}", repeated);
        }
    }

    #[test]
    fn alignment_is_symmetric(a in "[a-z]{1,5}(\\.[a-z]{1,5}){0,3}", b in "[a-z]{1,5}(\\.[a-z]{1,5}){0,3}", oa in "[a-z]{1,5}", ob in "[a-z]{1,5}") {
        prop_assert_eq!(Alignment::strict(&a, &b).aligned, Alignment::strict(&b, &a).aligned);
        prop_assert_eq!(Alignment::relaxed(&a, &oa, &b, &ob).aligned, Alignment::relaxed(&b, &ob, &a, &oa).aligned);
    }

    #[test]
    fn the_policy_in_force_never_exceeds_the_published_one(
        published in prop_oneof![Just(Policy::None), Just(Policy::Quarantine), Just(Policy::Reject)],
        pct in 0u8..=100,
        testing in any::<bool>(),
        draw in 0u8..100,
        mode in prop_oneof![Just(PctMode::Honor), Just(PctMode::Ignore), Just(PctMode::AsTestMode)],
    ) {
        let applied = apply_pct_and_t(published, PolicySource::P, pct, testing, mode, draw);
        prop_assert!(applied.applied <= published);
        prop_assert_eq!(applied.applied == published, applied.reason.is_none());
    }
}
