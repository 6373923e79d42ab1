//! Our ARC seal (`[arc_seal]`, RFC 8617 §5.1) on a message we deliver.
//!
//! The seal is over the message as the next hop receives it: the forged
//! Authentication-Results fields we delete are left out and ours is on
//! top, exactly as `actions::apply` changes the message. It is made only
//! for a message we checked and deliver (accept or hold): never for a
//! refused one (reject, tempfail), a skipped one (no verdict) or one over
//! `max_message_size` (no body to sign). A message that cannot be sealed
//! (its chain ends with `cv=fail`, it already has 50 sets, its key record
//! reads differently now) is delivered unsealed, with a debug line.

use crate::{actions::Action, message::AUTH_RESULTS};
use dmarc_verifier::{arc::ArcSealer, message::header_name_is, Verdict, Verifier};

/// The three ARC fields to put on top of the delivered message (ARC-Seal
/// first), or none.
pub(crate) async fn seal(
    sealer: Option<&ArcSealer>,
    verifier: &Verifier,
    raw: &[u8],
    delete: &[i32],
    verdict: &Verdict,
    action: &Action,
    queue_id: &str,
) -> Vec<(String, String)> {
    let Some(sealer) = sealer else {
        return Vec::new();
    };
    if !matches!(action, Action::Accept | Action::Hold(_)) {
        return Vec::new();
    }
    let message = delivered(raw, delete, &verdict.authentication_results);
    match sealer.seal(verifier, &message, verdict).await {
        Ok(fields) => fields,
        Err(error) => {
            tracing::debug!(queue_id = %queue_id, "{error}");
            Vec::new()
        }
    }
}

/// The message as delivered: our Authentication-Results on top, then the
/// header fields received but the Authentication-Results at the 1-based
/// indices `delete` (counted among those fields), then the body.
pub(crate) fn delivered(raw: &[u8], delete: &[i32], auth_results: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + auth_results.len() + 64);
    out.extend_from_slice(AUTH_RESULTS.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(auth_results.replace('\n', "\r\n").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut rest = raw;
    let mut seen = 0i32;
    // One field per iteration: its first line and its continuation lines.
    while !rest.is_empty() && !rest.starts_with(b"\r\n") {
        let mut end = 0;
        loop {
            match memchr::memmem::find(rest.get(end..).unwrap_or_default(), b"\r\n") {
                Some(at) => end += at + 2,
                None => {
                    end = rest.len();
                    break;
                }
            }
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let field = rest.get(..end).unwrap_or(rest);
        rest = rest.get(end..).unwrap_or_default();
        let name = field.split(|&b| b == b':').next().unwrap_or_default();
        if header_name_is(name, AUTH_RESULTS) {
            seen = seen.saturating_add(1);
            if delete.contains(&seen) {
                continue;
            }
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivered_message_has_ours_on_top_and_not_the_deleted_ones() {
        let raw = b"Authentication-Results: other; spf=pass\r\nFrom: a@example.com\r\nauthentication-results : mx.test;\r\n\tdmarc=pass\r\nSubject: x\r\n\r\nbody\r\n";
        let out = delivered(raw, &[2], "mx.test;\n\tdmarc=fail");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: mx.test;\r\n\tdmarc=fail\r\nAuthentication-Results: other; spf=pass\r\nFrom: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
        );
        let out = delivered(b"From: a\r\n\r\n", &[], "mx; none");
        assert_eq!(out, b"Authentication-Results: mx; none\r\nFrom: a\r\n\r\n");
    }
}
