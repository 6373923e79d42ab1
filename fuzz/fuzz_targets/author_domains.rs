//! From-header / Author Domain extraction (`message::author_domains`).
//!
//! Input: the first byte picks the cap on distinct domains (1-100, as the
//! configuration allows); the rest is split on NUL into the values of the
//! From fields (none, one or several). Checks: no panic; an `Ok` holds
//! 1..=cap distinct, valid, already normalised A-label domains; the same
//! input gives the same answer.
#![no_main]

use dmarc_verifier::message::{author_domains, is_valid_a_label_domain, normalize_domain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cap = usize::from(first % 100) + 1;
    let values: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == 0).collect()
    };
    let result = author_domains(&values, cap);
    if let Ok(domains) = &result {
        assert!(!domains.is_empty(), "Ok with no domain");
        assert!(
            domains.len() <= cap,
            "{} domains over cap {cap}",
            domains.len()
        );
        for (i, domain) in domains.iter().enumerate() {
            assert!(is_valid_a_label_domain(domain), "invalid domain {domain:?}");
            assert_eq!(
                normalize_domain(domain).as_deref(),
                Ok(domain.as_str()),
                "normalisation is not idempotent"
            );
            assert!(!domains[..i].contains(domain), "duplicate {domain:?}");
        }
    }
    assert_eq!(author_domains(&values, cap), result, "not deterministic");
});
