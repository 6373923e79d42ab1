//! A saved message (`.eml`, `postcat -bh` output, an mbox entry): checked
//! to be a mail message and split into its header fields, so that tools
//! can read the envelope back from the headers the receiving MTA added
//! ([`super::infer`]) and replay the fields to a milter.

use crate::message::header_name_is;
use std::fmt;

/// One header field of a saved message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name as written.
    pub name: String,
    /// The bytes after the colon as written: folding kept (continuation
    /// lines separated by LF, their CR removed), nothing trimmed. This is
    /// what an MTA hands a milter for the field.
    pub raw_value: Vec<u8>,
    /// The value unfolded (RFC 5322 §2.2.3) and trimmed; bytes that are not
    /// UTF-8 are replaced.
    pub value: String,
}

/// A message read from a file: the bytes a verifier is given and the
/// header fields.
#[derive(Debug, Clone)]
pub struct SavedMessage {
    /// The message as given, without an mbox `From ` line at the top.
    pub raw: Vec<u8>,
    /// The header fields, in order.
    pub fields: Vec<HeaderField>,
    /// Things worth telling the reader about the input (an mbox line
    /// skipped, a line in the header section that is not a field).
    pub notes: Vec<String>,
}

/// Why bytes are not a mail message (RFC 5322 §2.1: a message is a header
/// section of fields, then optionally an empty line and a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAMessage {
    /// Nothing, or only white space.
    Empty {
        /// True when there was white space.
        whitespace_only: bool,
    },
    /// The first line is blank: no header section.
    BlankFirstLine,
    /// The first line is not a `Name: value` field.
    FirstLineNotAField,
    /// The first line starts with white space (a continuation of nothing).
    FirstLineFolded,
    /// A control character other than tab and CR in the header section.
    Binary {
        /// The byte.
        byte: u8,
        /// Its 1-based line number.
        line: usize,
    },
}

impl fmt::Display for NotAMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a mail message: ")?;
        match self {
            NotAMessage::Empty {
                whitespace_only: false,
            } => f.write_str("the input is empty"),
            NotAMessage::Empty {
                whitespace_only: true,
            } => f.write_str("the input is empty (only white space)"),
            NotAMessage::BlankFirstLine => f.write_str("no header section (line 1 is blank)"),
            NotAMessage::FirstLineNotAField => {
                f.write_str("no header section (line 1 is not a \"Name: value\" header field)")
            }
            NotAMessage::FirstLineFolded => {
                f.write_str("no header section (line 1 starts with white space)")
            }
            NotAMessage::Binary { byte, line } => write!(
                f,
                "binary data in the header section (byte 0x{byte:02x} on line {line})"
            ),
        }
    }
}

impl std::error::Error for NotAMessage {}

/// True when `raw` starts with an mbox postmark line (RFC 4155): `From `,
/// then anything but white space and a colon. `From :` is a From header
/// field in obsolete syntax (RFC 5322 §4.5), and removing it as a postmark
/// would hide it from the verifier.
fn is_mbox_postmark(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"From ") else {
        return false;
    };
    let after_blanks = rest.iter().find(|&&b| b != b' ' && b != b'\t');
    after_blanks != Some(&b':')
}

impl SavedMessage {
    /// Checks the bytes of a message and splits its header section. An
    /// mbox `From ` postmark line at the top (RFC 4155) is removed (and
    /// noted); a later line of the header section that is not a field ends
    /// nothing but is noted, since a verifier may stop reading there.
    ///
    /// # Errors
    ///
    /// [`NotAMessage`] when the bytes are empty, binary, or do not start
    /// with a header field.
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_verifier::envelope::SavedMessage;
    /// let message = SavedMessage::parse(b"From: a@example.com\r\nSubject: hi\r\n there\r\n\r\nBody\r\n".to_vec()).unwrap();
    /// assert_eq!(message.header_values("subject").collect::<Vec<_>>(), ["hi there"]);
    /// assert_eq!(message.fields[1].raw_value, b" hi\n there");
    /// assert!(SavedMessage::parse(b"\nbody".to_vec()).is_err());
    /// ```
    pub fn parse(mut raw: Vec<u8>) -> Result<SavedMessage, NotAMessage> {
        let mut notes = Vec::new();
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(NotAMessage::Empty {
                whitespace_only: !raw.is_empty(),
            });
        }
        if is_mbox_postmark(&raw) {
            let end = raw
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| i + 1);
            raw.drain(..end);
            notes.push("skipped the mbox \"From \" line at the top of the file".to_string());
        }
        let fields = split_fields(&raw, &mut notes)?;
        Ok(SavedMessage { raw, fields, notes })
    }

    /// The unfolded values of the fields named `name` (case-insensitive, as
    /// [`crate::message::header_name_is`] reads names), top first.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| header_name_is(f.name.as_bytes(), name))
            .map(|f| f.value.as_str())
    }

    /// The body: what follows the empty line ending the header section
    /// (empty when there is none).
    pub fn body(&self) -> &[u8] {
        let raw = self.raw.as_slice();
        let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|i| i + 4);
        let lf = memchr::memmem::find(raw, b"\n\n").map(|i| i + 2);
        let start = match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => raw.len(),
        };
        raw.get(start..).unwrap_or_default()
    }
}

/// The header fields of `raw`, which must start with one.
fn split_fields(raw: &[u8], notes: &mut Vec<String>) -> Result<Vec<HeaderField>, NotAMessage> {
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let lines = raw
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    for (index, line) in lines.enumerate() {
        let number = index + 1;
        if line.is_empty() {
            if fields.is_empty() {
                return Err(NotAMessage::BlankFirstLine);
            }
            break;
        }
        if let Some(&byte) = line
            .iter()
            .find(|&&b| b.is_ascii_control() && b != b'\t' && b != b'\r')
        {
            return Err(NotAMessage::Binary { byte, line: number });
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            match fields.last_mut() {
                // RFC 5322 §2.2.3: unfolding removes the line break only.
                Some((_, value)) => {
                    value.push(b'\n');
                    value.extend_from_slice(line);
                }
                None => return Err(NotAMessage::FirstLineFolded),
            }
            continue;
        }
        match field_name(line) {
            Some((name, value)) => fields.push((name, value.to_vec())),
            None if fields.is_empty() => return Err(NotAMessage::FirstLineNotAField),
            None => notes.push(format!(
                "line {number} of the header section is not a header field; a verifier may stop reading headers there"
            )),
        }
    }
    Ok(fields
        .into_iter()
        .map(|(name, raw_value)| {
            let unfolded: Vec<u8> = raw_value.iter().copied().filter(|&b| b != b'\n').collect();
            HeaderField {
                name,
                value: String::from_utf8_lossy(&unfolded).trim().to_string(),
                raw_value,
            }
        })
        .collect())
}

/// Splits `Name: value`; the name is printable US-ASCII without a colon
/// (RFC 5322 §2.2; white space before the colon is tolerated, RFC 5322
/// §4.5).
fn field_name(line: &[u8]) -> Option<(String, &[u8])> {
    let colon = memchr::memchr(b':', line)?;
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

    #[test]
    fn headers_are_split_and_unfolded() {
        let message = SavedMessage::parse(
            b"From ceo@example.com Mon Jun 10 04:13:23 2024\n\
              Received: from a (b [192.0.2.1])\r\n\tby mx; date\r\n\
              From: a@example.com\r\n\r\nBody: not a header\r\n"
                .to_vec(),
        )
        .unwrap();
        assert_eq!(message.raw.first(), Some(&b'R'));
        assert_eq!(message.fields.len(), 2);
        assert_eq!(
            message.fields[0].value,
            "from a (b [192.0.2.1])\tby mx; date"
        );
        assert_eq!(
            message.fields[0].raw_value,
            b" from a (b [192.0.2.1])\n\tby mx; date"
        );
        assert_eq!(
            message.header_values("FROM").collect::<Vec<_>>(),
            ["a@example.com"]
        );
        assert_eq!(message.notes.len(), 1);
        assert_eq!(message.body(), b"Body: not a header\r\n");
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
            let message = SavedMessage::parse(raw.clone().into_bytes()).unwrap();
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
        let cases: &[(&[u8], NotAMessage, &str)] = &[
            (
                b"",
                NotAMessage::Empty {
                    whitespace_only: false,
                },
                "not a mail message: the input is empty",
            ),
            (
                b"\n \n",
                NotAMessage::Empty {
                    whitespace_only: true,
                },
                "not a mail message: the input is empty (only white space)",
            ),
            (
                b"\nbody\n",
                NotAMessage::BlankFirstLine,
                "not a mail message: no header section (line 1 is blank)",
            ),
            (
                b"Hello there\n\nworld\n",
                NotAMessage::FirstLineNotAField,
                "not a mail message: no header section (line 1 is not a \"Name: value\" header field)",
            ),
            (
                b"\x7fELF\x02\x01\x01\x00",
                NotAMessage::Binary {
                    byte: 0x7f,
                    line: 1,
                },
                "not a mail message: binary data in the header section (byte 0x7f on line 1)",
            ),
            (
                b"Subject: x\nX-A: \x00\x01\n",
                NotAMessage::Binary { byte: 0, line: 2 },
                "not a mail message: binary data in the header section (byte 0x00 on line 2)",
            ),
            (
                b" folded: x\n",
                NotAMessage::FirstLineFolded,
                "not a mail message: no header section (line 1 starts with white space)",
            ),
        ];
        for (raw, expected, text) in cases {
            let error = SavedMessage::parse(raw.to_vec()).unwrap_err();
            assert_eq!(&error, expected);
            assert_eq!(error.to_string(), *text);
        }
    }

    #[test]
    fn a_message_without_body() {
        let message = SavedMessage::parse(b"Subject: x\n".to_vec()).unwrap();
        assert_eq!(message.body(), b"");
        assert_eq!(message.fields[0].raw_value, b" x");
    }
}
