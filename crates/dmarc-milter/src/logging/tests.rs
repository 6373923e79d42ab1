use super::*;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines `f` logs through a [`LogLayer`] in `format` (no time stamps,
/// optionally journald priorities), filtered as `log_level` and
/// `rust_log` say.
fn lines(
    format: LogFormat,
    journald: bool,
    level: LogLevel,
    rust_log: Option<&str>,
    f: impl FnOnce(),
) -> Vec<String> {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::registry()
        .with(filter(level, rust_log).unwrap())
        .with(
            LogLayer::new(format, move || writer.clone())
                .timestamps(false)
                .journald(journald),
        );
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_string).collect()
}

fn text(f: impl FnOnce()) -> Vec<String> {
    lines(LogFormat::Text, false, LogLevel::Debug, None, f)
}

/// The verdict line is logfmt: the message, the span's queue id, then
/// the fields, each value bare or quoted as needed.
#[test]
fn the_verdict_line_is_logfmt_with_the_queue_id_of_its_span() {
    let got = text(|| {
        let span = tracing::error_span!("message", queue_id = %"4XyZ1abc");
        let _entered = span.enter();
        tracing::info!(
            client = %"192.0.2.10",
            from = %"example.com",
            dkim = %"pass/example.com",
            dmarc = "pass",
            disposition = "accept",
            "verdict"
        );
        tracing::info!(
            client = %"192.0.2.11",
            skipped = "authenticated submission",
            disposition = "accept",
            "not checked"
        );
    });
    assert_eq!(
        got,
        [
            " INFO verdict queue_id=4XyZ1abc client=192.0.2.10 from=example.com dkim=pass/example.com dmarc=pass disposition=accept",
            " INFO not checked queue_id=4XyZ1abc client=192.0.2.11 skipped=\"authenticated submission\" disposition=accept",
        ]
    );
}

/// Whatever a caller passes, a value cannot forge a field, end the line
/// or reach the terminal; numbers, booleans and absent options are
/// written as such; the message keeps its text, controls escaped.
#[test]
fn every_value_is_quoted_when_needed_whatever_the_caller_passed() {
    let hostile = "x disposition=accept\n\u{1b}[31m";
    let got = text(|| {
        let span = tracing::error_span!("message", queue_id = hostile);
        let _entered = span.enter();
        tracing::warn!(
            from = %hostile,
            debug = ?hostile,
            size = 12u64,
            delta = -3i64,
            ok = true,
            absent = None::<&str>,
            present = Some("b\u{fc}cher.example"),
            "header bomb from {hostile}"
        );
    });
    assert_eq!(
        got,
        [
            " WARN header bomb from x disposition=accept\\u{a}\\u{1b}[31m queue_id=\"x disposition=accept\\u{a}\\u{1b}[31m\" from=\"x disposition=accept\\u{a}\\u{1b}[31m\" debug=\"\\\"x disposition=accept\\\\n\\\\u{1b}[31m\\\"\" size=12 delta=-3 ok=true present=\"b\\u{fc}cher.example\"",
        ]
    );
}

/// JSON lines: one object per line, the span's fields and the event's at
/// the top level, values unquoted by us (JSON escapes them).
#[test]
fn json_lines_carry_the_span_fields_at_the_top_level() {
    let got = lines(LogFormat::Json, false, LogLevel::Info, None, || {
        let span = tracing::error_span!("message", queue_id = %"4XyZ1abc");
        let _entered = span.enter();
        tracing::info!(from = %"a b.example", size = 7u64, "verdict");
    });
    assert_eq!(got.len(), 1);
    let line: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "level": "INFO",
            "target": "dmarc_milter::logging::tests",
            "message": "verdict",
            "queue_id": "4XyZ1abc",
            "from": "a b.example",
            "size": 7,
        })
    );
}

/// Under journald each line starts with its syslog priority.
#[test]
fn journald_lines_start_with_their_priority() {
    let got = lines(LogFormat::Text, true, LogLevel::Debug, None, || {
        tracing::error!("e");
        tracing::warn!("w");
        tracing::info!("i");
        tracing::debug!("d");
    });
    assert_eq!(
        got,
        ["<3>ERROR e", "<4> WARN w", "<6> INFO i", "<7>DEBUG d"]
    );
}

/// `debug` is ours: the resolver's debug lines stay out unless a
/// `RUST_LOG` directive names its target; other targets are named.
#[test]
fn the_resolvers_debug_lines_stay_out_unless_asked_for() {
    let log = || {
        tracing::debug!(target: "hickory_proto::udp", "sending query");
        tracing::warn!(target: "hickory_resolver::name_server", "server unreachable");
        tracing::debug!(target: "dmarc_verifier::trail", "dns: TXT _dmarc.example.com");
    };
    assert_eq!(
        lines(LogFormat::Text, false, LogLevel::Debug, None, log),
        [
            " WARN hickory_resolver::name_server: server unreachable",
            "DEBUG dns: TXT _dmarc.example.com",
        ]
    );
    assert_eq!(
        lines(LogFormat::Text, false, LogLevel::Info, Some("debug"), log),
        [
            " WARN hickory_resolver::name_server: server unreachable",
            "DEBUG dns: TXT _dmarc.example.com",
        ]
    );
    assert_eq!(
        lines(
            LogFormat::Text,
            false,
            LogLevel::Info,
            Some("debug,hickory_proto=debug"),
            log
        ),
        [
            "DEBUG hickory_proto::udp: sending query",
            " WARN hickory_resolver::name_server: server unreachable",
            "DEBUG dns: TXT _dmarc.example.com",
        ]
    );
    assert!(filter(LogLevel::Info, Some("dmarc=[")).is_err());
}
