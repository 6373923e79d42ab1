//! DMARC record parsing (`DmarcRecord::parse`) and `effective_policies`.
//!
//! Checks: no panic; `raw()` is the input; `pct` is 0-100; RFC 7489
//! processing (np ignored) is never stricter about applying DMARC than RFC
//! 9989's (np counts); a forced `p=none` is none everywhere; re-parsing the
//! raw text gives the same record.
#![no_main]

use dmarc_verifier::{
    record::{DmarcRecord, Policy},
    DiscoveryMethod,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(record) = DmarcRecord::parse(&text) else {
        return;
    };
    assert_eq!(record.raw(), text);
    assert!(record.pct() <= 100, "pct {}", record.pct());
    let rfc9989 = record.effective_policies(DiscoveryMethod::TreeWalk);
    let rfc7489 = record.effective_policies(DiscoveryMethod::Psl);
    if rfc9989.is_some() {
        assert!(rfc7489.is_some(), "np made RFC 7489 processing stop");
    }
    for policies in [rfc9989, rfc7489].into_iter().flatten() {
        if policies.forced_none {
            assert_eq!(
                (policies.p, policies.sp, policies.np),
                (Policy::None, Policy::None, Policy::None)
            );
        }
    }
    let again = DmarcRecord::parse(record.raw()).expect("a parsed record parses again");
    assert_eq!(again, record);
    // What the A-R comment and the logs print.
    let _ = (
        record.fo(),
        record.ri(),
        record.rua(),
        record.ruf(),
        record.psd(),
    );
    for uri in record.rua().iter().chain(record.ruf()) {
        let _ = uri.mailto_address();
    }
});
