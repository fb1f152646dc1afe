//! The OTLP bridge: a thread that turns access records into spans and log records.
//!
//! Workers never call the OpenTelemetry SDK. They push finished [`AccessRecord`]s onto a bounded
//! lock-free queue (dropping and counting when it is full, see [`crate::observe::access`]); this thread
//! drains it every 20 ms and hands each record to the SDK: a server span with explicit start
//! and end times (child of the request's `traceparent`, when it sent one, and only if the
//! sampler says so), and a log record carrying the same trace context. The SDK's batch
//! processors then export from their own threads.

use std::borrow::Cow;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::logs::SdkLogger;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::observe::access::{AccessRecord, Field, RecordQueue};
use crate::sync::Arc;

/// How often the bridge looks at the queue when it is idle.
const POLL: Duration = Duration::from_millis(20);

/// What the bridge feeds.
pub struct Bridge {
    pub queue: Arc<RecordQueue>,
    pub tracer: Option<SdkTracer>,
    pub logger: Option<SdkLogger>,
}

impl Bridge {
    /// Runs until `stop` receives (or its sender is dropped), then drains what is left.
    pub fn run(self, stop: Receiver<()>) {
        let propagator = TraceContextPropagator::new();
        loop {
            while let Some(record) = self.queue.pop() {
                self.forward(&record, &propagator);
            }
            match stop.recv_timeout(POLL) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        while let Some(record) = self.queue.pop() {
            self.forward(&record, &propagator);
        }
    }

    fn forward(&self, record: &AccessRecord, propagator: &TraceContextPropagator) {
        let end = record.start + record.duration;
        let mut cx = Context::new();
        if let Some(tracer) = &self.tracer {
            let parent = propagator.extract(&TraceHeaders(record));
            let (method, original) = method_name(record);
            let mut attributes = attributes(record, method, original);
            attributes.push(KeyValue::new("http.response.body.size", record.body_bytes as i64));
            let mut span = tracer
                .span_builder(method)
                .with_kind(SpanKind::Server)
                .with_start_time(record.start)
                .with_attributes(attributes)
                .start_with_context(tracer, &parent);
            if record.status >= 500 {
                // A server span is an error only for 5xx (OpenTelemetry HTTP conventions).
                span.set_status(Status::error(""));
            }
            span.end_with_timestamp(end);
            cx = Context::current_with_span(span);
        }
        if let Some(logger) = &self.logger {
            let mut log = logger.create_log_record();
            log.set_timestamp(end);
            log.set_event_name("http.server.access");
            let (number, text) = match record.status {
                500.. => (Severity::Error, "ERROR"),
                400.. => (Severity::Warn, "WARN"),
                _ => (Severity::Info, "INFO"),
            };
            log.set_severity_number(number);
            log.set_severity_text(text);
            let mut line = Vec::with_capacity(128);
            record.write_combined(&mut line);
            line.pop(); // the newline
            log.set_body(AnyValue::from(String::from_utf8_lossy(&line).into_owned()));
            let (method, original) = method_name(record);
            for kv in attributes(record, method, original) {
                log.add_attribute(kv.key, any_value(kv.value));
            }
            log.add_attribute("http.response.body.size", record.body_bytes as i64);
            log.add_attribute("http.server.request.duration", record.duration.as_secs_f64());
            let span = cx.span();
            let sc = span.span_context();
            let parent = propagator.extract(&TraceHeaders(record));
            let remote = parent.span().span_context().clone();
            if sc.is_valid() {
                log.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
            } else if remote.is_valid() {
                // Not traced here, but part of the caller's trace: keep the correlation.
                log.set_trace_context(remote.trace_id(), remote.span_id(), Some(remote.trace_flags()));
            }
            logger.emit(log);
        }
    }
}

/// A span attribute's value as a log attribute's (the two APIs have their own value types).
fn any_value(value: Value) -> AnyValue {
    match value {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

/// The method as OpenTelemetry names it: one of the known ones, else `_OTHER` with the original.
fn method_name(record: &AccessRecord) -> (&'static str, Option<String>) {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"];
    let sent = record.field_str(Field::Method).unwrap_or("");
    match KNOWN.iter().find(|&&m| m == sent) {
        Some(m) => (m, None),
        None => ("_OTHER", (!sent.is_empty()).then(|| sent.to_string())),
    }
}

/// The attributes spans and log records share (OpenTelemetry HTTP server conventions).
fn attributes(record: &AccessRecord, method: &'static str, original: Option<String>) -> Vec<KeyValue> {
    let mut kv = Vec::with_capacity(12);
    kv.push(KeyValue::new("http.request.method", method));
    if let Some(original) = original {
        kv.push(KeyValue::new("http.request.method_original", original));
    }
    kv.push(KeyValue::new("http.response.status_code", i64::from(record.status)));
    kv.push(KeyValue::new("url.scheme", "http"));
    let target = String::from_utf8_lossy(record.field(Field::Target));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.into_owned(), None),
    };
    if !path.is_empty() {
        kv.push(KeyValue::new("url.path", path));
    }
    if let Some(query) = query {
        kv.push(KeyValue::new("url.query", query));
    }
    if let Some(minor) = record.minor_version {
        kv.push(KeyValue::new("network.protocol.version", if minor == 0 { "1.0" } else { "1.1" }));
    }
    if let Some(host) = record.field_str(Field::Host) {
        let (name, port) = split_host(host);
        kv.push(KeyValue::new("server.address", name.to_string()));
        if let Some(port) = port {
            kv.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(peer) = record.peer {
        kv.push(KeyValue::new("client.address", peer.ip().to_string()));
        kv.push(KeyValue::new("client.port", i64::from(peer.port())));
    }
    if let Some(agent) = record.field_str(Field::UserAgent) {
        kv.push(KeyValue::new("user_agent.original", agent.to_string()));
    }
    kv
}

/// `example.com:8080` → (`example.com`, 8080); `[::1]:80` → (`::1`, 80).
fn split_host(host: &str) -> (Cow<'_, str>, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            return (Cow::Borrowed(name), after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (Cow::Borrowed(name), port.parse().ok()),
        _ => (Cow::Borrowed(host), None),
    }
}

/// The W3C trace-context fields of a record, for the propagator.
struct TraceHeaders<'a>(&'a AccessRecord);

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.0.field_str(Field::TraceParent),
            "tracestate" => self.0.field_str(Field::TraceState),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("example.com:8080"), (Cow::Borrowed("example.com"), Some(8080)));
        assert_eq!(split_host("example.com"), (Cow::Borrowed("example.com"), None));
        assert_eq!(split_host("[::1]:80"), (Cow::Borrowed("::1"), Some(80)));
        assert_eq!(split_host("::1"), (Cow::Borrowed("::1"), None));
    }
}
