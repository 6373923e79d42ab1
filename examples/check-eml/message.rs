//! Reading the message and making sure it is one: a header section of
//! `Name: value` fields (RFC 5322 §2.2), then optionally a body.

use dmarc_verifier::message::header_name_is;
use std::{
    io::Read,
    path::{Path, PathBuf},
};

/// A message read from a file or standard input.
#[derive(Debug)]
pub struct Message {
    /// How to name the input in messages: the path, or `<stdin>`.
    pub name: String,
    /// The bytes given to the verifier (an mbox `From ` line removed).
    pub raw: Vec<u8>,
    /// The header fields, in order, with their values unfolded.
    pub headers: Vec<Header>,
    /// Things worth telling the reader about the input.
    pub notes: Vec<String>,
}

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as written.
    pub name: String,
    /// The value after the colon, unfolded (RFC 5322 §2.2.3) and trimmed;
    /// bytes that are not UTF-8 are replaced.
    pub value: String,
}

impl Message {
    /// The values of the fields named `name` (case-insensitive, as the
    /// library reads names: `dmarc_verifier::message::header_name_is`), top
    /// first.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| header_name_is(h.name.as_bytes(), name))
            .map(|h| h.value.as_str())
    }
}

/// Reads `path` (`-`: standard input) and checks that it is a message.
///
/// # Errors
///
/// One line, starting with the input's name, when the input cannot be read,
/// is empty, or has no header section (binary data, text that does not start
/// with a header field, a blank first line).
pub fn read(path: &Path) -> Result<Message, String> {
    let (name, bytes) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        (PathBuf::from(path).display().to_string(), bytes)
    };
    parse(name, bytes)
}

/// Checks the bytes of a message and splits its header section.
fn parse(name: String, mut raw: Vec<u8>) -> Result<Message, String> {
    let mut notes = Vec::new();
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{name}: not a mail message: the input is empty{}",
            if raw.is_empty() {
                ""
            } else {
                " (only white space)"
            }
        ));
    }
    // A message saved from an mbox file starts with the "From " postmark
    // line, which is not a header field (RFC 4155). "From :" is a header
    // field in obsolete syntax (RFC 5322 §4.5), not a postmark.
    if is_mbox_postmark(&raw) {
        let end = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| i + 1);
        raw.drain(..end);
        notes.push("skipped the mbox \"From \" line at the top of the file".to_string());
    }
    let headers = split_headers(&name, &raw, &mut notes)?;
    Ok(Message {
        name,
        raw,
        headers,
        notes,
    })
}

/// True when `raw` starts with an mbox postmark line: `From `, then
/// anything but white space and a colon (which would make it a From field).
fn is_mbox_postmark(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"From ") else {
        return false;
    };
    let after_blanks = rest.iter().find(|&&b| b != b' ' && b != b'\t');
    after_blanks != Some(&b':')
}

/// The header fields of `raw`, which must start with one.
fn split_headers(name: &str, raw: &[u8], notes: &mut Vec<String>) -> Result<Vec<Header>, String> {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let lines = raw
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    for (index, line) in lines.enumerate() {
        let number = index + 1;
        if line.is_empty() {
            if headers.is_empty() {
                return Err(format!(
                    "{name}: not a mail message: no header section (line 1 is blank)"
                ));
            }
            break;
        }
        if let Some(&byte) = line
            .iter()
            .find(|&&b| b.is_ascii_control() && b != b'\t' && b != b'\r')
        {
            return Err(format!(
                "{name}: not a mail message: binary data in the header section (byte 0x{byte:02x} on line {number})"
            ));
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            match headers.last_mut() {
                // RFC 5322 §2.2.3: unfolding removes the line break only.
                Some((_, value)) => value.extend_from_slice(line),
                None => {
                    return Err(format!(
                        "{name}: not a mail message: no header section (line 1 starts with white space)"
                    ))
                }
            }
            continue;
        }
        match field_name(line) {
            Some((field, value)) => headers.push((field, value.to_vec())),
            None if headers.is_empty() => {
                return Err(format!(
                    "{name}: not a mail message: no header section (line 1 is not a \"Name: value\" header field)"
                ))
            }
            None => {
                notes.push(format!(
                    "line {number} of the header section is not a header field; a verifier may stop reading headers there"
                ));
            }
        }
    }
    Ok(headers
        .into_iter()
        .map(|(name, value)| Header {
            name,
            value: String::from_utf8_lossy(&value).trim().to_string(),
        })
        .collect())
}

/// Splits `Name: value`; the name is printable US-ASCII without a colon
/// (RFC 5322 §2.2; white space before the colon is tolerated, RFC 5322 §4.5).
fn field_name(line: &[u8]) -> Option<(String, &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, rest) = line.split_at(colon);
    let name = name.trim_ascii_end();
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    let value = rest.get(1..).unwrap_or_default();
    Some((String::from_utf8_lossy(name).into_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8]) -> Result<Message, String> {
        parse("m.eml".to_string(), raw.to_vec())
    }

    #[test]
    fn headers_are_split_and_unfolded() {
        let message = check(
            b"From ceo@example.com Mon Jun 10 04:13:23 2024\n\
              Received: from a (b [192.0.2.1])\r\n\tby mx; date\r\n\
              From: a@example.com\r\n\r\nBody: not a header\r\n",
        )
        .unwrap();
        assert_eq!(message.raw.first(), Some(&b'R'));
        assert_eq!(message.headers.len(), 2);
        assert_eq!(
            message.headers[0].value,
            "from a (b [192.0.2.1])\tby mx; date"
        );
        assert_eq!(
            message.header_values("FROM").collect::<Vec<_>>(),
            ["a@example.com"]
        );
        assert_eq!(message.notes.len(), 1);
    }

    #[test]
    fn a_from_field_with_space_before_the_colon_is_no_postmark() {
        // RFC 5322 §4.5 obs-optional: "From :" is a From header field.
        for first in [
            "From : ceo@example.com",
            "From \t: ceo@example.com",
            "From  :x@y",
        ] {
            let raw = format!("{first}\r\nFrom: a@example.net\r\n\r\nHi\r\n");
            let message = check(raw.as_bytes()).unwrap();
            assert_eq!(message.raw, raw.as_bytes(), "{first:?}");
            assert_eq!(message.header_values("from").count(), 2, "{first:?}");
            assert!(message.notes.is_empty());
        }
        assert!(is_mbox_postmark(
            b"From MAILER-DAEMON Mon Jun 10 04:13:23 2024\n"
        ));
        assert!(!is_mbox_postmark(b"From: a@example.com\n"));
        assert!(!is_mbox_postmark(b"Subject: From \n"));
    }

    #[test]
    fn non_messages_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "the input is empty"),
            (b"\n \n", "the input is empty (only white space)"),
            (b"\nbody\n", "line 1 is blank"),
            (b"Hello there\n\nworld\n", "line 1 is not"),
            (b"\x7fELF\x02\x01\x01\x00", "byte 0x7f on line 1"),
            (b"Subject: x\nX-A: \x00\x01\n", "byte 0x00 on line 2"),
            (b" folded: x\n", "starts with white space"),
        ];
        for &(raw, expected) in cases {
            let error = check(raw).unwrap_err();
            assert!(error.starts_with("m.eml: "), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }
}
