//! The agent's log: `tracing` to stderr, with the XDP program's aya-log
//! records (emitted at debug level in the kernel) forwarded into it. Lines
//! are written by a thread of their own (tracing-appender): a log call
//! never waits for stderr's reader, so logging cannot stall the VRRP thread;
//! should the reader fall far behind, lines are dropped, not waited for.
//!
//! Two formats (`--log-format`): `text`, `key=value` fields after the
//! message with values quoted when they hold spaces, quotes or `=`; and
//! `json`, one object per line. When stderr is the journal's stream
//! (systemd sets JOURNAL_STREAM to its device and inode), every line starts
//! with its syslog priority (`<3>` error … `<7>` debug), which journald
//! takes as the entry's priority, and text lines carry no timestamp of
//! their own. That prefix, rather than tracing-journald's native protocol,
//! keeps one writer (the non-blocking thread) for both cases and needs no
//! socket of its own.

use anyhow::{Context, Result};
use aya::Ebpf;
use aya_log::EbpfLogger;
use std::fmt::{self, Display, Write as _};
use tokio::io::unix::AsyncFd;
use tracing::{Event, Level, Subscriber, field::Field, warn};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{
    EnvFilter,
    field::{RecordFields, Visit},
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Writer},
    },
    registry::LookupSpan,
};

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable: time, level, target, message, key=value fields.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Whether stderr is the journal's stream: JOURNAL_STREAM names the
/// device and inode of the stream systemd connected, which must be
/// stderr's (a child the agent starts with other descriptors inherits the
/// variable, not the stream).
pub fn under_journal() -> bool {
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    want.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

/// The syslog priority journald files a line of `level` under.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An error with its causes, `outer: cause: root`, as a log field's value.
pub fn chain<E: Display + ?Sized>(e: &E) -> Chain<'_, E> {
    Chain(e)
}

/// See [`chain`].
pub struct Chain<'a, E: ?Sized>(&'a E);

impl<E: Display + ?Sized> Display for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// `value` as a logfmt value: bare when it is a plain word, else quoted
/// with `"` and `\` escaped (control characters too).
fn logfmt_value(value: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if plain {
        out.write_str(value)
    } else {
        write!(out, "{value:?}")
    }
}

/// Fields as `message key=value key="two words"`: values written with
/// Display (`%`) or as strings are quoted alike.
struct LogfmtFields;

struct LogfmtVisitor<'a> {
    out: Writer<'a>,
    message: Option<String>,
    fields: String,
    result: fmt::Result,
}

impl LogfmtVisitor<'_> {
    fn field(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
            return;
        }
        let name = field.name().strip_prefix("r#").unwrap_or(field.name());
        let _ = write!(self.fields, " {name}=");
        self.result = self.result.and(logfmt_value(value, &mut self.fields));
    }
}

impl Visit for LogfmtVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%` values arrive here as Debug that prints their Display.
        self.field(field, &format!("{value:?}"));
    }
}

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = LogfmtVisitor {
            out: writer,
            message: None,
            fields: String::new(),
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result?;
        let fields = match &v.message {
            Some(m) => {
                v.out.write_str(m)?;
                v.fields.as_str()
            }
            None => v.fields.trim_start(),
        };
        v.out.write_str(fields)
    }
}

/// Prefixes each line with its syslog priority, for journald.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the subscriber; `level` is a tracing filter (`info`, `debug`, `xlb=trace`…),
/// overridden by `RUST_LOG` when set. Keep the guard until the process
/// ends: dropping it flushes what is queued.
pub fn init(level: &str, format: LogFormat) -> Result<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .with_context(|| format!("bad log level `{level}`"))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let journal = under_journal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let done = match (format, journal) {
        (LogFormat::Text, false) => builder.fmt_fields(LogfmtFields).try_init(),
        (LogFormat::Text, true) => builder
            .fmt_fields(LogfmtFields)
            .event_format(Prioritised(Format::default().without_time()))
            .try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, true) => {
            let json = Format::default().json().flatten_event(true);
            builder
                .json()
                .flatten_event(true)
                .event_format(Prioritised(json))
                .try_init()
        }
    };
    done.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(guard)
}

/// The aya-log level the kernel side should emit at (1 error … 4 debug):
/// below debug the program skips formatting its debug records entirely.
pub fn kernel_level() -> u8 {
    if tracing::enabled!(target: "lb_ebpf", tracing::Level::DEBUG) {
        4
    } else {
        2
    }
}

/// Forwards the program's log ring buffer into the agent's log until the agent exits.
pub fn forward_ebpf_logs(ebpf: &mut Ebpf) -> Result<()> {
    let logger = EbpfLogger::init(ebpf).context("opening the XDP program's log buffer")?;
    // SAFETY: the logger owns the ring buffer's fd and keeps it open while the AsyncFd holds it.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)? };
    tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!(error = %chain(&e), "XDP log forwarding stopped");
                    return;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(v: &str) -> String {
        let mut s = String::new();
        logfmt_value(v, &mut s).unwrap();
        s
    }

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(quoted("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(quoted("TCP 10.0.0.1:80"), "\"TCP 10.0.0.1:80\"");
        assert_eq!(quoted("a=b"), "\"a=b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn chains_show_every_cause() {
        let e = anyhow::anyhow!("root").context("outer");
        assert_eq!(chain(&e).to_string(), "outer: root");
    }
}
