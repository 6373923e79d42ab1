//! The whole verifier on arbitrary message bytes, with a fixed envelope and
//! zone (`signed.zone` plus SPF and DMARC records, served by test-dns).
//!
//! Checks: no panic or hang; the Authentication-Results header we build
//! parses, carries our authserv-id and exactly one SPF and at least one
//! DKIM and DMARC result; the decisive evaluation exists when there are
//! evaluations.
#![no_main]

use dmarc_fuzz::{verify_world, AUTHSERV_ID};
use dmarc_verifier::auth_results::{claims_authserv_id, parse};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let world = verify_world();
    let Some((&draw, message)) = data.split_first() else {
        return;
    };
    let verdict = world.dns.rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            world
                .verifier
                .verify_with_draw(&world.envelope, message, draw % 100),
        )
        .await
        .expect("verify did not finish within 20 s")
    });
    let value = &verdict.authentication_results;
    let parsed = parse(value).unwrap_or_else(|e| panic!("our A-R {value:?} does not parse: {e}"));
    assert!(value.is_ascii(), "our A-R is ASCII: {value:?}");
    assert_eq!(parsed.authserv_id, AUTHSERV_ID);
    assert!(claims_authserv_id(value, AUTHSERV_ID));
    let count = |method: &str| parsed.results.iter().filter(|r| r.method == method).count();
    assert_eq!(count("spf"), 1, "{value}");
    assert!(count("dkim") >= 1, "{value}");
    assert!(count("dmarc") >= 1, "{value}");
    assert_eq!(
        count("dkim"),
        verdict.dkim.len().max(1),
        "one dkim result per signature: {value}"
    );
    if !verdict.evaluations.is_empty() {
        assert!(verdict.decisive_evaluation().is_some());
    }
    let _ = verdict.authentication_results_header("\r\n");
});
