//! One message as the MTA sends it: header fields one by one, then body
//! chunks. Buffers up to a size cap, reassembles the raw message in CRLF
//! form for the verifier, and notes which incoming Authentication-Results
//! fields must be deleted (RFC 8601 §5).

use dmarc_verifier::{auth_results::claims_authserv_id, message::header_name_is};
use std::borrow::Cow;

/// The header field we write and police.
pub const AUTH_RESULTS: &str = "Authentication-Results";

/// Which incoming Authentication-Results fields are forgeries, deleted
/// before ours is added (RFC 8601 §5).
#[derive(Debug, Clone, Copy)]
pub struct Forged<'a> {
    /// This message's authserv-id.
    pub authserv_id: &'a str,
    /// Sibling MX hosts' ids (`authserv_id_aliases`).
    pub aliases: &'a [String],
    /// `remove_all_authentication_results`.
    pub remove_all: bool,
}

impl Forged<'_> {
    /// True when an Authentication-Results value must be deleted: every one
    /// under `remove_all`, else one that claims our authserv-id or an alias
    /// (even when it does not parse, RFC 8601 §5).
    pub fn is_forged(&self, value: &str) -> bool {
        self.remove_all
            || claims_authserv_id(value, self.authserv_id)
            || self
                .aliases
                .iter()
                .any(|alias| claims_authserv_id(value, alias))
    }
}

/// A message being received.
#[derive(Debug)]
pub(crate) struct MessageBuffer {
    cap: usize,
    /// Bytes received so far (header fields and body), buffered or not.
    size: usize,
    /// The header fields, then (once the body starts) the empty line and
    /// the body: the message as the verifier reads it, built in place so
    /// that it is never copied.
    data: Vec<u8>,
    /// Where the body starts in `data`, once the first chunk came.
    body_start: Option<usize>,
    /// The raw values of the From fields (only the first once the header
    /// section went over the cap).
    from_values: Vec<Vec<u8>>,
    /// The first From field as a CRLF line, kept whatever the cap: the
    /// header-only verdict of an oversized message needs it.
    first_from: Vec<u8>,
    /// From fields seen, kept or not.
    from_fields: usize,
    /// DKIM-Signature fields seen, kept or not.
    dkim_fields: usize,
    headers_complete: bool,
    body_complete: bool,
    /// Authentication-Results fields seen so far.
    auth_results_seen: i32,
    /// 1-based indices (among Authentication-Results fields) to delete,
    /// at most [`MAX_DELETIONS_KEPT`].
    delete: Vec<i32>,
    /// Fields to delete seen, kept or not.
    delete_seen: usize,
}

/// The most deletions remembered per message: more than the largest
/// `max_forged_authentication_results`, so the count says the message is
/// over it while memory stays bounded.
const MAX_DELETIONS_KEPT: usize = 10_001;

impl MessageBuffer {
    /// An empty message; at most `cap` bytes are buffered.
    pub(crate) fn new(cap: usize) -> MessageBuffer {
        MessageBuffer {
            cap,
            size: 0,
            data: Vec::new(),
            body_start: None,
            from_values: Vec::new(),
            first_from: Vec::new(),
            from_fields: 0,
            dkim_fields: 0,
            headers_complete: true,
            body_complete: true,
            auth_results_seen: 0,
            delete: Vec::new(),
            delete_seen: 0,
        }
    }

    /// Adds one header field. `value` is exactly what the MTA sent: with
    /// the leading-space option (SMFIP_HDR_LEADSPC) it keeps the white
    /// space after the colon, without it the MTA removed one space, which
    /// is put back. Continuation lines are separated by LF or CRLF.
    ///
    /// An Authentication-Results field is marked for deletion when
    /// `forged` says so (see [`Forged::is_forged`]).
    pub(crate) fn add_header(
        &mut self,
        name: &[u8],
        value: &[u8],
        leading_space: bool,
        forged: &Forged<'_>,
    ) {
        if header_name_is(name, AUTH_RESULTS) {
            self.auth_results_seen = self.auth_results_seen.saturating_add(1);
            let text = String::from_utf8_lossy(value);
            if forged.is_forged(&text) {
                self.delete_seen = self.delete_seen.saturating_add(1);
                if self.delete.len() < MAX_DELETIONS_KEPT {
                    self.delete.push(self.auth_results_seen);
                }
            }
        }
        let is_from = header_name_is(name, "from");
        if is_from {
            self.from_fields = self.from_fields.saturating_add(1);
            if self.from_fields == 1 {
                // One field is at most one milter packet, so this is bounded
                // whatever the cap.
                push_field(&mut self.first_from, name, value, leading_space);
            }
        }
        if header_name_is(name, "dkim-signature") {
            self.dkim_fields = self.dkim_fields.saturating_add(1);
        }
        self.size = self.size.saturating_add(name.len() + value.len() + 4);
        if !self.headers_complete || self.size > self.cap {
            if self.headers_complete {
                self.headers_complete = false;
                self.body_complete = false;
                self.data = Vec::new();
                self.from_values.truncate(1);
            }
            if is_from && self.from_values.is_empty() {
                self.from_values.push(value.to_vec());
            }
            return;
        }
        if is_from {
            self.from_values.push(value.to_vec());
        }
        if self.body_start.is_none() {
            push_field(&mut self.data, name, value, leading_space);
        }
    }

    /// Adds a body chunk (CRLF line ends, as the milter protocol sends it).
    pub(crate) fn add_body(&mut self, chunk: &[u8]) {
        self.size = self.size.saturating_add(chunk.len());
        if !self.body_complete {
            return;
        }
        let body_start = match self.body_start {
            Some(start) => start,
            None => {
                self.data.extend_from_slice(b"\r\n");
                self.body_start = Some(self.data.len());
                self.data.len()
            }
        };
        if self.size > self.cap {
            self.body_complete = false;
            self.data.truncate(body_start);
            self.data.shrink_to_fit();
            return;
        }
        push_crlf(&mut self.data, chunk);
    }

    /// True when the message went over the cap: the body (and, when
    /// `headers_complete` is false, part of the header) was not kept.
    pub(crate) fn is_truncated(&self) -> bool {
        !self.body_complete
    }

    /// True when every header field was kept.
    pub(crate) fn headers_complete(&self) -> bool {
        self.headers_complete
    }

    /// DKIM-Signature fields received, kept or not.
    pub(crate) fn dkim_fields(&self) -> usize {
        self.dkim_fields
    }

    /// Bytes received.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The raw values of the From fields kept.
    pub(crate) fn author_fields(&self) -> Vec<&[u8]> {
        self.from_values.iter().map(Vec::as_slice).collect()
    }

    /// How many Authentication-Results fields are to be deleted.
    pub(crate) fn deletions_seen(&self) -> usize {
        self.delete_seen
    }

    /// The indices to delete, highest first: deleting the last one first
    /// leaves the indices of the others unchanged (the MTA renumbers after
    /// each deletion; forward order deletes the wrong fields).
    pub(crate) fn deletions(&self) -> Vec<i32> {
        let mut delete = self.delete.clone();
        delete.sort_unstable_by(|a, b| b.cmp(a));
        delete
    }

    /// The message as the verifier reads it: the header fields as
    /// received, an empty line and the body kept, all in CRLF.
    ///
    /// When the header section itself went over the cap, only what a
    /// header-only verdict needs: the first From field, twice when more
    /// than one came (so the verifier still sees a repeated From, RFC 5322
    /// §3.6, and gives `multiple-from`), and no body.
    pub(crate) fn raw(&self) -> Cow<'_, [u8]> {
        if !self.headers_complete {
            let mut raw = Vec::with_capacity(2 * self.first_from.len() + 2);
            raw.extend_from_slice(&self.first_from);
            if self.from_fields > 1 {
                raw.extend_from_slice(&self.first_from);
            }
            raw.extend_from_slice(b"\r\n");
            return Cow::Owned(raw);
        }
        if self.body_start.is_some() {
            return Cow::Borrowed(&self.data);
        }
        // No body chunk came: the header and the empty line.
        let mut raw = Vec::with_capacity(self.data.len() + 2);
        raw.extend_from_slice(&self.data);
        raw.extend_from_slice(b"\r\n");
        Cow::Owned(raw)
    }
}

/// Appends `name: value` and CRLF; without the leading-space option the MTA
/// removed the space after the colon, which is put back.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], leading_space: bool) {
    out.extend_from_slice(name);
    out.push(b':');
    if !leading_space {
        out.push(b' ');
    }
    push_crlf(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `bytes` with every bare LF turned into CRLF: the one place that
/// normalises line ends of what the MTA sends. Copies whole runs between
/// line ends (the milter protocol already sends CRLF, so usually one copy).
fn push_crlf(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len());
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        // At the start of `bytes` the byte before is the last one of `out`
        // (a CR at the end of the previous chunk).
        let previous = match i.checked_sub(1) {
            Some(j) => bytes.get(j).copied(),
            None => out.last().copied(),
        };
        if previous != Some(b'\r') {
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            out.push(b'\r');
            start = i;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forged(authserv_id: &str, remove_all: bool) -> Forged<'_> {
        Forged {
            authserv_id,
            aliases: &[],
            remove_all,
        }
    }

    #[test]
    fn aliases_are_policed_like_our_own_id() {
        let aliases = ["mx2.test".to_string(), "mx3.test".to_string()];
        let policy = Forged {
            authserv_id: "mx1.test",
            aliases: &aliases,
            remove_all: false,
        };
        for forged_value in [
            " mx1.test; dmarc=pass",
            " MX2.test; dmarc=pass",
            " mx3.test. ; spf=pass",
            " mx2.test;;; broken (((",
        ] {
            assert!(policy.is_forged(forged_value), "{forged_value}");
        }
        for kept in [
            " mx4.test; dmarc=pass",
            " other.example; dkim=pass header.d=mx2.test",
        ] {
            assert!(!policy.is_forged(kept), "{kept}");
        }
    }

    #[test]
    fn reassembles_headers_in_crlf() {
        let mut m = MessageBuffer::new(1 << 20);
        m.add_header(b"From", b" a@example.com", true, &forged("mx", false));
        m.add_header(b"Subject", b"folded\n\tline", false, &forged("mx", false));
        m.add_header(b"X-Empty", b"", true, &forged("mx", false));
        m.add_body(b"Hi\r\nthere\n");
        assert_eq!(
            &*m.raw(),
            b"From: a@example.com\r\nSubject: folded\r\n\tline\r\nX-Empty:\r\n\r\nHi\r\nthere\r\n"
        );
        assert_eq!(m.author_fields(), vec![b" a@example.com".as_slice()]);
    }

    #[test]
    fn bare_line_feeds_become_crlf_across_chunks() {
        let mut m = MessageBuffer::new(1 << 20);
        m.add_header(b"Subject", b"x", false, &forged("mx", false));
        for chunk in [&b"a\nb\r"[..], b"\nc\n\n", b"\r", b"\n", b"\n"] {
            m.add_body(chunk);
        }
        assert_eq!(&*m.raw(), b"Subject: x\r\n\r\na\r\nb\r\nc\r\n\r\n\r\n\r\n");
        let mut empty = MessageBuffer::new(1 << 20);
        empty.add_header(b"From", b" a@example.com", true, &forged("mx", false));
        assert_eq!(&*empty.raw(), b"From: a@example.com\r\n\r\n");
    }

    #[test]
    fn forged_auth_results_are_found_and_deleted_last_first() {
        let mut m = MessageBuffer::new(1 << 20);
        let headers: &[(&str, &str)] = &[
            ("Authentication-Results", " other.example; spf=pass"),
            ("authentication-results", " MX.test; dmarc=pass"),
            ("Received", " from x"),
            ("Authentication-Results", " mx.test ;;; broken ((("),
            (
                "AUTHENTICATION-RESULTS",
                " other.example; dkim=pass header.d=mx.test",
            ),
            ("Authentication-Results", " mx.test; none"),
        ];
        for (name, value) in headers {
            m.add_header(
                name.as_bytes(),
                value.as_bytes(),
                true,
                &forged("mx.test", false),
            );
        }
        assert_eq!(m.deletions(), vec![5, 3, 2]);

        let mut all = MessageBuffer::new(1 << 20);
        for (name, value) in headers {
            all.add_header(
                name.as_bytes(),
                value.as_bytes(),
                true,
                &forged("mx.test", true),
            );
        }
        assert_eq!(all.deletions(), vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn stops_buffering_over_the_cap_but_keeps_policing() {
        let mut m = MessageBuffer::new(100);
        m.add_header(b"From", b" a@example.com", true, &forged("mx", false));
        m.add_body(&[b'x'; 60]);
        assert!(!m.is_truncated());
        m.add_body(&[b'x'; 60]);
        assert!(m.is_truncated() && m.headers_complete());
        assert_eq!(&*m.raw(), b"From: a@example.com\r\n\r\n");
        m.add_body(&[b'x'; 1000]);
        assert_eq!(m.size(), 18 + 4 + 1120);

        let mut h = MessageBuffer::new(50);
        h.add_header(b"X-Big", &[b'y'; 60], true, &forged("mx", false));
        h.add_header(
            b"Authentication-Results",
            b" mx; dmarc=pass",
            true,
            &forged("mx", false),
        );
        assert!(!h.headers_complete() && h.is_truncated());
        assert_eq!(h.deletions(), vec![1]);
        assert_eq!(&*h.raw(), b"\r\n");
    }

    /// The From field survives a header section over the cap (the
    /// header-only verdict needs it), and a second From is still seen.
    #[test]
    fn keeps_the_first_from_over_the_cap() {
        let mut m = MessageBuffer::new(100);
        m.add_header(b"From", b"ceo@example.com", false, &forged("mx", false));
        m.add_header(b"X-Pad", &[b'p'; 200], true, &forged("mx", false));
        m.add_header(
            b"DKIM-Signature",
            b" v=1; d=example.com",
            true,
            &forged("mx", false),
        );
        assert!(!m.headers_complete());
        assert_eq!(&*m.raw(), b"From: ceo@example.com\r\n\r\n");
        assert_eq!(m.author_fields(), vec![b"ceo@example.com".as_slice()]);
        assert_eq!(m.dkim_fields(), 1);
        m.add_header(b"From", b" ceo@other.example", true, &forged("mx", false));
        assert_eq!(
            &*m.raw(),
            b"From: ceo@example.com\r\nFrom: ceo@example.com\r\n\r\n"
        );

        let mut late = MessageBuffer::new(100);
        late.add_header(b"X-Pad", &[b'p'; 200], true, &forged("mx", false));
        late.add_header(b"From", b" ceo@example.com", true, &forged("mx", false));
        assert_eq!(&*late.raw(), b"From: ceo@example.com\r\n\r\n");
        assert_eq!(late.author_fields(), vec![b" ceo@example.com".as_slice()]);
    }
}
