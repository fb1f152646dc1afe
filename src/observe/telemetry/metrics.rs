//! OTLP metrics: observable instruments whose callbacks read the same atomic counters as
//! `/metrics`, and an exporter that adds the request-duration histogram exactly.
//!
//! Counters and gauges are SDK observable instruments: the SDK's periodic-reader thread calls
//! their callbacks at each export (every `OTEL_METRIC_EXPORT_INTERVAL` ms, 60 s by default), and
//! each callback only loads atomics. Nothing runs on the request path.
//!
//! The histogram is different. The SDK has no observable histogram, its synchronous histogram
//! takes a mutex on every `record`, and its data types cannot be built from outside. So
//! [`HistogramExporter`] takes what the SDK collected, converts it to the OTLP protobuf message
//! with `opentelemetry-proto` (the same conversion the stock exporter uses), appends one
//! cumulative histogram data point read from the workers' atomic buckets, and posts the message
//! itself. The counts are the exact ones `/metrics` shows, at the cost of reimplementing the
//! exporter's endpoint rules (see [`super::env`]). docs/observability.md explains the choice.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ScopeMetrics,
};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use prost::Message;

use super::env::HttpTarget;
use crate::observe::scrape::prometheus::duration;
use crate::observe::scrape::{process, Sources};
use crate::stats::{duration_bounds_seconds, WorkerStats, STATUS_CODES};
use crate::sync::Arc;

/// The instrumentation scope of everything atomserve exports.
pub const SCOPE: &str = "atomserve";

/// Registers every observable instrument on `meter`. The callbacks live as long as the meter
/// provider; the handles the builders return are not needed to keep them.
pub fn register(meter: &Meter, src: &Arc<Sources>) {
    let s = src.clone();
    meter
        .u64_observable_counter("atomserve.http.requests")
        .with_description("Requests answered on the public listener, by status code")
        .with_unit("{request}")
        .with_callback(move |o: &dyn AsyncInstrument<u64>| {
            for (i, &code) in STATUS_CODES.iter().enumerate() {
                let n = s.stats.sum(|w| &w.status[i]);
                if n > 0 {
                    o.observe(n, &[KeyValue::new("http.response.status_code", i64::from(code))]);
                }
            }
        })
        .build();
    counter(meter, src, "atomserve.http.response.body.size", "Response body bytes sent", "By", |s| {
        s.stats.sum(|w| &w.response_bytes)
    });
    counter(
        meter,
        src,
        "atomserve.connections.accepted",
        "Public connections accepted",
        "{connection}",
        |s| s.stats.acceptor.accepted.get(),
    );
    gauge(meter, src, "atomserve.connections.active", "Public connections open now", "{connection}", |s| {
        s.stats.open_connections()
    });
    gauge(
        meter,
        src,
        "atomserve.accept_queue.depth",
        "Accepted connections waiting for a worker",
        "{connection}",
        |s| s.queue.queued() as u64,
    );
    counter(
        meter,
        src,
        "atomserve.accept_queue.full",
        "Connections refused with 503 because the queue was full",
        "{connection}",
        |s| s.stats.acceptor.queue_full.get(),
    );
    // The part before the whole: callbacks run in the order they were registered, so the hits,
    // read after, can only have grown past the rendered hits read before.
    counter(
        meter,
        src,
        "atomserve.cache.rendered_hits",
        "Cache hits answered whole from a worker's rendered responses",
        "{request}",
        |s| s.stats.sum(|w| &w.rendered_hits),
    );
    counter(meter, src, "atomserve.cache.hits", "Requests answered from the snapshot", "{request}", |s| {
        s.stats.sum(|w| &w.cache_hits) + s.stats.sum(|w| &w.rendered_hits)
    });
    counter(
        meter,
        src,
        "atomserve.cache.misses",
        "Requests for paths not in the snapshot",
        "{request}",
        |s| s.stats.sum(|w| &w.cache_misses),
    );
    let s = src.clone();
    meter
        .u64_observable_counter("atomserve.cache.reloads")
        .with_description("Snapshot reloads, by result")
        .with_unit("{reload}")
        .with_callback(move |o: &dyn AsyncInstrument<u64>| {
            o.observe(s.stats.reload.ok.get(), &[KeyValue::new("result", "ok")]);
            o.observe(s.stats.reload.failed.get(), &[KeyValue::new("result", "failed")]);
        })
        .build();
    gauge(meter, src, "atomserve.cache.files", "Files in the current snapshot", "{file}", |s| {
        s.stats.reload.files.get()
    });
    gauge(meter, src, "atomserve.cache.bytes", "Bytes of file content in the current snapshot", "By", |s| {
        s.stats.reload.bytes.get()
    });
    gauge(
        meter,
        src,
        "atomserve.cache.page_cache.files",
        "Large bodies sent from their own file's page cache (--large-bodies), not held in memory",
        "{file}",
        |s| s.stats.reload.page_cache_files.get(),
    );
    gauge(
        meter,
        src,
        "atomserve.cache.page_cache.bytes",
        "Bytes of the bodies sent from their own file's page cache (not in atomserve.cache.bytes)",
        "By",
        |s| s.stats.reload.page_cache_bytes.get(),
    );
    let s = src.clone();
    meter
        .f64_observable_gauge("atomserve.cache.reload.duration")
        .with_description("The latest load, by phase: identity (serving from there), variants (background compression; 0 until complete)")
        .with_unit("s")
        .with_callback(move |o| {
            let r = &s.stats.reload;
            o.observe(r.identity_us.get() as f64 / 1e6, &[KeyValue::new("phase", "identity")]);
            o.observe(r.variants_us.get() as f64 / 1e6, &[KeyValue::new("phase", "variants")]);
        })
        .build();
    counter(
        meter,
        src,
        "atomserve.cache.reused",
        "Bytes loads took from before instead of building again",
        "By",
        |s| s.stats.reload.reused_bytes.get(),
    );
    counter(meter, src, "atomserve.cache.built", "Bytes loads placed or compressed anew", "By", |s| {
        s.stats.reload.built_bytes.get()
    });
    gauge(
        meter,
        src,
        "atomserve.cache.variants.pending",
        "Files whose compressed variants are being built",
        "{file}",
        |s| s.stats.reload.pending_files.get(),
    );
    // One instrument per worker figure, a point per worker: counters, and gauges for levels.
    let per_worker = |name: &'static str,
                      description: &'static str,
                      unit: &'static str,
                      gauge: bool,
                      read: fn(&WorkerStats) -> u64| {
        let s = src.clone();
        let points = move |o: &dyn AsyncInstrument<u64>| {
            for (i, w) in s.stats.workers.iter().enumerate() {
                o.observe(read(w), &[KeyValue::new("worker", i as i64)]);
            }
        };
        if gauge {
            let g = meter.u64_observable_gauge(name).with_description(description).with_unit(unit);
            g.with_callback(points).build();
        } else {
            let c = meter.u64_observable_counter(name).with_description(description).with_unit(unit);
            c.with_callback(points).build();
        }
    };
    per_worker("atomserve.worker.requests", "Requests answered, by worker", "{request}", false, |w| {
        w.requests.get()
    });
    per_worker("atomserve.worker.turns", "Worker loop turns, each one wait for I/O", "{turn}", false, |w| {
        w.turns.get()
    });
    per_worker(
        "atomserve.uring.recv_buffers.exhausted",
        "--io uring: receives that found the provided buffers used up (ENOBUFS)",
        "{receive}",
        false,
        |w| w.recv_buffers_exhausted.get(),
    );
    per_worker(
        "atomserve.uring.cq.overflows",
        "--io uring: turns that found completions in the kernel's overflow list",
        "{turn}",
        false,
        |w| w.cq_overflows.get(),
    );
    per_worker(
        "atomserve.uring.recv_buffers.held",
        "--io uring: provided receive buffers handed over and not given back (0 at rest)",
        "{buffer}",
        true,
        |w| w.recv_buffers_held.get(),
    );
    counter(
        meter,
        src,
        "atomserve.telemetry.records.dropped",
        "Access records dropped by a full OTLP queue",
        "{record}",
        |s| s.stats.sum(|w| &w.telemetry_dropped),
    );
    let s = src.clone();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_description("CPU time used by the process (user and system)")
        .with_unit("s")
        .with_callback(move |o: &dyn AsyncInstrument<f64>| {
            o.observe(process::read(s.started).cpu_seconds, &[])
        })
        .build();
    gauge(meter, src, "process.memory.usage", "Resident set size", "By", |s| {
        process::read(s.started).resident_bytes
    });
    gauge(
        meter,
        src,
        "process.open_file_descriptor.count",
        "Open file descriptors",
        "{file_descriptor}",
        |s| process::read(s.started).open_fds,
    );
}

fn counter(
    meter: &Meter,
    src: &Arc<Sources>,
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    read: fn(&Sources) -> u64,
) {
    let s = src.clone();
    meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_unit(unit)
        .with_callback(move |o: &dyn AsyncInstrument<u64>| o.observe(read(&s), &[]))
        .build();
}

fn gauge(
    meter: &Meter,
    src: &Arc<Sources>,
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    read: fn(&Sources) -> u64,
) {
    let s = src.clone();
    meter
        .u64_observable_gauge(name)
        .with_description(description)
        .with_unit(unit)
        .with_callback(move |o: &dyn AsyncInstrument<u64>| o.observe(read(&s), &[]))
        .build();
}

/// The metric exporter: the SDK's collection plus the exact duration histogram, posted as one
/// OTLP/HTTP protobuf request. One attempt per export: the next export carries the same
/// cumulative totals, so a lost one costs resolution, not counts.
pub struct HistogramExporter {
    pub http: reqwest::blocking::Client,
    pub target: HttpTarget,
    pub sources: Arc<Sources>,
}

impl HistogramExporter {
    /// The histogram as one OTLP metric, summed over the workers at this moment.
    fn histogram(&self) -> Metric {
        let (buckets, sum_ns) = duration(self.sources.stats.workers.iter().map(|w| &**w));
        let unix_nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let point = HistogramDataPoint {
            start_time_unix_nano: unix_nanos(self.sources.started),
            time_unix_nano: unix_nanos(SystemTime::now()),
            // The count is the sum of the very bucket values sent, so the point is consistent
            // even while workers keep counting.
            count: buckets.iter().sum(),
            sum: Some(sum_ns as f64 / 1e9),
            bucket_counts: buckets.to_vec(),
            explicit_bounds: duration_bounds_seconds().collect(),
            ..Default::default()
        };
        Metric {
            name: "http.server.request.duration".into(),
            description: "Time from the read that brought a request in until its response was sent".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }

    fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let t = &self.target;
        let mut request =
            self.http.post(&t.url).timeout(t.timeout).header("content-type", "application/x-protobuf");
        let body = if t.gzip {
            request = request.header("content-encoding", "gzip");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&body).and_then(|()| enc.finish()).map_err(|e| e.to_string())?
        } else {
            body
        };
        for (k, v) in &t.headers {
            request = request.header(k, v);
        }
        let response = request.body(body).send().map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", t.url, response.status()));
        }
        Ok(())
    }
}

impl PushMetricExporter for HistogramExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut request: ExportMetricsServiceRequest = metrics.into();
        let histogram = self.histogram();
        if let Some(rm) = request.resource_metrics.first_mut() {
            match rm.scope_metrics.iter_mut().find(|s| s.scope.as_ref().is_some_and(|s| s.name == SCOPE)) {
                Some(scope) => scope.metrics.push(histogram),
                None => rm.scope_metrics.push(ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: vec![histogram],
                    ..Default::default()
                }),
            }
        }
        // Only the SDK's periodic-reader thread calls export: it is these counters' one writer.
        match self.post(request.encode_to_vec()) {
            Ok(()) => {
                self.sources.stats.export.metric_exports_ok.incr();
                Ok(())
            }
            Err(e) => {
                self.sources.stats.export.metric_exports_failed.incr();
                Err(OTelSdkError::InternalFailure(e))
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(()) // nothing is buffered: every export posts at once
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        // The atomics are totals since start; cumulative is what they are.
        Temporality::Cumulative
    }
}
