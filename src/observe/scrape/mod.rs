//! Telemetry read from the atomic counters of [`crate::stats`], only at scrape time: a Prometheus
//! text exposition (`/metrics`), a JSON document for the dashboard (`/stats`) and the standard
//! process metrics. Nothing here runs on the request path.

pub mod json;
pub mod process;
pub mod prometheus;

use std::time::SystemTime;

use crate::cache::{Snapshot, SnapshotCell};
use crate::stats::Stats;
use crate::sync::Arc;

/// Everything a scrape reads, shared by all workers (who serve the admin listener).
pub struct Sources {
    pub stats: Arc<Stats>,
    /// The hand-off queue, for its depth.
    pub queue: Arc<dyn QueueDepth + Send + Sync>,
    pub cache: Arc<SnapshotCell<Snapshot>>,
    /// The CPU each worker is pinned to, if any.
    pub cpus: Vec<Option<usize>>,
    pub started: SystemTime,
}

/// How many accepted connections wait in the hand-off queue. A trait, so that observing reads
/// the serving side's queue without depending on it (`crate::endpoint` implements it).
pub trait QueueDepth {
    fn queued(&self) -> usize;
}

#[cfg(test)]
impl Sources {
    /// The sources of a one-worker server with an empty queue and an empty snapshot cell, for
    /// unit tests that drive the responder or a connection by hand.
    pub(crate) fn for_tests() -> Sources {
        struct NoQueue;
        impl QueueDepth for NoQueue {
            fn queued(&self) -> usize {
                0
            }
        }
        Sources {
            stats: Arc::new(Stats::new(1)),
            queue: Arc::new(NoQueue),
            cache: Arc::new(SnapshotCell::new(Snapshot::new(false, "no-cache", Default::default()), 1)),
            cpus: vec![None],
            started: SystemTime::now(),
        }
    }
}
