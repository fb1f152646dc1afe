//! Counters that cost a worker almost nothing: single-writer atomics read only at scrape time.
//!
//! Each [`Counter`] has exactly one thread that writes it (a worker's counters are its own; the
//! reload counters belong to the reload thread), so an increment needs no locked
//! read-modify-write: a `Relaxed` load and a `Relaxed` store of the sum is enough, and on x86 it
//! compiles to a plain `mov`/`add`/`mov` instead of `lock xadd`. Readers (the metrics endpoint)
//! load each counter with `Relaxed` and sum. What that guarantees, and why it is enough:
//! - *no lost increments*: only one thread stores, so no store overwrites another's;
//! - *never backwards*: read-read coherence — two loads of one location, the second after the
//!   first, never see an older value than the first;
//! - *exact when quiet*: once the writer's stores happen before the reader (e.g. the writer
//!   thread was joined), the reader sees the final value.
//!
//! Nothing else hangs on a counter's value, so no ordering stronger than `Relaxed` is needed —
//! except for the two counters that [`Stats::open_connections`] subtracts from `accepted`
//! (closes and refusals), which are incremented with [`Counter::incr_release`] and read with
//! [`Counter::get_acquire`] so that a close is never seen before its accept.
//! Model-checked by `loom-tests/tests/counters.rs`; measured against a shared `fetch_add` in
//! `benches/sync.rs`.

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::CachePadded;

/// A monotonic counter with a single writer: a worker bumps its own counters, and a scrape on
/// any thread reads them.
///
/// ```
/// use atomserve::stats::Counter;
/// let requests = Counter::new();
/// requests.incr();
/// requests.add(2);
/// assert_eq!(requests.get(), 3);
/// ```
pub struct Counter(AtomicU64);

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

impl Counter {
    pub fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Must only be called from the counter's one writer thread.
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed load + store, not fetch_add: one writer, so no increment can be lost, and no
        // data is published through the counter. loom: counters::sums_never_go_backwards,
        // counters::sums_are_exact_once_writers_are_quiet.
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one. Must only be called from the counter's one writer thread.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The current value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        // Relaxed: coherence makes successive reads non-decreasing; see the module docs.
        self.0.load(Ordering::Relaxed)
    }

    /// Adds one, and publishes with it everything the writer did before (for a reader that
    /// must see those writes once it sees this count: [`Stats::open_connections`]).
    ///
    /// A locked read-modify-write, unlike [`add`](Self::add): it runs once per connection, not
    /// per request, and with a load-then-store loom does not explore a reader that sees this
    /// count but stale earlier writes (measured: its model passed with the Release removed), so
    /// the Release would go unproven.
    #[inline]
    pub fn incr_release(&self) {
        // Release: pairs with `get_acquire`: a reader that sees this count also sees the
        // writer's earlier increments (of `accepted`, through the hand-off for a worker).
        // loom: counters::open_connections_never_see_a_close_before_its_accept, …_refusal_….
        self.0.fetch_add(1, Ordering::Release);
    }

    /// The current value, and everything its writer did before the increments it includes.
    #[inline]
    pub fn get_acquire(&self) -> u64 {
        // Acquire: pairs with `incr_release`. loom: counters::open_connections_never_see_a_close_before_its_accept, …_refusal_…
        self.0.load(Ordering::Acquire)
    }
}

/// A value with a single writer that goes up and down (file counts, timestamps).
pub struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(AtomicU64::new(0))
    }
}

impl Gauge {
    /// Sets the value. Must only be called from the gauge's one writer thread.
    pub fn set(&self, v: u64) {
        // Relaxed: one writer, and the value stands alone (no data is published through it).
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        // Relaxed: as in `set`.
        self.0.load(Ordering::Relaxed)
    }
}

/// Status codes counted per code, in `WorkerStats::status` order.
pub const STATUS_CODES: [u16; 22] = [
    200, 204, 206, 301, 302, 303, 304, 307, 308, 400, 404, 405, 408, 412, 413, 414, 416, 431, 500, 501, 503,
    505,
];

/// Index of `code` in [`STATUS_CODES`] (an unlisted code counts as 500): one load from
/// [`INDEX_OF`], not a search (every answered request passes here).
#[inline]
pub fn status_index(code: u16) -> usize {
    match INDEX_OF.get(usize::from(code.wrapping_sub(FIRST_CODE))) {
        Some(&i) => usize::from(i),
        None => INTERNAL_ERROR,
    }
}

/// The lowest code in [`STATUS_CODES`].
const FIRST_CODE: u16 = STATUS_CODES[0];

/// Codes from [`FIRST_CODE`] to the highest listed one.
const CODE_SPAN: usize = (STATUS_CODES[STATUS_CODES.len() - 1] - FIRST_CODE) as usize + 1;

/// [`status_index`] of every code from [`FIRST_CODE`] on, [`CODE_SPAN`] of them.
static INDEX_OF: [u8; CODE_SPAN] = {
    let mut table = [INTERNAL_ERROR as u8; CODE_SPAN];
    let mut i = 0;
    while i < STATUS_CODES.len() {
        table[(STATUS_CODES[i] - FIRST_CODE) as usize] = i as u8;
        i += 1;
    }
    table
};

/// Where 500 is in [`STATUS_CODES`].
const INTERNAL_ERROR: usize = 18;

/// Upper bounds of the request-duration histogram in nanoseconds: log-spaced (1–2.5–5 per
/// decade) from 5 µs to 10 s — a cached keep-alive response takes 7–13 µs here, so the low
/// buckets are where p50/p90/p99 live. Observations above the last bound land in `+Inf`.
pub const DURATION_BOUNDS_NS: [u64; 20] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The same bounds in seconds, as the exposition formats print them (`le="0.00005"`).
pub fn duration_bounds_seconds() -> impl Iterator<Item = f64> {
    DURATION_BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9)
}

/// A fixed-bucket histogram of single-writer counters: one bucket per bound plus `+Inf`.
pub struct Histogram {
    pub buckets: [Counter; DURATION_BOUNDS_NS.len() + 1],
    pub sum_ns: Counter,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| Counter::new()), sum_ns: Counter::new() }
    }
}

impl Histogram {
    /// Records one observation of `ns` nanoseconds (bucket `le` semantics: `ns <= bound`).
    #[inline]
    pub fn observe_ns(&self, ns: u64, times: u64) {
        let i = DURATION_BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].add(times);
        self.sum_ns.add(ns.saturating_mul(times));
    }
}

/// One worker's counters, padded to their own cache lines so that two workers counting at once
/// never write the same line (false sharing would turn every increment into a cache miss).
#[derive(Default)]
pub struct WorkerStats {
    pub requests: Counter,
    pub status: [Counter; STATUS_CODES.len()],
    pub response_bytes: Counter,
    pub duration: Histogram,
    /// Cache hits answered by the responder. The hits a scrape reports are this plus
    /// `rendered_hits`: a request is counted once, by whichever answered it.
    pub cache_hits: Counter,
    /// Cache hits answered whole from the worker's rendered responses (`serve::rendered`): one
    /// lookup and one chunk, no responder.
    pub rendered_hits: Counter,
    pub cache_misses: Counter,
    pub connections_accepted: Counter,
    /// Public connections this worker closed; incremented with [`Counter::incr_release`] (see
    /// [`Stats::open_connections`]).
    pub connections_closed: Counter,
    /// Access records the OTLP bridge's full queue turned away.
    pub telemetry_dropped: Counter,
    /// Access-log lines dropped because the writer thread had no room for them.
    pub access_log_dropped: Counter,
    /// Loop turns, each one wait for I/O: an `epoll_wait`, or (`--io uring`) an `io_uring_enter`
    /// that also submits the turn's operations. Requests ÷ turns is the batching.
    pub turns: Counter,
    /// `--io uring`: receives that found the provided-buffer ring empty (`ENOBUFS`) and were
    /// armed again — a worker short of receive buffers for its burst.
    pub recv_buffers_exhausted: Counter,
    /// `--io uring`: turns that found completions waiting in the kernel's overflow list (the
    /// completion ring was full; `IORING_FEAT_NODROP` kept them for the next enter).
    pub cq_overflows: Counter,
    /// `--io uring`: provided receive buffers the kernel handed over and the worker has not
    /// given back, as of the end of its last turn: 0 at rest; more is a leaked buffer.
    pub recv_buffers_held: Gauge,
}

impl WorkerStats {
    /// Public connections this worker holds now: adopted − closed. Both are this worker's own
    /// counters, and a close is counted (Release) after its adoption, so reading closes first
    /// (Acquire) never sees more closes than adoptions. loom:
    /// counters::a_workers_open_connections_never_wrap.
    pub fn open_connections(&self) -> u64 {
        let closed = self.connections_closed.get_acquire();
        self.connections_accepted.get().wrapping_sub(closed)
    }
}

/// Written by the acceptor thread only.
#[derive(Default)]
pub struct AcceptorStats {
    /// Public connections offered to the workers (counted before the push, so that no worker
    /// can close one before it is counted).
    pub accepted: Counter,
    /// Connections (public or admin) the full queue turned away with a 503.
    pub queue_full: Counter,
    /// Public connections counted in `accepted` that the full queue then turned away;
    /// incremented with [`Counter::incr_release`].
    pub public_refused: Counter,
    /// Public connections refused because `--max-connections` were open.
    pub over_limit: Counter,
    pub backoffs: Counter,
}

/// Written by the reload thread (and at start-up, before that thread exists).
#[derive(Default)]
pub struct ReloadStats {
    pub ok: Counter,
    pub failed: Counter,
    pub files: Gauge,
    pub bytes: Gauge,
    pub last_unix_ms: Gauge,
    /// The live snapshot's [`Composition`](crate::cache::Composition).
    pub identity_bytes: Gauge,
    pub compressible_bytes: Gauge,
    pub compressed_bytes: Gauge,
    pub disk_files: Gauge,
    /// Identity bodies sent from their own file's page cache (`--large-bodies`), and their
    /// bytes: not in `bytes`, which counts what the snapshot holds.
    pub page_cache_files: Gauge,
    pub page_cache_bytes: Gauge,
    /// The latest load: its [`Trigger`](crate::cache::reload::Trigger) code, and how long its
    /// phase 1 (identity snapshot served) and phase 2 (every variant built; 0 until then) took.
    pub last_trigger: Gauge,
    pub identity_us: Gauge,
    pub variants_us: Gauge,
    /// Files of the live snapshot whose variants are still being built.
    pub pending_files: Gauge,
    /// Files (and their bytes, variants included) that loads took from the snapshot before
    /// instead of placing or compressing them again…
    pub reused_files: Counter,
    pub reused_bytes: Counter,
    /// …and bytes they placed anew (changed bodies, shipped siblings, compressed variants).
    pub built_bytes: Counter,
    /// Contents compressed in the background.
    pub compressed_files: Counter,
}

/// Written by the OTLP metric exporter, which the SDK's periodic-reader thread alone calls.
#[derive(Default)]
pub struct ExportStats {
    pub metric_exports_ok: Counter,
    pub metric_exports_failed: Counter,
}

/// Written by the access-log writer thread only.
#[derive(Default)]
pub struct LogStats {
    /// Lines standard output refused (EPIPE, EBADF).
    pub lines_dropped: Counter,
}

/// All counters: per worker, the acceptor's, the reload thread's, the OTLP exporter's and the
/// access-log writer's.
pub struct Stats {
    pub workers: Box<[CachePadded<WorkerStats>]>,
    pub acceptor: CachePadded<AcceptorStats>,
    pub reload: CachePadded<ReloadStats>,
    pub export: CachePadded<ExportStats>,
    pub log: CachePadded<LogStats>,
}

impl Stats {
    pub fn new(workers: usize) -> Self {
        Stats {
            workers: (0..workers).map(|_| CachePadded::new(WorkerStats::default())).collect(),
            acceptor: CachePadded::new(AcceptorStats::default()),
            reload: CachePadded::new(ReloadStats::default()),
            export: CachePadded::new(ExportStats::default()),
            log: CachePadded::new(LogStats::default()),
        }
    }

    /// Public connections open now: accepted − refused by a full queue − closed by a worker.
    ///
    /// Exact up to the moment it is read, and never more than the true count nor below zero:
    /// every close and every refusal is counted (Release) after its connection was counted in
    /// `accepted` (by the acceptor, before the push whose Release the worker's pop acquires), and
    /// they are read first (Acquire), so `accepted`, read last, includes every connection they
    /// count. Subtracting in another order, or counting `accepted` after the push, let a
    /// worker's close be seen before its accept: the gauge wrapped (hidden by `saturating_sub`
    /// as 0) while connections were open. loom: counters::open_connections_never_see_a_close_before_its_accept, …_refusal_…
    pub fn open_connections(&self) -> u64 {
        let closed =
            self.workers.iter().map(|w| w.connections_closed.get_acquire()).fold(0, u64::wrapping_add);
        let refused = self.acceptor.public_refused.get_acquire();
        let accepted = self.acceptor.accepted.get();
        accepted.wrapping_sub(refused).wrapping_sub(closed)
    }

    /// Sum of one counter over every worker.
    pub fn sum(&self, field: impl Fn(&WorkerStats) -> &Counter) -> u64 {
        self.workers.iter().map(|w| field(w).get()).fold(0, u64::wrapping_add)
    }
}

#[cfg(all(test, not(atomserve_loom)))]
mod tests {
    use super::*;

    /// Regression: 412 was missing from the table, so every Precondition Failed was counted
    /// as a 500 in /metrics, /stats and OTLP.
    #[test]
    fn every_status_atomserve_sends_has_its_own_counter() {
        use crate::http::response::Status::*;
        let all = [
            Ok,
            NoContent,
            PartialContent,
            MovedPermanently,
            Found,
            SeeOther,
            NotModified,
            TemporaryRedirect,
            PermanentRedirect,
            BadRequest,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            PreconditionFailed,
            PayloadTooLarge,
            UriTooLong,
            RangeNotSatisfiable,
            HeaderFieldsTooLarge,
            InternalError,
            NotImplemented,
            ServiceUnavailable,
            VersionNotSupported,
        ];
        assert_eq!(all.len(), STATUS_CODES.len());
        for status in all {
            assert_eq!(STATUS_CODES[status_index(status.code())], status.code(), "{status:?}");
        }
        assert_eq!(STATUS_CODES[status_index(599)], 500, "an unlisted code counts as 500");
        // The table says what a search of the list says, for every code.
        let search = |code| STATUS_CODES.iter().position(|&c| c == code).unwrap_or(INTERNAL_ERROR);
        for code in 0..=u16::MAX {
            assert_eq!(status_index(code), search(code), "{code}");
        }
    }
}
