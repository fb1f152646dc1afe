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
//! Nothing else hangs on a counter's value, so no ordering stronger than `Relaxed` is needed.
//! Model-checked by `loom-tests/tests/counters.rs`; measured against a shared `fetch_add` in
//! `benches/sync.rs`.

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::CachePadded;

/// A monotonic counter with a single writer.
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
}

/// One worker's counters, padded to their own cache lines so that two workers counting at once
/// never write the same line (false sharing would turn every increment into a cache miss).
#[derive(Default)]
pub struct WorkerStats {
    pub requests: Counter,
    pub response_bytes: Counter,
    pub connections_accepted: Counter,
    pub connections_closed: Counter,
}

/// All workers' counters, indexed by worker id.
pub struct Stats {
    pub workers: Box<[CachePadded<WorkerStats>]>,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
}

impl Stats {
    pub fn new(workers: usize) -> Self {
        Stats {
            workers: (0..workers).map(|_| CachePadded::new(WorkerStats::default())).collect(),
            reloads_ok: Counter::new(),
            reloads_failed: Counter::new(),
        }
    }

    /// Sum of one counter over every worker.
    pub fn sum(&self, field: impl Fn(&WorkerStats) -> &Counter) -> u64 {
        self.workers.iter().map(|w| field(w).get()).fold(0, u64::wrapping_add)
    }
}
