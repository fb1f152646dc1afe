//! Under loom only: a bounded MPMC queue that keeps the memory behaviour `crossbeam_queue::ArrayQueue`
//! shows to the hand-off protocol, with a state space loom can explore.
//!
//! What the hand-off (`src/serve/handoff.rs`) relies on from `ArrayQueue`:
//! - `push` publishes by moving `tail` with a SeqCst read-modify-write (a CAS in crossbeam);
//! - `is_empty` compares SeqCst loads of `head` and `tail`, taking no lock;
//! - a pushed value is handed to exactly one `pop`, and a `pop` after the push completed finds it.
//!
//! This stand-in keeps the first two exactly — `head` and `tail` are loom atomics moved and read
//! with the same orderings — and gets the third from a loom mutex around the storage. Loom treats
//! SeqCst accesses as Acquire/Release and models only fences as sequentially consistent, so the
//! `is_empty` loads can be reordered around the idle-set operations just as on weak hardware, and
//! a hand-off model without its SeqCst fences fails (`make loom-mutants`). Because `is_empty`
//! takes no lock, the mutex cannot hide that.
//!
//! Why not crossbeam's algorithm verbatim: its spin-waits on a slot's stamp (while another thread
//! is between claiming and publishing the slot) multiply loom's branches until two workers and one
//! item no longer finish. Why not a plain `Mutex<VecDeque>`: `is_empty` under the lock is ordered
//! with every push, which hides exactly the weak-memory behaviour the fences exist for — with it,
//! removing the fences still passes every model. Not checked here: crossbeam's own code, which
//! crossbeam tests (including under its own model checks).

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Mutex;

/// A bounded MPMC queue (loom build).
pub struct BoundedQueue<T> {
    items: Mutex<VecDeque<T>>,
    /// Values ever pushed (crossbeam: the tail position).
    tail: AtomicUsize,
    /// Values ever popped (crossbeam: the head position).
    head: AtomicUsize,
    capacity: usize,
}

impl<T> BoundedQueue<T> {
    /// Capacity is clamped to 1..=4 under loom to keep the state space small.
    pub fn new(capacity: usize) -> Self {
        BoundedQueue {
            items: Mutex::new(VecDeque::new()),
            tail: AtomicUsize::new(0),
            head: AtomicUsize::new(0),
            capacity: capacity.clamp(1, 4),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `value`, or gives it back when the queue is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut items = self.items.lock().unwrap();
        if items.len() >= self.capacity {
            return Err(value);
        }
        items.push_back(value);
        // SeqCst RMW, as crossbeam's CAS on `tail`: the publication `is_empty` observes.
        self.tail.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Takes the oldest value, if any.
    pub fn pop(&self) -> Option<T> {
        let mut items = self.items.lock().unwrap();
        let value = items.pop_front()?;
        // SeqCst RMW, as crossbeam's CAS on `head`.
        self.head.fetch_add(1, Ordering::SeqCst);
        Some(value)
    }

    /// Lock-free, as crossbeam's: SeqCst loads of `head` then `tail`.
    pub fn is_empty(&self) -> bool {
        // SeqCst (loom: Acquire), as crossbeam's: the hand-off's Dekker fences order these.
        let head = self.head.load(Ordering::SeqCst);
        // SeqCst: as above.
        let tail = self.tail.load(Ordering::SeqCst);
        head == tail
    }

    pub fn len(&self) -> usize {
        // SeqCst, as crossbeam's `len`: a metrics snapshot, nothing hangs on it.
        let tail = self.tail.load(Ordering::SeqCst);
        // SeqCst: as above.
        let head = self.head.load(Ordering::SeqCst);
        tail.saturating_sub(head)
    }
}
