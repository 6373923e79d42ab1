//! One message as the MTA sends it: header fields one by one, then body
//! chunks. Buffers up to a size cap, reassembles the raw message in CRLF
//! form for the verifier, and notes which incoming Authentication-Results
//! fields must be deleted (RFC 8601 §5).

use dmarc_verifier::auth_results::claims_authserv_id;

/// The header field we write and police.
pub const AUTH_RESULTS: &str = "Authentication-Results";

/// A message being received.
#[derive(Debug)]
pub(crate) struct MessageBuffer {
    cap: usize,
    /// Bytes received so far (header fields and body), buffered or not.
    size: usize,
    header: Vec<u8>,
    body: Vec<u8>,
    from_values: Vec<Vec<u8>>,
    headers_complete: bool,
    body_complete: bool,
    /// Authentication-Results fields seen so far.
    auth_results_seen: i32,
    /// 1-based indices (among Authentication-Results fields) to delete.
    delete: Vec<i32>,
}

impl MessageBuffer {
    /// An empty message; at most `cap` bytes are buffered.
    pub(crate) fn new(cap: usize) -> MessageBuffer {
        MessageBuffer {
            cap,
            size: 0,
            header: Vec::new(),
            body: Vec::new(),
            from_values: Vec::new(),
            headers_complete: true,
            body_complete: true,
            auth_results_seen: 0,
            delete: Vec::new(),
        }
    }

    /// Adds one header field. `value` is exactly what the MTA sent: with
    /// the leading-space option (SMFIP_HDR_LEADSPC) it keeps the white
    /// space after the colon, without it the MTA removed one space, which
    /// is put back. Continuation lines are separated by LF or CRLF.
    ///
    /// An Authentication-Results field is marked for deletion when
    /// `remove_all` is set or when it claims `authserv_id` (even one that
    /// does not parse: RFC 8601 §5).
    pub(crate) fn add_header(
        &mut self,
        name: &[u8],
        value: &[u8],
        leading_space: bool,
        authserv_id: &str,
        remove_all: bool,
    ) {
        if name.eq_ignore_ascii_case(AUTH_RESULTS.as_bytes()) {
            self.auth_results_seen = self.auth_results_seen.saturating_add(1);
            let text = String::from_utf8_lossy(value);
            if remove_all || claims_authserv_id(&text, authserv_id) {
                self.delete.push(self.auth_results_seen);
            }
        }
        self.size = self.size.saturating_add(name.len() + value.len() + 4);
        if !self.headers_complete || self.size > self.cap {
            if self.headers_complete {
                self.headers_complete = false;
                self.body_complete = false;
                self.header = Vec::new();
                self.from_values = Vec::new();
            }
            return;
        }
        if name.eq_ignore_ascii_case(b"from") {
            self.from_values.push(value.to_vec());
        }
        self.header.extend_from_slice(name);
        self.header.push(b':');
        if !leading_space {
            self.header.push(b' ');
        }
        push_crlf(&mut self.header, value);
        self.header.extend_from_slice(b"\r\n");
    }

    /// Adds a body chunk (CRLF line ends, as the milter protocol sends it).
    pub(crate) fn add_body(&mut self, chunk: &[u8]) {
        self.size = self.size.saturating_add(chunk.len());
        if !self.body_complete {
            return;
        }
        if self.size > self.cap {
            self.body_complete = false;
            self.body = Vec::new();
            return;
        }
        push_crlf(&mut self.body, chunk);
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

    /// Bytes received.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The raw values of the From fields kept.
    pub(crate) fn author_fields(&self) -> Vec<&[u8]> {
        self.from_values.iter().map(Vec::as_slice).collect()
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
    pub(crate) fn raw(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.header.len() + 2 + self.body.len());
        raw.extend_from_slice(&self.header);
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.body);
        raw
    }
}

/// Appends `bytes` with every bare LF turned into CRLF: the one place that
/// normalises line ends of what the MTA sends.
fn push_crlf(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut previous = out.last().copied().unwrap_or(0);
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_headers_in_crlf() {
        let mut m = MessageBuffer::new(1 << 20);
        m.add_header(b"From", b" a@example.com", true, "mx", false);
        m.add_header(b"Subject", b"folded\n\tline", false, "mx", false);
        m.add_header(b"X-Empty", b"", true, "mx", false);
        m.add_body(b"Hi\r\nthere\n");
        assert_eq!(
            m.raw(),
            b"From: a@example.com\r\nSubject: folded\r\n\tline\r\nX-Empty:\r\n\r\nHi\r\nthere\r\n"
        );
        assert_eq!(m.author_fields(), vec![b" a@example.com".as_slice()]);
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
            m.add_header(name.as_bytes(), value.as_bytes(), true, "mx.test", false);
        }
        assert_eq!(m.deletions(), vec![5, 3, 2]);

        let mut all = MessageBuffer::new(1 << 20);
        for (name, value) in headers {
            all.add_header(name.as_bytes(), value.as_bytes(), true, "mx.test", true);
        }
        assert_eq!(all.deletions(), vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn stops_buffering_over_the_cap_but_keeps_policing() {
        let mut m = MessageBuffer::new(100);
        m.add_header(b"From", b" a@example.com", true, "mx", false);
        m.add_body(&[b'x'; 60]);
        assert!(!m.is_truncated());
        m.add_body(&[b'x'; 60]);
        assert!(m.is_truncated() && m.headers_complete());
        assert_eq!(m.raw(), b"From: a@example.com\r\n\r\n");
        m.add_body(&[b'x'; 1000]);
        assert_eq!(m.size(), 18 + 4 + 1120);

        let mut h = MessageBuffer::new(50);
        h.add_header(b"X-Big", &[b'y'; 60], true, "mx", false);
        h.add_header(
            b"Authentication-Results",
            b" mx; dmarc=pass",
            true,
            "mx",
            false,
        );
        assert!(!h.headers_complete() && h.is_truncated());
        assert_eq!(h.deletions(), vec![1]);
        assert_eq!(h.raw(), b"\r\n");
    }
}
