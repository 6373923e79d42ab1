//! Logging of values that come from mail or DNS, and of repeated events.
//!
//! - [`Escaped`]: every value a log line takes from a message (a DKIM
//!   `d=`, a From domain, a queue id) or from DNS (a `rua` address, a
//!   policy domain, a PTR name) is written through it, so that it can
//!   neither reach the terminal as an escape sequence nor pass for another
//!   field of the line (`from=x disposition=accept`). Log calls pass field
//!   values as they are: the daemon's log formatter
//!   (`dmarc_milter::logging`) writes every field value through
//!   [`Escaped`] (and JSON lines through JSON's escapes), so a value cannot
//!   be forgotten; a value written inside a message text goes through
//!   [`Escaped`] at the call.
//! - [`RateLimit`]: a warning that an attacker can repeat at will (a
//!   dropped report, a record over a cap) is logged at most once per
//!   interval, with the number of events since the last line, instead of
//!   once per event.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// A value from outside, made safe for one log field.
///
/// Written bare when it consists only of letters, digits and `.-_@+:/=`
/// (domains, addresses, queue ids: the usual case reads as before);
/// otherwise in double quotes, with `"` and `\` escaped, and every other
/// character outside printable ASCII (controls, DEL, non-ASCII) written as
/// `\u{…}`. An empty value is `""`. At most [`Escaped::MAX_CHARS`]
/// characters are written, then `…`.
///
/// # Examples
///
/// ```
/// use dmarc_report::logging::Escaped;
/// assert_eq!(Escaped("example.com").to_string(), "example.com");
/// assert_eq!(Escaped("x disposition=accept").to_string(), "\"x disposition=accept\"");
/// assert_eq!(Escaped("\u{1b}[31mred").to_string(), "\"\\u{1b}[31mred\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a str);

impl Escaped<'_> {
    /// The longest value written, in characters.
    pub const MAX_CHARS: usize = 256;
}

fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+' | ':' | '/' | '=')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let cut = text.chars().count() > Escaped::MAX_CHARS;
        if !text.is_empty() && !cut && text.chars().all(bare) {
            return f.write_str(text);
        }
        f.write_str("\"")?;
        for c in text.chars().take(Escaped::MAX_CHARS) {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                ' '..='~' => write!(f, "{c}")?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        if cut {
            f.write_str("…")?;
        }
        f.write_str("\"")
    }
}

/// At most one log line per interval for an event that can repeat without
/// limit; the events in between are counted and reported with the next
/// line.
///
/// Lock-free: callers on many threads may share one.
#[derive(Debug)]
pub struct RateLimit {
    interval_ms: u64,
    started: Instant,
    /// Milliseconds after `started` before which no line is logged.
    next: AtomicU64,
    /// Events not logged since the last line.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// One line per `interval` at most.
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            next: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Counts one event. `Some(n)` when this one should be logged, `n`
    /// being the number of events not logged since the previous line
    /// (to be written in it); `None` when it is suppressed.
    pub fn check(&self) -> Option<u64> {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next.load(Ordering::Relaxed);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_outside_cannot_forge_fields_or_reach_the_terminal() {
        let cases = [
            ("mx.example.net", "mx.example.net"),
            ("rua@example.com", "rua@example.com"),
            ("4XyZ1abc", "4XyZ1abc"),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("x\" y=\"z", "\"x\\\" y=\\\"z\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("line\nbreak", "\"line\\u{a}break\""),
            ("\u{1b}]0;title\u{7}", "\"\\u{1b}]0;title\\u{7}\""),
            ("bücher.example", "\"b\\u{fc}cher.example\""),
            ("\u{202e}gro.elpmaxe", "\"\\u{202e}gro.elpmaxe\""),
        ];
        for (value, logged) in cases {
            assert_eq!(Escaped(value).to_string(), logged, "{value:?}");
        }
        let long = "a".repeat(1000);
        let shown = Escaped(&long).to_string();
        assert_eq!(shown.chars().count(), Escaped::MAX_CHARS + 3);
        assert!(shown.ends_with("…\""));
    }

    #[test]
    fn a_rate_limit_logs_once_per_interval_and_counts_the_rest() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.check(), Some(0));
        for _ in 0..1999 {
            assert_eq!(limit.check(), None);
        }
        let zero = RateLimit::new(Duration::ZERO);
        assert_eq!(zero.check(), Some(0));
        assert_eq!(zero.check(), Some(0));
    }
}
