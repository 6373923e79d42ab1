//! What the daemon writes to its log, and how.
//!
//! - **Formats** (`log_format`): `text`, one logfmt line per event
//!   (`INFO verdict queue_id=4XyZ1abc client=192.0.2.10 from=example.com
//!   ...`), or `json`, one JSON object per line. Each line holds the
//!   message, then the fields of every span the event happened in (the
//!   `queue_id` of the message being processed), then the event's fields.
//! - **Values are quoted here, not by the caller.** Log calls pass values
//!   as they are (a From domain, a DKIM `d=`, an error); in text lines every
//!   value goes through [`Escaped`] (bare when made of letters, digits and
//!   `.-_@+:/=`, otherwise double-quoted with control and non-ASCII
//!   characters as `\u{…}`), in JSON through the JSON string escapes. So no
//!   value from a message or from DNS can end a line, reach the terminal as
//!   an escape sequence or pass for another field, whatever the caller
//!   forgot. The message text itself is written as is, with control and
//!   bidirectional-override characters escaped.
//! - **journald**: when standard error is the journal's stream
//!   (`JOURNAL_STREAM` names it, as systemd sets it), each line starts with
//!   its syslog priority (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug
//!   and trace), which journald reads (`SyslogLevelPrefix=`, on by default)
//!   and strips; lines carry no time stamp (journald adds its own). The
//!   unit's `SyslogFacility=mail` files them beside Postfix's.
//! - **The level**: `log_level`, changed by a reload (SIGHUP) without a
//!   restart, unless `RUST_LOG` is set, which then decides (`RUST_LOG=debug`,
//!   `RUST_LOG=dmarc_verifier::trail=debug,info`). The resolver library's
//!   own lines (targets `hickory_proto`, `hickory_net`, `hickory_resolver`,
//!   ...) stay at `warn` unless a `RUST_LOG` directive names them
//!   (`RUST_LOG=debug,hickory_net=debug`): our `debug` is the decision
//!   trail, not the resolver's internals.
//!
//! The policy of levels is in the crate documentation (`error`: we cannot
//! provide service; `warn`: misconfiguration or a peer breaking the
//! protocol; `info`: one verdict line per message, start, reload, stop;
//! `debug`: the decision trail).

use crate::config::LogLevel;
use dmarc_report::logging::Escaped;
use std::{
    fmt::{self, Write as _},
    io::Write as _,
    sync::OnceLock,
};
use tracing::{
    field::{Field, Visit},
    span, Event, Level, Subscriber,
};
use tracing_subscriber::{
    filter::{Directive, EnvFilter},
    fmt::{
        format::Writer,
        time::{FormatTime, SystemTime},
        MakeWriter,
    },
    layer::{Context, Layer},
    registry::LookupSpan,
    reload,
};

#[cfg(test)]
mod tests;

/// The format of log lines (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogFormat {
    /// logfmt: `LEVEL message key=value ...`, values quoted when needed.
    #[default]
    Text,
    /// One JSON object per line: `timestamp` (unless under journald),
    /// `level`, `target`, `message`, then every field.
    Json,
}

impl LogFormat {
    /// `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The target prefix of the resolver library's crates (`hickory_proto`,
/// `hickory_net`, `hickory_resolver`, ...: a directive's target matches
/// every target it starts), kept at `warn` unless `RUST_LOG` names it.
const RESOLVER_TARGET: &str = "hickory";

/// The level filter for `log_level`, or for `rust_log` (the `RUST_LOG`
/// directives) when given; the resolver's targets are capped at `warn`
/// unless `rust_log` names one of them.
///
/// # Errors
///
/// The parse error of `rust_log` when it is not a valid filter.
pub fn filter(level: LogLevel, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    let directives = rust_log.unwrap_or(level.as_str());
    let mut filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| e.to_string())?;
    if !directives.contains(RESOLVER_TARGET) {
        if let Ok(directive) = format!("{RESOLVER_TARGET}=warn").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    Ok(filter)
}

/// The level filter of the process, once [`init`] has run.
struct Installed {
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// `RUST_LOG` decides the filter: `log_level` is not applied.
    rust_log: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Sets up the process's logging: to standard error, in `format`, at
/// `level` unless `RUST_LOG` is set (see the module documentation). A
/// `RUST_LOG` that does not parse is reported and `level` is used. Does
/// nothing when a subscriber is already installed.
pub fn init(level: LogLevel, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let (filter_result, rust_log_error) = match rust_log.as_deref().map(|r| filter(level, Some(r)))
    {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (fallback_filter(level), Some(e)),
        None => (fallback_filter(level), None),
    };
    let (reload_layer, handle) = reload::Layer::new(filter_result);
    let journald = journald_stream();
    let layer = LogLayer::new(format, std::io::stderr)
        .journald(journald)
        .timestamps(!journald);
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    // try_init also forwards the `log` records of dependencies (the
    // PostgreSQL client) to these lines.
    let installed = tracing_subscriber::registry()
        .with(reload_layer)
        .with(layer)
        .try_init();
    if installed.is_err() {
        return;
    }
    let _ = INSTALLED.set(Installed {
        handle,
        rust_log: rust_log.is_some() && rust_log_error.is_none(),
    });
    if let Some(e) = rust_log_error {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter: using log_level");
    }
}

/// `level` alone (it always parses).
fn fallback_filter(level: LogLevel) -> EnvFilter {
    filter(level, None).unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

/// Applies a new `log_level` to the running process (a reload). Returns
/// true when the level changed; false when [`init`] did not run (the milter
/// runs inside another program, such as a test) or `RUST_LOG` decides the
/// level (logged).
pub fn set_level(level: LogLevel) -> bool {
    let Some(installed) = INSTALLED.get() else {
        return false;
    };
    if installed.rust_log {
        tracing::info!(
            log_level = level.as_str(),
            "log_level changed, but RUST_LOG is set and stays in force"
        );
        return false;
    }
    match installed.handle.reload(fallback_filter(level)) {
        Ok(()) => {
            tracing::info!(log_level = level.as_str(), "log level changed");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot change the log level");
            false
        }
    }
}

/// True when standard error is the journal's stream: `JOURNAL_STREAM`
/// (`DEVICE:INODE`, set by systemd) names the file standard error is.
pub fn journald_stream() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = named
        .to_str()
        .and_then(|v| v.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
    else {
        return false;
    };
    use std::os::fd::AsFd as _;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a level (RFC 5424 severity), as journald reads
/// it from a `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One field value, as recorded.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
}

impl Value {
    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(text) => serde_json::Value::from(text.as_str()),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Uint(n) => serde_json::Value::from(*n),
            Value::Float(n) => serde_json::Value::from(*n),
            Value::Bool(b) => serde_json::Value::from(*b),
        }
    }
}

impl fmt::Display for Value {
    /// The logfmt form: numbers and booleans bare, text through
    /// [`Escaped`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(text) => write!(f, "{}", Escaped(text)),
            Value::Int(n) => write!(f, "{n}"),
            Value::Uint(n) => write!(f, "{n}"),
            Value::Float(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The fields of an event or a span, in the order recorded; `message` is
/// kept apart.
#[derive(Debug, Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::Text(text) => text,
                other => other.to_string(),
            });
        } else if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == field.name()) {
            // A span field recorded again (span.record) replaces the value.
            slot.1 = value;
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Text(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Uint(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Text(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` arrives here too, formatted with Display.
        self.push(field, Value::Text(format!("{value:?}")));
    }
}

/// The fields of a span, kept in its extensions.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, Value)>);

/// The layer that formats and writes every event (see the module
/// documentation). Build it with [`LogLayer::new`]; [`init`] installs one
/// on standard error.
#[derive(Debug)]
pub struct LogLayer<W> {
    format: LogFormat,
    writer: W,
    journald: bool,
    timestamps: bool,
}

impl<W> LogLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// Lines in `format` to `writer`, with time stamps, without priority
    /// prefixes.
    pub fn new(format: LogFormat, writer: W) -> LogLayer<W> {
        LogLayer {
            format,
            writer,
            journald: false,
            timestamps: true,
        }
    }

    /// Starts each line with its syslog priority (`<6>`) for journald.
    pub fn journald(mut self, on: bool) -> LogLayer<W> {
        self.journald = on;
        self
    }

    /// Starts each line (after the priority) with the time, RFC 3339 UTC.
    pub fn timestamps(mut self, on: bool) -> LogLayer<W> {
        self.timestamps = on;
        self
    }

    /// One line for `event`, with the fields of the spans it happened in
    /// (outermost first; an event field wins over a span field of the same
    /// name), ending in a newline.
    fn line(
        &self,
        level: Level,
        target: &str,
        event: Fields,
        spans: Vec<(&'static str, Value)>,
    ) -> String {
        let mut fields: Vec<(&'static str, Value)> = spans
            .into_iter()
            .filter(|(key, _)| !event.fields.iter().any(|(k, _)| k == key))
            .collect();
        fields.extend(event.fields);
        let mut line = String::with_capacity(256);
        if self.journald {
            let _ = write!(line, "<{}>", priority(level));
        }
        let mut time = String::new();
        if self.timestamps {
            let _ = SystemTime.format_time(&mut Writer::new(&mut time));
        }
        let message = event.message.unwrap_or_default();
        match self.format {
            LogFormat::Text => {
                if !time.is_empty() {
                    let _ = write!(line, "{time} ");
                }
                let _ = write!(line, "{:>5} ", level.as_str());
                if !is_ours(target) {
                    let _ = write!(line, "{target}: ");
                }
                let _ = write!(line, "{}", Message(&message));
                for (key, value) in &fields {
                    let _ = write!(line, " {key}={value}");
                }
            }
            LogFormat::Json => {
                let mut object = serde_json::Map::new();
                if !time.is_empty() {
                    object.insert("timestamp".into(), time.into());
                }
                object.insert("level".into(), level.as_str().into());
                object.insert("target".into(), target.into());
                object.insert("message".into(), message.into());
                for (key, value) in &fields {
                    object.insert((*key).into(), value.json());
                }
                let _ = write!(line, "{}", serde_json::Value::Object(object));
            }
        }
        line.push('\n');
        line
    }
}

/// True for the targets of this project's crates (their lines do not
/// name the target).
fn is_ours(target: &str) -> bool {
    target.starts_with("dmarc_")
}

/// A message text: as is, but with characters that could end the line,
/// drive a terminal or reorder what is shown (controls, line and paragraph
/// separators, bidirectional overrides) written as `\u{…}`.
struct Message<'a>(&'a str);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            let hidden = c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if hidden {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let mut fields = Fields {
            message: None,
            fields: extensions
                .remove::<SpanFields>()
                .map(|f| f.0)
                .unwrap_or_default(),
        };
        values.record(&mut fields);
        extensions.insert(SpanFields(fields.fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    for (key, value) in &span_fields.0 {
                        if let Some(slot) = spans.iter_mut().find(|(k, _)| k == key) {
                            *slot = (*key, value.clone());
                        } else {
                            spans.push((*key, value.clone()));
                        }
                    }
                }
            }
        }
        let metadata = event.metadata();
        let line = self.line(*metadata.level(), metadata.target(), fields, spans);
        // One write per line, so that lines of concurrent tasks never mix.
        let _ = self
            .writer
            .make_writer_for(metadata)
            .write_all(line.as_bytes());
    }
}
