//! The node's log lines: text (ANSI colours only when stdout is a terminal and `NO_COLOR` is
//! unset) or JSON, one object per line. A JSON line is flat: the time, level, target and
//! message, `node_id`, the fields of every span it is inside (outermost first: a saga step's
//! `request_id`, `saga_step` and `epoch`, an apply's `log_index`), then the event's own fields,
//! so that `jq 'select(.request_id == "…")'` finds every line about one request.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the process's log output for node `node_id`.
pub fn init(format: LogFormat, node_id: u64, filter: EnvFilter) {
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(colours())
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { node_id })
            .with_env_filter(filter)
            .init(),
    }
}

/// Colours only for a person at a terminal: never into files or pipes, never with a non-empty
/// `NO_COLOR` (no-color.org).
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// One flat JSON object per event.
pub struct JsonLines {
    /// Written into every line.
    pub node_id: u64,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let line = json_line(self.node_id, ctx, event);
        writeln!(writer, "{line}")
    }
}

fn json_line<S, N>(node_id: u64, ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Value
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    let metadata = event.metadata();
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        humantime::format_rfc3339_micros(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    line.insert("level".into(), metadata.level().as_str().into());
    line.insert("target".into(), metadata.target().into());
    line.insert("node_id".into(), node_id.into());
    if let Some(scope) = ctx.event_scope() {
        let mut spans = Vec::new();
        for span in scope.from_root() {
            spans.push(span.name());
            let extensions = span.extensions();
            // JsonFields stores each span's fields as the text of a JSON object.
            let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                continue;
            };
            if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                line.extend(fields);
            }
        }
        line.insert("spans".into(), spans.join(":").into());
    }
    let mut fields = EventFields(Map::new());
    event.record(&mut fields);
    line.extend(fields.0);
    Value::Object(line)
}

/// An event's fields as JSON values.
struct EventFields(Map<String, Value>);

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_carries_the_node_its_spans_fields_and_its_own() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { node_id: 7 })
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let step = tracing::info_span!(
                "saga_step",
                request_id = "r-1",
                saga_step = "payment",
                epoch = 3u64
            );
            let _step = step.enter();
            let apply = tracing::info_span!("apply", log_index = 42u64);
            let _apply = apply.enter();
            tracing::warn!(attempts = 2u64, "partner call failed");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["node_id"], 7);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "partner call failed");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["saga_step"], "payment");
        assert_eq!(line["epoch"], 3);
        assert_eq!(line["log_index"], 42);
        assert_eq!(line["attempts"], 2);
        assert_eq!(line["spans"], "saga_step:apply");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
