//! The live snapshot behind an atomic pointer, reclaimed with quiescent-state-based
//! reclamation (QSBR).
//!
//! # What it guarantees
//! - Readers (the workers) load the current snapshot with one `Acquire` load: no lock, no
//!   read-modify-write, no reference count on the hot path.
//! - A writer (the reload thread) publishes a new snapshot with one swap; readers never see a
//!   half-built one (the swap's `Release` pairs with their `Acquire`).
//! - A replaced snapshot is freed only after every worker has passed a *quiescent point* — a
//!   moment at which it holds no reference into any snapshot — or is *offline* (asleep in
//!   `epoll_wait`, holding nothing). Sleeping workers therefore never hold reclamation back.
//!
//! # The protocol
//! A global `epoch` counts publications. Each worker owns one cache-padded slot holding the
//! epoch it last saw at a quiescent point, or `OFFLINE`.
//!
//! | who | operation | ordering | pairs with |
//! |---|---|---|---|
//! | writer `publish` | `current.swap(new)` | Release | reader's `current` Acquire load: the snapshot's contents are visible |
//! | writer `publish` | `r = epoch.fetch_add(1) + 1` | Release | reader's epoch Acquire load: seeing `r` implies seeing the swap |
//! | writer `publish` | `fence` | SeqCst | reader's fence in `online` (Dekker) |
//! | writer `reclaim` | `slot.load()` for each worker | Acquire | reader's Release slot stores: its uses of the old snapshot happen before the free |
//! | reader `quiescent` | `slot.store(epoch.load())` | Acquire load, Release store | see above |
//! | reader `offline` | `slot.store(OFFLINE)` | Release | writer's Acquire slot load |
//! | reader `online` | `slot.store(epoch.load())`, `fence` | Relaxed load, Release store, SeqCst fence | writer's fence (Dekker) and slot load; the fence also acquires the epoch read |
//! | reader `current` | `current.load()` | Acquire | writer's swap |
//!
//! A snapshot retired at epoch `r` is freed once every slot is `OFFLINE` or `≥ r`. A slot `≥ r`
//! was stored after its worker read an epoch `≥ r`, which (Acquire/Release on `epoch`) means the
//! worker's later `current` loads see the new pointer; and all its earlier uses of the old one
//! happen before the writer's Acquire load of the slot. The one gap is a worker coming *online*
//! while the writer reads its slot as `OFFLINE`: the SeqCst fences on both sides (a Dekker pair)
//! ensure that either the writer sees the new slot value or the worker's first `current` load
//! sees the new pointer.
//!
//! Responses still being written when a snapshot is retired keep their bytes alive themselves:
//! bodies are `Arc<[u8]>`, and a connection clones the ones it still needs only when a write is
//! partial (`OutQueue::turn`), so the common path takes no reference count.
//!
//! Model-checked by `loom-tests/tests/snapshot.rs`; explained in `docs/concurrency.md`.

use std::marker::PhantomData;
use std::ops::Deref;

use crate::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crate::sync::{CachePadded, Mutex};

/// A slot value meaning "asleep, holding no reference".
const OFFLINE: u64 = u64::MAX;

/// A published value and, under loom, a tracked cell that stands for its memory.
struct Node<T> {
    value: T,
    /// Under loom, "freeing" a node writes this cell instead of deallocating: loom then reports
    /// any read of the node that is not ordered before the free as a data race, and the memory
    /// stays valid so the report is clean rather than undefined behaviour.
    #[cfg(atomserve_loom)]
    freed: crate::sync::TrackedCell<bool>,
}

/// A retired node and the epoch at which it was replaced.
struct Retired<T> {
    epoch: u64,
    node: *mut Node<T>,
}

/// The live value, its readers' epoch slots, and the retired values awaiting reclamation.
///
/// A retired value is freed only once every reader has passed a quiescent point (or is
/// offline) since it was replaced:
///
/// ```
/// use atomserve::cache::SnapshotCell;
/// let cell = SnapshotCell::new(String::from("v1"), 1);
/// let mut reader = cell.reader(0);
/// reader.online();
/// {
///     let guard = reader.current();
///     cell.publish(String::from("v2"));
///     assert_eq!(*guard, "v1", "a reader keeps what it read until its quiescent point");
///     assert_eq!(cell.reclaim(), 1, "v1 is still being read: one value left to free");
/// } // the guard is gone; `quiescent` needs `&mut reader`, so it could not be called before
/// reader.quiescent();
/// assert_eq!(cell.reclaim(), 0, "v1 freed");
/// assert_eq!(*reader.current(), "v2");
/// reader.offline();
/// cell.publish(String::from("v3"));
/// assert_eq!(cell.reclaim(), 0, "an offline reader holds nothing back");
/// ```
pub struct SnapshotCell<T> {
    current: AtomicPtr<Node<T>>,
    epoch: AtomicU64,
    slots: Box<[CachePadded<AtomicU64>]>,
    /// Whether slot `i` has its [`Reader`]: a slot has one writer, or the protocol means nothing.
    claimed: Box<[AtomicBool]>,
    /// Only the writer side touches this (publish and reclaim); readers never lock it.
    retired: Mutex<Vec<Retired<T>>>,
}

// SAFETY: the cell hands out `&T` to several threads (needs T: Sync) and drops T on the writer's
// thread (needs T: Send); the raw pointers are owned by the cell and freed by the protocol above.
unsafe impl<T: Send + Sync> Sync for SnapshotCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for SnapshotCell<T> {}

impl<T> SnapshotCell<T> {
    /// A cell holding `value`, for `readers` workers (all starting offline).
    pub fn new(value: T, readers: usize) -> Self {
        SnapshotCell {
            current: AtomicPtr::new(Node::alloc(value)),
            epoch: AtomicU64::new(0),
            slots: (0..readers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect(),
            claimed: (0..readers).map(|_| AtomicBool::new(false)).collect(),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The handle worker `id` reads through.
    ///
    /// # Panics
    /// If `id` is out of range, or slot `id` already has a live `Reader`: two readers writing one
    /// slot could announce a quiescent point for each other and let a snapshot be freed under
    /// a guard. (The slot is free again once that `Reader` is dropped.)
    ///
    /// ```
    /// use atomserve::cache::SnapshotCell;
    /// let cell = SnapshotCell::new("v1", 1);
    /// let mut reader = cell.reader(0);
    /// reader.online();
    /// assert_eq!(*reader.current(), "v1");
    /// let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cell.reader(0)));
    /// assert!(second.is_err(), "one Reader per slot");
    /// ```
    pub fn reader(&self, id: usize) -> Reader<'_, T> {
        assert!(id < self.slots.len(), "reader id out of range");
        // Relaxed: the swap's atomicity alone makes the claim exclusive; no data is handed over
        // through it (the slot's own Release/Acquire orders what the protocol needs).
        // Not an ordering site a loom model needs; loom runs it in every snapshot model.
        let taken = self.claimed[id].swap(true, Ordering::Relaxed);
        assert!(!taken, "snapshot slot {id} already has a Reader");
        Reader { cell: self, id, _not_sync: PhantomData }
    }

    /// Replaces the live value; the old one is retired and freed by a later [`reclaim`](Self::reclaim).
    /// Returns the epoch it was retired at.
    pub fn publish(&self, value: T) -> u64 {
        let new = Node::alloc(value);
        // Release: the new node's contents happen before any reader's Acquire load that sees it.
        // Acquire is not needed for `old`: this thread is its only remaining writer, and it was
        // published by a writer whose Release this thread's earlier publish already saw, or by new().
        // loom: snapshot::reader_never_sees_a_half_built_snapshot.
        let old = self.current.swap(new, Ordering::Release);
        // Release: a reader that reads this epoch (Acquire) also sees the swap above.
        // loom: snapshot::reader_never_sees_a_freed_snapshot.
        let epoch = self.epoch.fetch_add(1, Ordering::Release) + 1;
        // SeqCst fence: the writer half of the Dekker pair with `Reader::online` (see module docs).
        // loom: snapshot::waking_reader_never_sees_a_freed_snapshot.
        fence(Ordering::SeqCst);
        self.lock_retired().push(Retired { epoch, node: old });
        epoch
    }

    /// Frees every retired value that no reader can still hold. Returns how many remain.
    ///
    /// The values are freed after the lock is released: a value's drop may take long (a whole
    /// snapshot) or panic, and neither may happen with the list half-edited. A drop that panics
    /// leaks the values after it in this batch; none is freed twice.
    ///
    /// ```
    /// use atomserve::cache::SnapshotCell;
    /// let cell = SnapshotCell::new(String::from("v1"), 1);
    /// let mut reader = cell.reader(0);
    /// reader.online();
    /// cell.publish(String::from("v2"));
    /// assert_eq!(cell.reclaim(), 1, "v1: the reader has not passed a quiescent point");
    /// reader.quiescent();
    /// assert_eq!(cell.reclaim(), 0);
    /// assert_eq!(*reader.current(), "v2");
    /// ```
    pub fn reclaim(&self) -> usize {
        let (free, remaining) = {
            let mut retired = self.lock_retired();
            // The oldest epoch any online reader may still be in.
            let oldest = self
                .slots
                .iter()
                // Acquire: pairs with the readers' Release slot stores, so their uses of a retired
                // node happen before we free it. loom: snapshot::reader_never_sees_a_freed_snapshot.
                .map(|slot| slot.load(Ordering::Acquire))
                .min()
                .unwrap_or(OFFLINE);
            let (keep, free): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|r| oldest != OFFLINE && oldest < r.epoch);
            *retired = keep;
            (free, retired.len())
        };
        for r in free {
            // SAFETY: every reader is offline or has passed a quiescent point after epoch
            // `r.epoch`, so none holds a reference to this node (module docs); it was created by
            // `Node::alloc`, and it left the retired list above, so it is freed exactly once.
            unsafe { Node::free(r.node) };
        }
        remaining
    }

    /// Retired values not yet freed.
    pub fn pending(&self) -> usize {
        self.lock_retired().len()
    }

    /// The number of publications so far (the current generation).
    pub fn generation(&self) -> u64 {
        // Relaxed: an informational read for metrics; nothing is published through it.
        self.epoch.load(Ordering::Relaxed)
    }

    fn lock_retired(&self) -> crate::sync::MutexGuard<'_, Vec<Retired<T>>> {
        // A poisoned lock only means a reclaim panicked; the list itself is still consistent.
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Drop for SnapshotCell<T> {
    fn drop(&mut self) {
        // No reader can exist any more (they borrow the cell), so everything can go.
        let retired = std::mem::take(&mut *self.lock_retired());
        for r in retired {
            // SAFETY: no readers remain; each retired node is freed once.
            unsafe { Node::free(r.node) };
        }
        // Relaxed: `&mut self` means no other thread can touch the cell.
        let current = self.current.load(Ordering::Relaxed);
        // SAFETY: as above; the live node is freed once.
        unsafe { Node::free(current) };
    }
}

impl<T> Node<T> {
    fn alloc(value: T) -> *mut Node<T> {
        #[cfg(atomserve_loom)]
        let node = Node { value, freed: crate::sync::TrackedCell::new(false) };
        #[cfg(not(atomserve_loom))]
        let node = Node { value };
        Box::into_raw(Box::new(node))
    }

    /// # Safety
    /// `node` came from `alloc`, is freed once, and no reader still holds it.
    unsafe fn free(node: *mut Node<T>) {
        #[cfg(not(atomserve_loom))]
        // SAFETY: per the contract, the box is ours and unaliased.
        drop(unsafe { Box::from_raw(node) });
        #[cfg(atomserve_loom)]
        // SAFETY: the node stays allocated under loom (leaked on purpose); the tracked write lets
        // loom catch a reader whose access is not ordered before this "free".
        unsafe {
            (*node).freed.with_mut(|f| *f = true)
        };
    }
}

/// One worker's view of the cell.
///
/// The compiler keeps the protocol's two rules (docs/rust.md, "Types that carry rules"). A
/// reader is one thread's: it may move to its worker (`Send`) but not be shared (`!Sync`, from
/// the `PhantomData<*const ()>` field), so two threads cannot announce quiescence for one slot:
///
/// ```compile_fail,E0277
/// use atomserve::cache::SnapshotCell;
/// let cell = SnapshotCell::new(1, 1);
/// let reader = cell.reader(0);
/// std::thread::scope(|s| {
///     s.spawn(|| assert_eq!(*reader.current(), 1)); // `&Reader` crossing threads: `Reader: Sync`?
/// });
/// ```
///
/// And a [`Guard`] cannot live across the reader's quiescent point, which takes `&mut self`:
///
/// ```compile_fail,E0502
/// use atomserve::cache::SnapshotCell;
/// let cell = SnapshotCell::new(1, 1);
/// let mut reader = cell.reader(0);
/// reader.online();
/// let guard = reader.current();
/// reader.quiescent(); // "cannot borrow `reader` as mutable because it is also borrowed"
/// assert_eq!(*guard, 1);
/// ```
pub struct Reader<'c, T> {
    cell: &'c SnapshotCell<T>,
    id: usize,
    /// A reader belongs to one thread: its slot has a single writer.
    _not_sync: PhantomData<*const ()>,
}

// SAFETY: a Reader may move to its worker thread once; it is not Sync (one thread uses it).
unsafe impl<T: Send + Sync> Send for Reader<'_, T> {}

impl<T> Reader<'_, T> {
    /// A quiescent point: this worker holds no reference into any snapshot. Takes `&mut self`
    /// so that no [`Guard`] from before can survive it.
    pub fn quiescent(&mut self) {
        // Acquire: seeing epoch r implies seeing the swap that preceded it (its later `current`
        // loads return the new snapshot). loom: snapshot::reader_never_sees_a_freed_snapshot.
        let epoch = self.cell.epoch.load(Ordering::Acquire);
        // Release: this worker's earlier uses of retired snapshots happen before the writer's
        // Acquire load of the slot. loom: snapshot::reader_never_sees_a_freed_snapshot.
        self.cell.slots[self.id].store(epoch, Ordering::Release);
    }

    /// About to sleep: holds no reference, and must not hold reclamation back while asleep.
    pub fn offline(&mut self) {
        // Release: as in `quiescent`. loom: snapshot::offline_reader_does_not_hold_back_reclamation.
        self.cell.slots[self.id].store(OFFLINE, Ordering::Release);
    }

    /// Awake again: announce an epoch before loading any snapshot.
    pub fn online(&mut self) {
        // Relaxed: the SeqCst fence below also acts as an acquire fence for this load (a fence
        // after a load that read a Release store synchronises with it), so seeing epoch r still
        // implies seeing the swap before it. make loom-mutants confirms Acquire is not needed here.
        let epoch = self.cell.epoch.load(Ordering::Relaxed);
        // Release: the writer may read this value without ever seeing our earlier OFFLINE store
        // (C++20 release sequences do not pass through a later Relaxed store), so this store must
        // itself order our reads from before the sleep before the writer's free. The fence below
        // orders it before our next `current` load.
        // loom: snapshot::reader_that_sleeps_and_wakes_never_sees_a_freed_snapshot.
        self.cell.slots[self.id].store(epoch, Ordering::Release);
        // SeqCst fence: the reader half of the Dekker pair with `publish` — either the writer
        // sees this slot, or our next `current` load sees its new pointer.
        // loom: snapshot::waking_reader_never_sees_a_freed_snapshot.
        fence(Ordering::SeqCst);
    }

    /// The live value, valid until this reader's next quiescent point.
    ///
    /// # Panics
    /// If the reader is offline ([`offline`](Self::offline) without [`online`](Self::online)
    /// since): the writer may be freeing any snapshot it could load.
    pub fn current(&self) -> Guard<'_, T> {
        // Relaxed: this thread is the slot's only writer, so it reads its own last store.
        // Not an ordering site; a misuse check.
        let announced = self.cell.slots[self.id].load(Ordering::Relaxed);
        assert!(announced != OFFLINE, "Reader::current on an offline reader");
        // Acquire: pairs with the Release swap in `publish`: the snapshot is fully built.
        // loom: snapshot::reader_never_sees_a_half_built_snapshot.
        let node = self.cell.current.load(Ordering::Acquire);
        debug_assert!(!node.is_null());
        Guard { node, _reader: PhantomData }
    }
}

impl<T> Drop for Reader<'_, T> {
    fn drop(&mut self) {
        self.offline(); // a finished worker never holds reclamation back
                        // Relaxed: see `SnapshotCell::reader`; the slot may be claimed again.
        self.cell.claimed[self.id].store(false, Ordering::Relaxed);
    }
}

/// A reference to the live value, borrowed from a [`Reader`] until its next quiescent point.
pub struct Guard<'r, T> {
    node: *const Node<T>,
    _reader: PhantomData<&'r T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Under loom every access is recorded, so one not ordered before a free is reported.
        #[cfg(atomserve_loom)]
        // SAFETY: the node is never deallocated under loom; reading the flag is a tracked read.
        unsafe {
            (*self.node).freed.with(|f| assert!(!*f, "read a freed snapshot"))
        };
        // SAFETY: the node is live: it was current when loaded, and the QSBR protocol frees it
        // only after this reader's next quiescent point, which needs `&mut Reader` and so ends
        // this guard's borrow first.
        unsafe { &(*self.node).value }
    }
}

#[cfg(all(test, not(atomserve_loom)))]
mod tests {
    use super::*;
    use crate::sync::atomic::AtomicUsize;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    #[test]
    #[should_panic(expected = "already has a Reader")]
    fn a_second_reader_for_a_slot_panics() {
        let cell = SnapshotCell::new(1u32, 2);
        let _first = cell.reader(0);
        let _other_slot = cell.reader(1);
        let _second = cell.reader(0);
    }

    #[test]
    fn a_slot_is_free_again_once_its_reader_is_dropped() {
        let cell = SnapshotCell::new(1u32, 1);
        drop(cell.reader(0));
        let mut again = cell.reader(0);
        again.online();
        assert_eq!(*again.current(), 1);
    }

    /// Regression: `current()` on an offline reader loaded a node the writer could be freeing.
    #[test]
    #[should_panic(expected = "offline reader")]
    fn current_on_an_offline_reader_panics() {
        let cell = SnapshotCell::new(1u32, 1);
        let reader = cell.reader(0); // readers start offline
        let _ = *reader.current();
    }

    /// Drops once normally; its first drop panics.
    struct PanicsOnce(Arc<AtomicUsize>);

    impl Drop for PanicsOnce {
        fn drop(&mut self) {
            // Relaxed: a test counter on one thread.
            if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("the first drop panics");
            }
        }
    }

    /// Regression: `reclaim` freed nodes inside `Vec::retain`'s closure; when a value's drop
    /// panicked, `retain` kept the element whose box was already freed, and the next `reclaim`
    /// (or the cell's drop) freed it again.
    #[test]
    fn a_drop_that_panics_in_reclaim_frees_nothing_twice() {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = SnapshotCell::new(PanicsOnce(drops.clone()), 1);
        cell.publish(PanicsOnce(drops.clone()));
        cell.publish(PanicsOnce(drops.clone()));
        assert!(catch_unwind(AssertUnwindSafe(|| cell.reclaim())).is_err());
        cell.reclaim();
        drop(cell);
        // Three values, each dropped once: the first (whose drop panicked), the second (leaked
        // when the first's panic ended its batch — a leak, never a second free) or dropped,
        // and the live third.
        let n = drops.load(Ordering::Relaxed);
        assert!(n == 2 || n == 3, "{n} drops of 3 values");
    }
}
