//! The node's log lines: text (ANSI colours only when stdout is a terminal and `NO_COLOR` is
//! unset) or JSON, one object per line. A JSON line is flat: the time, level, target and
//! message, `node_id`, the fields of every span it is inside (outermost first: a saga step's
//! `request_id`, `saga_step` and `epoch`, an apply's `log_index`), then the event's own fields,
//! so that `jq 'select(.request_id == "…")'` finds every line about one request.
//!
//! With `--otlp-endpoint`, spans are also exported over OTLP/HTTP; a request's `submit` span and
//! its saga's `saga_step` spans join the trace of the client's `traceparent` ([`adopt`]).

use std::fmt;
use std::io::IsTerminal;

use ledger_state_machine::TraceContext;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How often exported spans are sent: short, so a trace shows up while one looks for it.
const OTLP_EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The span export, to be flushed at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is still buffered and stops the export.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("ledger-node: span export did not stop cleanly: {error}");
            }
        }
    }
}

/// Installs the process's log output for node `node_id`, and the span export to
/// `otlp_endpoint` when given.
pub fn init(
    format: LogFormat,
    node_id: u64,
    filter: EnvFilter,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, String> {
    let provider = otlp_endpoint
        .map(|url| exporter(url, node_id))
        .transpose()?;
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("ledger-node")));
    let registry = tracing_subscriber::registry().with(filter).with(spans);
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(colours()))
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines { node_id }),
            )
            .init(),
    }
    Ok(Telemetry { provider })
}

/// A tracer provider exporting to the OTLP/HTTP collector at `url`.
fn exporter(url: &str, node_id: u64) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("--otlp-endpoint {url}: {e}"))?;
    let endpoint = match parsed.path() {
        "" | "/" => format!("{}/v1/traces", url.trim_end_matches('/')),
        _ => url.to_owned(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("--otlp-endpoint {url}: {e}"))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(OTLP_EXPORT_EVERY)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("ledger-node")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node_id.to_string(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build())
}

/// Makes `span` a child of the client's `trace` in the exported spans (nothing without
/// `--otlp-endpoint`).
pub fn adopt(span: &tracing::Span, trace: &TraceContext) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let remote = SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.parent_id),
        TraceFlags::new(trace.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
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
