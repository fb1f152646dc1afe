//! OpenTelemetry export over OTLP/HTTP (protobuf): metrics, traces and logs, configured only by
//! the standard `OTEL_*` environment variables ([`env`](mod@env)).
//!
//! The request path never calls OpenTelemetry. Metrics are observable instruments read from the
//! atomic counters by the SDK's reader thread ([`metrics`]); spans and log records are made by
//! the bridge thread from access records the workers queue ([`bridge`]). All of it starts here,
//! on the main thread before any worker is pinned, so that the SDK's threads (periodic reader,
//! batch processors, the HTTP client's) inherit the process's full CPU set, not one worker's core.
//!
//! An unreachable collector cannot slow serving: the workers' queue and the SDK's batch queues
//! are bounded and drop when full; exports run on their own threads with a timeout. On shutdown
//! the providers flush within the grace period, on a helper thread that is abandoned if the
//! collector does not answer in time.

pub mod bridge;
pub mod env;
pub mod metrics;

use crate::sync::thread::JoinHandle;
use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{LogExporter, SpanExporter, WithHttpConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::observe::access::RecordQueue;
use crate::observe::scrape::Sources;
use crate::sync::{thread, Arc};

/// Access records that may wait for the bridge; beyond it they are dropped and counted.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// The running exporters.
pub struct Telemetry {
    /// Where workers push access records (`None` when neither traces nor logs are on).
    pub queue: Option<Arc<RecordQueue>>,
    meters: Option<SdkMeterProvider>,
    tracers: Option<SdkTracerProvider>,
    loggers: Option<SdkLoggerProvider>,
    bridge: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    /// What is on, for the start-up banner.
    pub enabled: env::Enabled,
}

impl Telemetry {
    /// Starts what the environment asks for; `Ok(None)` when it asks for nothing.
    pub fn start(sources: &Arc<Sources>) -> Result<Option<Telemetry>, String> {
        let enabled = env::enabled(&env::ProcessEnv);
        if !enabled.any() {
            return Ok(None);
        }
        // One blocking HTTP client for every exporter, passed explicitly: left to choose, the
        // OTLP crate may pick its async reqwest client (feature unification), which panics
        // without a tokio runtime. Its per-attempt timeout is set per request.
        let http = reqwest::blocking::Client::builder()
            .build()
            .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
        let resource = resource();

        let meters = if enabled.metrics {
            let target = env::http_target(&env::ProcessEnv, env::Signal::Metrics)?;
            let exporter =
                metrics::HistogramExporter { http: http.clone(), target, sources: sources.clone() };
            // The reader reads OTEL_METRIC_EXPORT_INTERVAL itself (60 s by default).
            let provider = SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(exporter).build())
                .with_resource(resource.clone())
                .build();
            metrics::register(&provider.meter(metrics::SCOPE), sources);
            Some(provider)
        } else {
            None
        };
        let tracers = if enabled.traces {
            let exporter = SpanExporter::builder()
                .with_http()
                .with_http_client(http.clone())
                .build()
                .map_err(|e| format!("OTLP span exporter: {e}"))?;
            // The sampler comes from OTEL_TRACES_SAMPLER/_ARG, read by the SDK's default config.
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };
        let loggers = if enabled.logs {
            let exporter = LogExporter::builder()
                .with_http()
                .with_http_client(http)
                .build()
                .map_err(|e| format!("OTLP log exporter: {e}"))?;
            Some(SdkLoggerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        } else {
            None
        };

        let mut telemetry = Telemetry { queue: None, meters, tracers, loggers, bridge: None, enabled };
        if telemetry.tracers.is_some() || telemetry.loggers.is_some() {
            let queue = Arc::new(RecordQueue::new(QUEUE_CAPACITY));
            let bridge = bridge::Bridge {
                queue: queue.clone(),
                tracer: telemetry.tracers.as_ref().map(|p| p.tracer(metrics::SCOPE)),
                logger: telemetry.loggers.as_ref().map(|p| p.logger(metrics::SCOPE)),
            };
            let (stop, stopped) = mpsc::channel();
            let handle = thread::Builder::new()
                .name("atomserve-otlp".into())
                .spawn(move || bridge.run(stopped))
                .map_err(|e| format!("cannot start the OTLP bridge thread: {e}"))?;
            telemetry.bridge = Some((stop, handle));
            telemetry.queue = Some(queue);
        }
        Ok(Some(telemetry))
    }

    /// Forwards what the workers left, flushes every exporter and stops them, waiting at most
    /// `timeout`: a collector that does not answer cannot hold the exit back.
    pub fn shutdown(mut self, timeout: Duration) {
        let (done, finished) = mpsc::channel();
        let spawned = thread::Builder::new().name("atomserve-otlp-stop".into()).spawn(move || {
            if let Some((stop, handle)) = self.bridge.take() {
                let _ = stop.send(());
                let _ = handle.join();
            }
            if let Some(p) = &self.tracers {
                let _ = p.shutdown_with_timeout(timeout);
            }
            if let Some(p) = &self.loggers {
                let _ = p.shutdown_with_timeout(timeout);
            }
            if let Some(p) = &self.meters {
                let _ = p.shutdown_with_timeout(timeout); // one last export of the final totals
            }
            let _ = done.send(());
        });
        if spawned.is_ok() && finished.recv_timeout(timeout).is_err() {
            crate::log!("OpenTelemetry export did not finish within {timeout:?}; exiting without it");
        }
    }
}

/// service.name (unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name it), service.version,
/// service.instance.id, host.name and process.pid, on top of what the SDK's default detectors
/// read from OTEL_RESOURCE_ATTRIBUTES.
fn resource() -> Resource {
    let from_env = |key: &str| {
        std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|v| v.split(',').any(|kv| kv.trim().starts_with(key)))
    };
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_string());
    let pid = std::process::id();
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() && !from_env("service.name=") {
        builder = builder.with_service_name("atomserve");
    }
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("host.name", host.clone()),
        KeyValue::new("process.pid", i64::from(pid)),
    ];
    if !from_env("service.instance.id=") {
        // Unique per process and readable: host, pid and start time.
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        attributes.push(KeyValue::new("service.instance.id", format!("{host}-{pid}-{started}")));
    }
    builder.with_attributes(attributes).build()
}
