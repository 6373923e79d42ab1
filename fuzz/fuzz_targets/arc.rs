//! ARC chains with valid and broken signatures: a message sealed twice
//! (i=1 by `arc.example`, a trusted sealer whose AAR says dmarc=pass, over
//! a body changed after the author's DKIM passed; i=2 by `fwd.example`,
//! Ed25519 keys in the zone) is changed by the input, verified, and sealed
//! again (see `dmarc_fuzz::arc_world`).
//!
//! Input: the first byte picks the change.
//! - 0: the rest, as header fields, goes on top of the sealed message
//!   (added, repeated, malformed or out-of-range sets);
//! - 1: the rest replaces the message's ARC fields (chains from scratch);
//! - 2: the rest is edits to the header section, pairs of (offset as two
//!   bytes little-endian, byte): broken signatures, instances, `cv=`;
//! - 3: the rest is appended to the body (changed after sealing).
//!
//! Checks, besides no panic and no hang (20 s): our A-R parses with one
//! `arc` result, the verdict's; a passing chain holds sets 1..N (N ≤ 50)
//! with `cv=none` then `pass`, its newest AMS verifies and `oldest-pass`
//! is 0 or in 2..=N; a chain that did not pass has no `oldest-pass`; any
//! override is of a DMARC failure, and the trusted sealer's names a set it
//! sealed whose AMS verifies, in a chain that passed. When our seal can be
//! added, the message it gives reads with one more set, `pass` if the
//! chain passed or had none, `fail` otherwise.
#![no_main]

use dmarc_fuzz::{arc_world, sealed};
use dmarc_verifier::{
    arc::{AmsResult, ArcResult, ChainValidation},
    auth_results::parse,
    DmarcResult, OverrideReason,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// The header section and the body of `message` (split at the first empty
/// line).
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => message.split_at(at + 2),
        None => (message, &[]),
    }
}

/// `header` without its ARC fields.
fn without_arc(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut skipping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"arc-");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let world = arc_world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = &world.base;
    let (header, body) = split(base);
    let message = match mode % 4 {
        0 => [rest, base].concat(),
        1 => [rest, &without_arc(header), body].concat(),
        2 => {
            let mut header = header.to_vec();
            for edit in rest.chunks_exact(3) {
                let offset = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % header.len();
                header[offset] = edit[2];
            }
            [&header, body].concat()
        }
        _ => [base.as_slice(), rest].concat(),
    };
    let run = |message: Vec<u8>| {
        world.dns.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                world.verifier.verify(&world.envelope, &message),
            )
            .await
            .expect("verify did not finish within 20 s")
        })
    };
    let verdict = run(message.clone());
    let arc = &verdict.arc;

    let value = &verdict.authentication_results;
    let parsed = parse(value).unwrap_or_else(|e| panic!("our A-R {value:?} does not parse: {e}"));
    assert!(value.is_ascii(), "our A-R is ASCII: {value:?}");
    let arcs: Vec<_> = parsed.results.iter().filter(|r| r.method == "arc").collect();
    assert_eq!(arcs.len(), 1, "{value}");
    assert_eq!(arcs[0].result, arc.result.as_str(), "{value}");

    if arc.result == ArcResult::Pass {
        let n = arc.chain.len();
        assert!((1..=50).contains(&n), "{n} sets");
        for (i, set) in arc.chain.iter().enumerate() {
            assert_eq!(set.instance as usize, i + 1);
            let cv = if i == 0 { ChainValidation::None } else { ChainValidation::Pass };
            assert_eq!(set.cv, cv);
        }
        assert_eq!(arc.chain[n - 1].ams, AmsResult::Pass);
        let oldest = arc.oldest_pass.expect("oldest-pass of a passing chain") as usize;
        assert!(oldest == 0 || (2..=n).contains(&oldest), "oldest-pass {oldest} of {n}");
    } else {
        assert_eq!(arc.oldest_pass, None);
    }
    if verdict.override_reason.is_some() && verdict.override_comment.is_some() {
        assert_eq!(verdict.dmarc, DmarcResult::Fail);
    }
    if let (Some(OverrideReason::TrustedForwarder), Some(comment)) =
        (verdict.override_reason, &verdict.override_comment)
    {
        if let Some(rest) = comment.strip_prefix("arc=pass i=") {
            assert_eq!(arc.result, ArcResult::Pass);
            let (i, sealer) = rest.split_once(" sealer=").expect("comment format");
            let set = &arc.chain[i.parse::<usize>().expect("instance") - 1];
            assert_eq!(set.sealer, sealer);
            assert_eq!(sealer, "arc.example");
            assert_eq!(set.ams, AmsResult::Pass);
        }
    }

    // Our seal on top: one more set, pass after pass or none, else fail.
    let fields = world.dns.rt.block_on(world.sealer.seal(&world.verifier, &message, &verdict));
    if let Ok(fields) = fields {
        assert_eq!(fields.len(), 3);
        let after = run(sealed(&fields, &message));
        match arc.result {
            ArcResult::Pass | ArcResult::None => {
                assert_eq!(after.arc.result, ArcResult::Pass, "{:?}", after.arc.reason);
                assert_eq!(after.arc.chain.len(), arc.chain.len() + 1);
            }
            ArcResult::Fail => assert_eq!(after.arc.result, ArcResult::Fail),
        }
    }
});
