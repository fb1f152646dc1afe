//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): a `# HELP` and `# TYPE`
//! line for every family, then its samples. Counters end in `_total`; the duration histogram has
//! cumulative `_bucket{le}` samples ending in `le="+Inf"`, then `_sum` and `_count`.
//!
//! The same figures in OpenMetrics 1.0 when the scraper's `Accept` asks for it (Prometheus does
//! by default): a counter family is named without its `_total` suffix (its samples keep it), and
//! the exposition ends with `# EOF`.

use std::fmt::Write;

use super::{process, Sources};
use crate::stats::{duration_bounds_seconds, Stats, WorkerStats, DURATION_BOUNDS_NS, STATUS_CODES};

/// The two formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// OpenMetrics if `Accept` names it with a non-zero q-value, else the 0.0.4 text format.
    pub fn negotiate(accept: Option<&[u8]>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let wants = accept.split(|&c| c == b',').any(|range| {
            let mut params = range.split(|&c| c == b';').map(<[u8]>::trim_ascii);
            let media = params.next().unwrap_or_default();
            let zero = params.any(|p| {
                p.len() > 2
                    && p[..2].eq_ignore_ascii_case(b"q=")
                    && p[2..].iter().all(|&c| c == b'0' || c == b'.')
            });
            media.eq_ignore_ascii_case(b"application/openmetrics-text") && !zero
        });
        if wants {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of the exposition.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders every metric family.
pub fn render(src: &Sources, format: Format) -> String {
    let stats = &*src.stats;
    let mut out = String::with_capacity(8 * 1024);
    let w = &mut Exposition { out: &mut out, format };

    family(
        w,
        "atomserve_http_requests_total",
        "counter",
        "HTTP requests answered on the public listener, by status code.",
    );
    for (i, code) in STATUS_CODES.iter().enumerate() {
        let n = stats.sum(|s| &s.status[i]);
        if n > 0 {
            let _ = writeln!(w, "atomserve_http_requests_total{{code=\"{code}\"}} {n}");
        }
    }

    family(
        w,
        "atomserve_http_request_duration_seconds",
        "histogram",
        "Time from reading a request to having sent its whole response.",
    );
    let (buckets, sum_ns) = duration(stats.workers.iter().map(|w| &**w));
    let mut cumulative = 0;
    for (i, bound) in duration_bounds_seconds().enumerate() {
        cumulative += buckets[i];
        let _ = writeln!(w, "atomserve_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += buckets[DURATION_BOUNDS_NS.len()];
    let _ = writeln!(w, "atomserve_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(w, "atomserve_http_request_duration_seconds_sum {}", sum_ns as f64 / 1e9);
    let _ = writeln!(w, "atomserve_http_request_duration_seconds_count {cumulative}");

    counter(
        w,
        "atomserve_http_response_bytes_total",
        "Response body bytes sent (public listener).",
        stats.sum(|s| &s.response_bytes),
    );
    let open = stats.open_connections();
    let accepted = stats.acceptor.accepted.get();
    let closed = stats.sum(|s| &s.connections_closed);
    let queued = src.queue.queued() as u64;
    gauge(
        w,
        "atomserve_connections_active",
        "Public connections open now (queued or owned by a worker).",
        open,
    );
    counter(
        w,
        "atomserve_connections_accepted_total",
        "Public connections accepted and offered to the workers (those a full queue refused with 503 included).",
        accepted,
    );
    counter(w, "atomserve_connections_closed_total", "Public connections closed.", closed);
    gauge(w, "atomserve_accept_queue_depth", "Accepted connections waiting for a worker.", queued);
    counter(
        w,
        "atomserve_accept_queue_full_total",
        "Connections refused with 503 because the queue was full.",
        stats.acceptor.queue_full.get(),
    );
    counter(
        w,
        "atomserve_connections_refused_total",
        "Connections refused with 503 because --max-connections were open.",
        stats.acceptor.over_limit.get(),
    );
    counter(
        w,
        "atomserve_accept_backoffs_total",
        "Pauses in accepting after EMFILE/ENFILE/ENOBUFS/ENOMEM.",
        stats.acceptor.backoffs.get(),
    );
    // Read once: a part must never come out larger than the whole it is counted in.
    let rendered_hits = stats.sum(|s| &s.rendered_hits);
    counter(
        w,
        "atomserve_cache_hits_total",
        "Requests answered from the snapshot.",
        stats.sum(|s| &s.cache_hits) + rendered_hits,
    );
    counter(
        w,
        "atomserve_cache_rendered_hits_total",
        "Cache hits answered whole from a worker's rendered responses (part of atomserve_cache_hits_total).",
        rendered_hits,
    );
    counter(
        w,
        "atomserve_cache_misses_total",
        "Requests for paths the snapshot does not hold.",
        stats.sum(|s| &s.cache_misses),
    );

    family(w, "atomserve_cache_reloads_total", "counter", "Snapshot reloads, by result.");
    let _ = writeln!(w, "atomserve_cache_reloads_total{{result=\"ok\"}} {}", stats.reload.ok.get());
    let _ = writeln!(w, "atomserve_cache_reloads_total{{result=\"failed\"}} {}", stats.reload.failed.get());
    gauge(w, "atomserve_cache_files", "Files in the live snapshot.", stats.reload.files.get());
    gauge(
        w,
        "atomserve_cache_bytes",
        "Body bytes the live snapshot holds in memory (not those sent from files' page cache).",
        stats.reload.bytes.get(),
    );
    // What the snapshot serves without holding it in memory.
    let r = &stats.reload;
    for (name, help, value) in [
        (
            "atomserve_cache_disk_files",
            "Files sent from disk unread: over --max-cached-file, or past --cache-budget.",
            &r.disk_files,
        ),
        (
            "atomserve_cache_page_cache_files",
            "Large bodies sent from their own file's page cache (--large-bodies), not held in memory.",
            &r.page_cache_files,
        ),
        (
            "atomserve_cache_page_cache_bytes",
            "Bytes of the bodies sent from their own file's page cache (not in atomserve_cache_bytes).",
            &r.page_cache_bytes,
        ),
    ] {
        gauge(w, name, help, value.get());
    }
    gauge(
        w,
        "atomserve_cache_generation",
        "Snapshots published since start (0: the first one).",
        src.cache.generation(),
    );
    family(
        w,
        "atomserve_cache_reload_duration_seconds",
        "gauge",
        "The latest load (start-up or reload), by phase: identity (read, hash, publish: serving from \
         there) and variants (background compression; 0 until complete).",
    );
    for (phase, us) in [("identity", r.identity_us.get()), ("variants", r.variants_us.get())] {
        let _ =
            writeln!(w, "atomserve_cache_reload_duration_seconds{{phase=\"{phase}\"}} {}", us as f64 / 1e6);
    }
    counter(
        w,
        "atomserve_cache_reused_files_total",
        "Files whose unchanged body loads took from the snapshot they replaced.",
        r.reused_files.get(),
    );
    counter(
        w,
        "atomserve_cache_reused_bytes_total",
        "Bytes (bodies and compressed variants) loads took from before instead of building again.",
        r.reused_bytes.get(),
    );
    counter(
        w,
        "atomserve_cache_built_bytes_total",
        "Bytes loads placed anew: changed bodies, shipped siblings, compressed variants.",
        r.built_bytes.get(),
    );
    gauge(
        w,
        "atomserve_cache_variants_pending",
        "Files of the live snapshot whose compressed variants are still being built.",
        r.pending_files.get(),
    );

    per_worker(
        w,
        stats,
        "atomserve_worker_requests_total",
        "counter",
        "HTTP requests answered, by worker.",
        |s| s.requests.get(),
    );
    per_worker(
        w,
        stats,
        "atomserve_worker_turns_total",
        "counter",
        "Worker loop turns, each one wait for I/O (epoll_wait, or io_uring_enter with --io uring), by worker.",
        |s| s.turns.get(),
    );
    per_worker(
        w,
        stats,
        "atomserve_uring_recv_buffers_exhausted_total",
        "counter",
        "--io uring: receives that found the worker's provided buffers used up (ENOBUFS) and were armed again.",
        |s| s.recv_buffers_exhausted.get(),
    );
    per_worker(
        w,
        stats,
        "atomserve_uring_cq_overflows_total",
        "counter",
        "--io uring: turns that found completions kept in the kernel's overflow list (completion ring full).",
        |s| s.cq_overflows.get(),
    );
    per_worker(
        w,
        stats,
        "atomserve_uring_recv_buffers_held",
        "gauge",
        "--io uring: provided receive buffers the kernel handed over and the worker has not given back \
         (0 at rest; more is a leak).",
        |s| s.recv_buffers_held.get(),
    );

    counter(
        w,
        "atomserve_telemetry_records_dropped_total",
        "Access records dropped because the OTLP bridge's queue was full.",
        stats.sum(|s| &s.telemetry_dropped),
    );
    counter(
        w,
        "atomserve_access_log_dropped_total",
        "Access-log lines lost: the writer fell behind, or standard output refused them.",
        stats.sum(|s| &s.access_log_dropped).wrapping_add(stats.log.lines_dropped.get()),
    );
    family(w, "atomserve_otlp_metric_exports_total", "counter", "OTLP metric exports, by result.");
    let _ = writeln!(
        w,
        "atomserve_otlp_metric_exports_total{{result=\"ok\"}} {}",
        stats.export.metric_exports_ok.get()
    );
    let _ = writeln!(
        w,
        "atomserve_otlp_metric_exports_total{{result=\"failed\"}} {}",
        stats.export.metric_exports_failed.get()
    );

    let p = process::read(src.started);
    family(w, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    let _ = writeln!(w, "process_cpu_seconds_total {}", p.cpu_seconds);
    gauge(w, "process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes);
    gauge(w, "process_open_fds", "Number of open file descriptors.", p.open_fds);
    gauge(w, "process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
    family(
        w,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let _ = writeln!(w, "process_start_time_seconds {}", p.start_time_seconds);
    if format == Format::OpenMetrics {
        w.out.push_str("# EOF\n");
    }
    out
}

/// The text being written, and in which format.
struct Exposition<'a> {
    out: &'a mut String,
    format: Format,
}

impl Write for Exposition<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

/// Per-bucket (not cumulative) duration counts summed over workers, and the sum in ns.
pub fn duration<'a>(workers: impl Iterator<Item = &'a WorkerStats>) -> (Vec<u64>, u64) {
    let mut buckets = vec![0u64; DURATION_BOUNDS_NS.len() + 1];
    let mut sum = 0u64;
    for w in workers {
        for (b, c) in buckets.iter_mut().zip(w.duration.buckets.iter()) {
            *b += c.get();
        }
        sum = sum.wrapping_add(w.duration.sum_ns.get());
    }
    (buckets, sum)
}

fn family(w: &mut Exposition<'_>, name: &str, kind: &str, help: &str) {
    // OpenMetrics names a counter family without the `_total` its samples carry.
    let name = match (w.format, kind) {
        (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(w: &mut Exposition<'_>, name: &str, help: &str, value: u64) {
    family(w, name, "counter", help);
    let _ = writeln!(w, "{name} {value}");
}

/// A family with one sample per worker, labelled `worker`: `kind` is "counter", or "gauge" for
/// a level (buffers held).
fn per_worker(
    w: &mut Exposition<'_>,
    stats: &Stats,
    name: &str,
    kind: &str,
    help: &str,
    read: impl Fn(&WorkerStats) -> u64,
) {
    family(w, name, kind, help);
    for (i, worker) in stats.workers.iter().enumerate() {
        let _ = writeln!(w, "{name}{{worker=\"{i}\"}} {}", read(worker));
    }
}

fn gauge(w: &mut Exposition<'_>, name: &str, help: &str, value: u64) {
    family(w, name, "gauge", help);
    let _ = writeln!(w, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        let prometheus = b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some(b"text/plain")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some(b"application/openmetrics-text; q=0")), Format::Text);
        assert_eq!(Format::negotiate(Some(b"*/*")), Format::Text);
    }
}
