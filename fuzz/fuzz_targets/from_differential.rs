//! Differential fuzzing of Author Domain extraction against mail-parser:
//! whenever `message::author_domains` returns domains for a From value,
//! every mailbox domain mail-parser finds in it must be among them (or be
//! on the documented allow-list). The oracle is shared with the test
//! `crates/dmarc-verifier/tests/from_differential.rs`.
#![no_main]

#[path = "../../crates/dmarc-verifier/tests/from_differential/oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(why) = oracle::disagreement(data) {
        panic!("{why}");
    }
});
