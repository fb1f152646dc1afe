//! `/stats`: the same figures as `/metrics`, as one JSON document for the dashboard. Written by
//! hand (every value is a number or a fixed key), so no serialisation crate is needed.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::prometheus::duration;
use super::Sources;
use crate::cache::reload::Trigger;
use crate::stats::{duration_bounds_seconds, STATUS_CODES};

/// Renders the document.
pub fn render(src: &Sources) -> String {
    let stats = &*src.stats;
    let now = SystemTime::now();
    let uptime = now.duration_since(src.started).map_or(0.0, |d| d.as_secs_f64());
    let mut w = String::with_capacity(2048);
    let _ = write!(
        w,
        "{{\"time_unix_ms\":{},\"uptime_seconds\":{uptime:.3},\"requests_total\":{},\"response_bytes_total\":{},",
        now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        stats.sum(|s| &s.requests),
        stats.sum(|s| &s.response_bytes),
    );
    w.push_str("\"responses_by_code\":{");
    let mut first = true;
    for (i, code) in STATUS_CODES.iter().enumerate() {
        let n = stats.sum(|s| &s.status[i]);
        if n > 0 {
            let _ = write!(w, "{}\"{code}\":{n}", if first { "" } else { "," });
            first = false;
        }
    }
    let (buckets, sum_ns) = duration(stats.workers.iter().map(|w| &**w));
    let bounds: Vec<String> = duration_bounds_seconds().map(|b| b.to_string()).collect();
    let counts: Vec<String> = buckets.iter().map(|c| c.to_string()).collect();
    let _ = write!(
        w,
        "}},\"duration_seconds\":{{\"bounds\":[{}],\"counts\":[{}],\"sum\":{},\"count\":{}}},",
        bounds.join(","),
        counts.join(","),
        sum_ns as f64 / 1e9,
        buckets.iter().sum::<u64>()
    );
    w.push_str("\"workers\":[");
    for (i, worker) in stats.workers.iter().enumerate() {
        let cpu = src.cpus.get(i).copied().flatten().map_or("null".to_string(), |c| c.to_string());
        let _ = write!(
            w,
            "{}{{\"id\":{i},\"cpu\":{cpu},\"requests\":{},\"connections_accepted\":{},\"connections_active\":{},\
             \"turns\":{},\"recv_buffers_exhausted\":{},\"cq_overflows\":{},\"recv_buffers_held\":{}}}",
            if i == 0 { "" } else { "," },
            worker.requests.get(),
            worker.connections_accepted.get(),
            worker.open_connections(),
            worker.turns.get(),
            worker.recv_buffers_exhausted.get(),
            worker.cq_overflows.get(),
            worker.recv_buffers_held.get()
        );
    }
    let open = stats.open_connections();
    let accepted = stats.acceptor.accepted.get();
    let _ = write!(
        w,
        "],\"connections_active\":{},\"connections_accepted_total\":{accepted},\"accept_queue_depth\":{},\
         \"accept_queue_full_total\":{},",
        open,
        src.queue.queued(),
        stats.acceptor.queue_full.get()
    );
    // Read once: a part must never come out larger than the whole it is counted in.
    let rendered_hits = stats.sum(|s| &s.rendered_hits);
    let _ = write!(
        w,
        "\"cache\":{{\"generation\":{},\"files\":{},\"bytes\":{},\"hits\":{},\"rendered_hits\":{},\"misses\":{},\"reloads_ok\":{},\
         \"reloads_failed\":{},\"last_reload_unix_ms\":{},\"identity_bytes\":{},\"compressible_bytes\":{},\
         \"compressed_bytes\":{},\"disk_files\":{},\"page_cache_files\":{},\"page_cache_bytes\":{},\"reused_files\":{},\"reused_bytes\":{},\"built_bytes\":{},\
         \"variants_pending\":{},\"last_reload\":{{\"trigger\":\"{}\",\"identity_ms\":{:.3},\"variants_ms\":{:.3}}}}}}}",
        src.cache.generation(),
        stats.reload.files.get(),
        stats.reload.bytes.get(),
        stats.sum(|s| &s.cache_hits) + rendered_hits,
        rendered_hits,
        stats.sum(|s| &s.cache_misses),
        stats.reload.ok.get(),
        stats.reload.failed.get(),
        stats.reload.last_unix_ms.get(),
        stats.reload.identity_bytes.get(),
        stats.reload.compressible_bytes.get(),
        stats.reload.compressed_bytes.get(),
        stats.reload.disk_files.get(),
        stats.reload.page_cache_files.get(),
        stats.reload.page_cache_bytes.get(),
        stats.reload.reused_files.get(),
        stats.reload.reused_bytes.get(),
        stats.reload.built_bytes.get(),
        stats.reload.pending_files.get(),
        Trigger::name(stats.reload.last_trigger.get()),
        stats.reload.identity_us.get() as f64 / 1e3,
        stats.reload.variants_us.get() as f64 / 1e3,
    );
    w
}
