//! The pieces of a report mail shared by aggregate and failure reports:
//! dates, header-safe values, base64, gzip, and a stable hash.

use base64::Engine as _;
use std::fmt::Write as _;
use std::io::Write as _;

/// FNV-1a, 64 bits: a stable (not keyed, not cryptographic) hash for
/// identifiers that must be the same on every run and every host.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `text` reduced to RFC 5322 `dot-atom-text` that is also a plausible
/// domain name: lower case, letters, digits, `-` and `_`, labels joined
/// by single dots; anything else becomes `-`. Empty input gives
/// `invalid`.
pub(crate) fn dot_atom(text: &str) -> String {
    let labels: Vec<String> = text
        .split('.')
        .filter(|label| !label.is_empty())
        .map(|label| {
            label
                .chars()
                .map(|c| match c.to_ascii_lowercase() {
                    c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
                    _ => '-',
                })
                .collect()
        })
        .collect();
    if labels.is_empty() {
        "invalid".to_string()
    } else {
        labels.join(".")
    }
}

/// A value safe inside one header field: every control character
/// (CR and LF included) becomes a space and every non-ASCII character
/// `?`, so the value can neither end the field nor add one.
pub(crate) fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if !c.is_ascii() => '?',
            c => c,
        })
        .collect()
}

/// Text for a body line: control characters become spaces.
pub(crate) fn body_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Appends `Name: value` and CRLF. `value` must already be safe (its
/// only line breaks CRLF followed by a space, as folding).
pub(crate) fn header(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "{name}: {value}\r\n");
}

/// Appends a `text/plain` body part (headers, blank line, text): 7bit
/// when `text` is ASCII, base64 UTF-8 otherwise. `text` uses CRLF.
pub(crate) fn text_part(out: &mut String, text: &str) {
    if text.is_ascii() {
        header(out, "Content-Type", "text/plain; charset=us-ascii");
        header(out, "Content-Transfer-Encoding", "7bit");
        out.push_str("\r\n");
        out.push_str(text);
    } else {
        header(out, "Content-Type", "text/plain; charset=utf-8");
        header(out, "Content-Transfer-Encoding", "base64");
        out.push_str("\r\n");
        out.push_str(&base64_lines(text.as_bytes()));
    }
}

/// Base64 (RFC 2045 §6.8) in lines of 76 characters, each ended with
/// CRLF.
pub(crate) fn base64_lines(data: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    // Base64 is ASCII, so byte chunks are whole characters.
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// A gzip encoder into memory, zero modification time (so the same data
/// always gives the same bytes).
pub(crate) fn gzip_encoder() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default())
}

/// Writes `data` into `encoder`.
pub(crate) fn gzip_write(encoder: &mut flate2::write::GzEncoder<Vec<u8>>, data: &[u8]) {
    // Writing into a Vec cannot fail: the only errors of these calls are
    // those of the underlying writer.
    #[allow(clippy::expect_used)]
    encoder
        .write_all(data)
        .expect("invariant: writing to a Vec cannot fail");
}

/// The compressed bytes.
pub(crate) fn gzip_finish(encoder: flate2::write::GzEncoder<Vec<u8>>) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    encoder
        .finish()
        .expect("invariant: writing to a Vec cannot fail")
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn split(ts: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (0 = Sunday).
    let weekday = (days + 4).rem_euclid(7);
    (
        year,
        month,
        day,
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60,
        weekday,
    )
}

/// An RFC 5322 §3.3 date-time in UTC: `Tue, 19 Jul 2022 05:57:48 +0000`.
pub(crate) fn rfc5322_date(ts: i64) -> String {
    let (year, month, day, hour, minute, second, weekday) = split(ts);
    let weekday = match weekday {
        0 => "Sun",
        1 => "Mon",
        2 => "Tue",
        3 => "Wed",
        4 => "Thu",
        5 => "Fri",
        _ => "Sat",
    };
    let month = match month {
        1 => "Jan",
        2 => "Feb",
        3 => "Mar",
        4 => "Apr",
        5 => "May",
        6 => "Jun",
        7 => "Jul",
        8 => "Aug",
        9 => "Sep",
        10 => "Oct",
        11 => "Nov",
        _ => "Dec",
    };
    format!("{weekday}, {day} {month} {year:04} {hour:02}:{minute:02}:{second:02} +0000")
}

/// `2024-03-27 00:00:00` (UTC), for text meant for people.
pub(crate) fn utc_text(ts: i64) -> String {
    let (year, month, day, hour, minute, second, _) = split(ts);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322_utc() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_658_210_268),
            "Tue, 19 Jul 2022 05:57:48 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(utc_text(302_918_399), "1979-08-07 23:59:59");
    }

    #[test]
    fn dot_atom_keeps_domains_and_defuses_the_rest() {
        assert_eq!(dot_atom("Example.COM."), "example.com");
        assert_eq!(dot_atom("a<b>\r\n.c d..e"), "a-b---.c-d.e");
        assert_eq!(dot_atom(".."), "invalid");
    }

    #[test]
    fn header_text_cannot_break_a_field() {
        assert_eq!(header_text("a@b\r\nBcc: x@y"), "a@b  Bcc: x@y");
        assert_eq!(header_text("caf\u{e9}"), "caf?");
    }

    #[test]
    fn base64_lines_are_76_characters() {
        let lines = base64_lines(&[0u8; 100]);
        let lines: Vec<&str> = lines.split("\r\n").collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines.last(), Some(&""));
    }
}
