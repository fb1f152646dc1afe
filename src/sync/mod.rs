//! The sync shim: the only module that names `std::sync::atomic`, `std::thread` or `loom`.
//!
//! Production builds get the standard library's types. Under `--cfg atomserve_loom` the same names
//! resolve to loom's instrumented versions, so the loom models in `loom-tests/` run atomserve's
//! real protocol code and explore its interleavings up to a preemption bound (3), with loom's
//! model of weak memory — which treats SeqCst accesses as AcqRel, produces no load-buffering
//! outcome, and misses some stale reads (`docs/concurrency.md` says exactly what the models
//! prove). Sizes shrink under loom so that the state space stays small.
//!
//! [`BoundedQueue`] is the fd hand-off queue: crossbeam's lock-free `ArrayQueue` normally. Under
//! loom it is `loom_queue::BoundedQueue`, *not* crossbeam's algorithm: a loom mutex around a
//! `VecDeque` for the storage, plus `head`/`tail` atomics moved and read with `ArrayQueue`'s
//! orderings, so that `is_empty` takes no lock. A plain `Mutex<VecDeque>` would order everything
//! it touches and hide the weak-memory behaviour the hand-off's fences exist for (with it,
//! removing those fences still passes every model); crossbeam's own algorithm spins on slot
//! stamps and multiplies loom's branches beyond reach (`loom_queue.rs` says which behaviour it
//! keeps).

#[cfg(not(atomserve_loom))]
pub use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(atomserve_loom)]
pub use loom::sync::{Arc, Mutex, MutexGuard};

/// Atomics: std's, or loom's under the loom cfg.
pub mod atomic {
    #[cfg(not(atomserve_loom))]
    pub use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

    #[cfg(atomserve_loom)]
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
}

/// Threads: std's, or loom's under the loom cfg.
pub mod thread {
    #[cfg(not(atomserve_loom))]
    pub use std::thread::{available_parallelism, scope, sleep, spawn, yield_now, Builder, JoinHandle};

    #[cfg(atomserve_loom)]
    pub use loom::thread::{spawn, yield_now, JoinHandle};
}

/// Atomics that stay std's even under loom: the `static`s shared with signal handlers, and the
/// memory shared with the kernel (io_uring's buffer-ring tail, `sys/uring.rs`). A signal handler
/// or the kernel is not a thread loom can schedule, so there is nothing for loom to model there.
pub mod os_atomic {
    pub use std::sync::atomic::{AtomicI32, AtomicU16, AtomicU32, Ordering};
}

/// Pads and aligns a value to the cache-line size so that two cores writing neighbouring values
/// do not bounce one line between them (false sharing).
pub use crossbeam_utils::CachePadded;

/// Under loom: a cell whose every access loom records, so a read not ordered before a write is
/// reported as a data race (the snapshot cell uses it to stand for a node's memory).
#[cfg(atomserve_loom)]
pub use loom::cell::UnsafeCell as TrackedCell;

/// A bounded multi-producer multi-consumer queue: `crossbeam_queue::ArrayQueue`, or under loom
/// a model of it (`loom_queue.rs`). A full queue gives the value back instead of blocking.
///
/// ```
/// use atomserve::sync::BoundedQueue;
/// let q = BoundedQueue::new(2);
/// assert_eq!(q.push(1), Ok(()));
/// assert_eq!(q.push(2), Ok(()));
/// assert_eq!(q.push(3), Err(3), "full: the caller keeps the value (the acceptor answers 503)");
/// assert_eq!((q.len(), q.capacity()), (2, 2));
/// assert_eq!(q.pop(), Some(1), "first in, first out");
/// ```
#[cfg(not(atomserve_loom))]
pub struct BoundedQueue<T>(crossbeam_queue::ArrayQueue<T>);

#[cfg(not(atomserve_loom))]
impl<T> BoundedQueue<T> {
    pub fn new(capacity: usize) -> Self {
        BoundedQueue(crossbeam_queue::ArrayQueue::new(capacity.max(1)))
    }
    /// Adds `value`, or gives it back when the queue is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    pub fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

/// Under loom: a loom-instrumented bounded MPMC queue with `ArrayQueue`'s algorithm and
/// memory orderings (see [`loom_queue`]).
#[cfg(atomserve_loom)]
pub use loom_queue::BoundedQueue;

#[cfg(atomserve_loom)]
mod loom_queue;
