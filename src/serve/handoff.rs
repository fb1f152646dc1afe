//! The hand-off from the acceptor to the workers: a bounded lock-free queue of accepted
//! connections plus an idle set that guarantees no wake-up is lost.
//!
//! # The protocol
//!
//! A worker that has nothing to do wants to sleep in `epoll_wait`; the acceptor that has just
//! queued a connection wants to wake exactly one sleeping worker, and none if all are busy (a busy
//! worker looks at the queue on its next loop turn anyway). The danger is the classic lost
//! wake-up: the worker checks the queue (empty), the acceptor pushes and checks the idle set
//! (worker not in it yet), the worker then marks itself idle and sleeps with a connection waiting.
//!
//! The two sides form a Dekker pattern, each writing its own flag and then reading the other's,
//! with a `SeqCst` fence between the write and the read:
//!
//! | worker ([`Handoff::prepare_sleep`]) | acceptor ([`Handoff::push`]) |
//! |---|---|
//! | set my bit in the idle set | push the item into the queue |
//! | `fence(SeqCst)` | `fence(SeqCst)` |
//! | queue empty? then sleep, else take my bit back | claim one set bit, ring that worker's bell |
//!
//! The fences are totally ordered. If the worker's fence comes first, the acceptor's read of the
//! idle set sees the bit; otherwise the worker's read of the queue sees the item. Either way the
//! item is noticed. A claimed bit is cleared by the acceptor with `fetch_and`, so two pushes never
//! wake the same worker twice while another idles. The bell is an eventfd whose counter persists,
//! so ringing before the worker actually blocks is not lost either.
//!
//! # Sharing by load
//!
//! Which worker a push rings decides nothing by itself: a worker that is awake takes what is
//! queued. So one worker could own most connections while another idles (measured: 65 of 65
//! in some bursts). Each worker therefore publishes how many connections it owns
//! ([`Handoff::publish_load`]), and [`Handoff::take`] gives the next item to the asking worker
//! only when it owns no more than the lightest other worker plus a quarter (at least one).
//! Otherwise it *hands* the item on. It sets the lighter worker's `handed` flag and rings that
//! worker's bell. The worker that handed may then sleep although the queue is not empty
//! (`prepare_sleep(_, true)`): the rung worker will look at the queue, and it pops, hands on
//! again with another ring, or finds the queue empty. So items still cannot be lost or left
//! waiting. The flag makes the rung worker's next `take` of a non-empty queue pop whatever its
//! load, so that stale loads cannot bounce an item between workers. Loads are plain counts read
//! Relaxed: a stale one makes a worse choice, never a lost item. A push starts its search for
//! an idle worker to ring at the lightest one.
//!
//! Model-checked by `loom-tests/tests/handoff.rs`; explained in `docs/concurrency.md`.

use crate::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{BoundedQueue, CachePadded};

/// Something that wakes one sleeping worker: its eventfd in production, a loom condition
/// variable in the models.
pub trait Wake {
    /// Makes the worker's next (or current) sleep return. Rings persist until consumed.
    fn wake(&self);
}

/// The set of workers that are about to sleep or sleeping, one bit per worker.
pub struct IdleSet {
    words: Box<[AtomicU64]>,
}

impl IdleSet {
    pub fn new(workers: usize) -> Self {
        IdleSet { words: (0..workers.div_ceil(64).max(1)).map(|_| AtomicU64::new(0)).collect() }
    }

    fn insert(&self, worker: usize) {
        // Relaxed: the SeqCst fence that follows in `prepare_sleep` orders this store before the
        // worker's queue check; covered by loom-tests/tests/handoff.rs (no_lost_wakeup_*).
        self.words[worker / 64].fetch_or(1 << (worker % 64), Ordering::Relaxed);
    }

    fn remove(&self, worker: usize) {
        // Relaxed: removing ourselves only ever causes a claim to fail, and a failed claim means
        // this worker is awake and will look at the queue; loom-tests/tests/handoff.rs.
        self.words[worker / 64].fetch_and(!(1 << (worker % 64)), Ordering::Relaxed);
    }

    /// Clears and returns one idle worker's bit, starting the search at `hint` for fairness.
    fn claim(&self, hint: usize) -> Option<usize> {
        let n = self.words.len();
        for i in 0..n {
            let w = (hint / 64 + i) % n;
            // Relaxed: the caller's SeqCst fence orders this read after its push (Dekker);
            // loom-tests/tests/handoff.rs (no_lost_wakeup_*).
            let mut bits = self.words[w].load(Ordering::Relaxed);
            while bits != 0 {
                let start = if i == 0 { hint % 64 } else { 0 };
                let rotated = bits.rotate_right(start as u32);
                let bit = (rotated.trailing_zeros() as usize + start) % 64;
                let mask = 1u64 << bit;
                // Relaxed: only the bit's ownership is decided here (RMWs on one word are totally
                // ordered); the item itself travels through the queue's own synchronisation.
                let prev = self.words[w].fetch_and(!mask, Ordering::Relaxed);
                if prev & mask != 0 {
                    return Some(w * 64 + bit);
                }
                bits = prev & !mask;
            }
        }
        None
    }
}

/// The acceptor → worker hand-off: queue, idle set, and one bell per worker.
///
/// A worker about to sleep calls [`prepare_sleep`](Self::prepare_sleep); if it returns true it
/// may sleep until its bell rings, then calls [`woke`](Self::woke). A push rings exactly one
/// idle worker's bell, so a sleeping worker never misses an item:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use atomserve::serve::handoff::{Handoff, Wake};
///
/// #[derive(Default)]
/// struct Bell(AtomicUsize);
/// impl Wake for Bell {
///     fn wake(&self) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let handoff = Handoff::new(4, vec![Bell::default(), Bell::default()]);
/// assert!(handoff.prepare_sleep(1, false), "the queue is empty: worker 1 may sleep");
/// handoff.push("conn", 0).unwrap();
/// assert_eq!(handoff.bell(1).0.load(Ordering::Relaxed), 1, "the idle worker was rung");
/// assert_eq!(handoff.bell(0).0.load(Ordering::Relaxed), 0, "the busy one was not");
/// handoff.woke(1);
/// assert_eq!(handoff.pop(), Some("conn"));
///
/// // An item queued before a worker announces itself: it must not sleep.
/// handoff.push("next", 0).unwrap();
/// assert!(!handoff.prepare_sleep(0, false));
/// handoff.stop();
/// assert!(handoff.is_stopping());
/// ```
pub struct Handoff<T, W> {
    queue: BoundedQueue<T>,
    idle: IdleSet,
    bells: Box<[W]>,
    stopping: AtomicBool,
    /// Per worker: the connections it owns, as it last published them.
    loads: Box<[CachePadded<AtomicUsize>]>,
    /// Per worker: another worker handed it an item (see the module docs).
    handed: Box<[CachePadded<AtomicBool>]>,
}

/// What [`Handoff::take`] gives a worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<T> {
    /// The next queued item: the worker adopts it.
    Item(T),
    /// The next item was handed to a worker with fewer connections, which was rung to take it.
    /// This worker takes nothing more this turn and may sleep (`prepare_sleep(_, true)`).
    Handed,
    /// Nothing is queued.
    Empty,
}

impl<T, W: Wake> Handoff<T, W> {
    /// A hand-off for `bells.len()` workers with a queue of `capacity` items.
    pub fn new(capacity: usize, bells: Vec<W>) -> Self {
        Handoff {
            queue: BoundedQueue::new(capacity),
            idle: IdleSet::new(bells.len()),
            loads: (0..bells.len()).map(|_| CachePadded::new(AtomicUsize::new(0))).collect(),
            handed: (0..bells.len()).map(|_| CachePadded::new(AtomicBool::new(false))).collect(),
            bells: bells.into_boxed_slice(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Worker `worker`'s bell (for registering it with the worker's epoll).
    pub fn bell(&self, worker: usize) -> &W {
        &self.bells[worker]
    }

    /// Queues `item` and wakes one idle worker, if any: the lightest when it is idle. Gives the
    /// item back when the queue is full, so the caller can refuse the connection instead of
    /// blocking.
    ///
    /// `hint` breaks ties between equally loaded workers (the acceptor rotates it).
    pub fn push(&self, item: T, hint: usize) -> Result<(), T> {
        self.queue.push(item)?;
        // SeqCst fence: the acceptor half of the Dekker pair with `prepare_sleep`'s fence — either
        // this side sees the worker's idle bit or the worker sees this item. Weakening it loses
        // wake-ups in loom-tests/tests/handoff.rs (no_lost_wakeup_*).
        fence(Ordering::SeqCst);
        // The search starts at the lightest worker, so that an idle one that would only hand
        // the item on (`take`) is not the one woken for it.
        let start = if self.loads.len() > 1 { self.lightest_from(hint) } else { hint };
        if let Some(worker) = self.idle.claim(start) {
            self.bells[worker].wake();
        }
        Ok(())
    }

    /// Takes the next queued item, whoever asks (tests and models; workers [`take`](Self::take)).
    pub fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Worker `worker` owns `connections` now: what the others compare their load with.
    pub fn publish_load(&self, worker: usize, connections: usize) {
        let load = &self.loads[worker];
        // Relaxed: a count other workers only weigh (module docs, "Sharing by load"); no data
        // travels with it. Stored only when it changed, so a steady worker writes nothing.
        // loom-tests/tests/handoff.rs (a_heavier_worker_hands_*).
        if load.load(Ordering::Relaxed) != connections {
            load.store(connections, Ordering::Relaxed);
        }
    }

    /// The next queued item for worker `worker`, which owns `mine` connections — unless another
    /// worker owns fewer by more than the slack: then that worker is rung to take it, and this
    /// one gets [`Take::Handed`] (module docs, "Sharing by load").
    ///
    /// ```
    /// use atomserve::serve::handoff::{Handoff, Take, Wake};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// #[derive(Default)]
    /// struct Bell(AtomicUsize);
    /// impl Wake for Bell {
    ///     fn wake(&self) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    /// let handoff = Handoff::new(8, vec![Bell::default(), Bell::default()]);
    /// handoff.push("a", 0).unwrap();
    /// handoff.push("b", 0).unwrap();
    /// handoff.publish_load(0, 10); // worker 0 owns 10 connections, worker 1 none
    /// assert_eq!(handoff.take(0, 10), Take::Handed, "worker 1 is lighter");
    /// assert_eq!(handoff.bell(1).0.load(Ordering::Relaxed), 1, "and was rung");
    /// handoff.publish_load(1, 3);
    /// assert_eq!(handoff.take(1, 3), Take::Item("a"), "handed to it: taken, whatever its load");
    /// assert_eq!(handoff.take(1, 4), Take::Item("b"), "4 ≤ 10: its own");
    /// assert_eq!(handoff.take(1, 5), Take::Empty);
    /// ```
    pub fn take(&self, worker: usize, mine: usize) -> Take<T> {
        if self.queue.is_empty() {
            return Take::Empty; // the common case, as cheap as before: no flag touched
        }
        // Relaxed: the flag carries no data (the item travels through the queue) and liveness
        // does not rest on it — the ring does: a flag not yet seen only means this worker
        // weighs loads as usual, and it pops or hands on again either way.
        // loom-tests/tests/handoff.rs (a_heavier_worker_hands_*).
        let handed = self.handed[worker].swap(false, Ordering::Relaxed);
        if !handed && !self.is_stopping() {
            if let Some(lighter) = self.lighter(worker, mine) {
                // Relaxed: see the swap above; what must not be lost is the ring that follows,
                // which wakes the lighter worker to look at the queue. loom-tests/tests/
                // handoff.rs (a_heavier_worker_hands_*: without the ring, a deadlock).
                self.handed[lighter].store(true, Ordering::Relaxed);
                self.bells[lighter].wake();
                return Take::Handed;
            }
        }
        self.queue.pop().map_or(Take::Empty, Take::Item)
    }

    /// The worker, other than `worker`, with the fewest connections, when `worker`'s `mine`
    /// exceed theirs by more than a quarter of theirs (at least one).
    fn lighter(&self, worker: usize, mine: usize) -> Option<usize> {
        let (w, least) = self.lightest(worker + 1, self.loads.len() - 1)?;
        (mine > least + (least / 4).max(1)).then_some(w)
    }

    /// The worker with the fewest connections, the first of them from `start` on.
    fn lightest_from(&self, start: usize) -> usize {
        self.lightest(start, self.loads.len()).map_or(start, |(w, _)| w)
    }

    /// Of the `count` workers from `start` on (wrapping), the first with the fewest connections,
    /// and that count: each load read once.
    fn lightest(&self, start: usize, count: usize) -> Option<(usize, usize)> {
        let n = self.loads.len();
        (0..count).map(|i| (start + i) % n).map(|w| (w, self.load(w))).min_by_key(|&(_, load)| load)
    }

    fn load(&self, worker: usize) -> usize {
        // Relaxed: see `publish_load`.
        self.loads[worker].load(Ordering::Relaxed)
    }

    /// How many items wait (a snapshot; for metrics).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How many of the waiting items one worker should take now: its share if every worker took
    /// some (at least one). A burst is rung to one idle worker per push, but the first one awake
    /// would otherwise take it all before the others wake (measured: 64 of 64 connections, in
    /// most bursts). What it leaves, the others take — or itself, on its next turn: a worker
    /// never sleeps while the queue is not empty (`prepare_sleep`). Only a count: `len` is a
    /// snapshot of the queue's indices, and no ordering rests on it.
    ///
    /// ```
    /// use atomserve::serve::handoff::{Handoff, Wake};
    /// struct Bell;
    /// impl Wake for Bell {
    ///     fn wake(&self) {}
    /// }
    /// let handoff = Handoff::new(8, vec![Bell, Bell]);
    /// assert_eq!(handoff.fair_share(), 1, "at least one, so that a lone item is taken");
    /// for conn in 0..5 {
    ///     handoff.push(conn, 0).unwrap();
    /// }
    /// assert_eq!(handoff.fair_share(), 3, "five queued, two workers: three for the first");
    /// ```
    pub fn fair_share(&self) -> usize {
        self.queue.len().div_ceil(self.bells.len()).max(1)
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Worker `worker` is about to sleep. Returns `true` when it may (its bell will ring for the
    /// next item) and `false` when an item arrived meanwhile, in which case it must loop again.
    /// After a sleep that was allowed, the worker calls [`Handoff::woke`]. A worker that
    /// `handed` an item this turn ([`Take::Handed`]) may sleep with items queued: the worker it
    /// rang takes them, or hands them back with a ring.
    pub fn prepare_sleep(&self, worker: usize, handed: bool) -> bool {
        self.idle.insert(worker);
        // SeqCst fence: the worker half of the Dekker pair with `push`'s fence (see module docs);
        // loom-tests/tests/handoff.rs (no_lost_wakeup_*).
        fence(Ordering::SeqCst);
        if handed || self.queue.is_empty() {
            return true;
        }
        self.idle.remove(worker);
        false
    }

    /// Worker `worker` is awake again (for any reason): it leaves the idle set.
    pub fn woke(&self, worker: usize) {
        self.idle.remove(worker);
    }

    /// Asks every worker to stop: sets the flag and rings every bell, idle or not, so that no
    /// worker sleeps through it (a bell rung before its owner sleeps still wakes it).
    pub fn stop(&self) {
        // Release: a worker that sees the flag (Acquire) also sees every push made before it, so
        // "stopped and the queue looks empty" really means nothing is left to serve. With both
        // sides Relaxed loom finds an awake worker exiting with a connection still queued
        // (loom-tests/tests/shutdown.rs, every_item_pushed_before_stop_is_served*). Weakening
        // only this store is caught when the pushes ran on another thread that the caller
        // joined (shutdown::stop_after_pushes_joined_from_another_thread_serves_them); when
        // they ran on the caller's own thread, each push's SeqCst fence already orders them
        // before this store, and the weakened store is an equivalent mutant.
        //
        // Precondition: the caller happens-after every push it wants served (the acceptor
        // pushes and stops on one thread).
        self.stopping.store(true, Ordering::Release);
        for bell in self.bells.iter() {
            bell.wake();
        }
    }

    /// Whether [`Handoff::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        // Acquire: pairs with the Release store in `stop` (see there).
        self.stopping.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(atomserve_loom)))]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Of two idle workers, a push rings the one with fewer connections, whatever its hint:
    /// the heavier one would only hand the connection on (`take`), a second wake-up.
    #[test]
    fn a_push_rings_the_lightest_idle_worker() {
        let h = Handoff::new(8, vec![Count::default(), Count::default(), Count::default()]);
        h.publish_load(0, 10);
        h.publish_load(1, 2);
        h.publish_load(2, 7);
        for w in 0..3 {
            assert!(h.prepare_sleep(w, false));
        }
        h.push(1, 0).unwrap();
        let rung = |w: usize| h.bell(w).0.load(Ordering::Relaxed);
        assert_eq!((rung(0), rung(1), rung(2)), (0, 1, 0), "worker 1 owns the fewest");
        h.push(2, 0).unwrap();
        assert_eq!((rung(0), rung(1), rung(2)), (0, 1, 1), "worker 1 was claimed: the next idle one");
    }

    /// The loom models run at most two workers, so one word: here the multi-word search. A
    /// claim searches the hint's word from the hint's bit (wrapping within that word), then the
    /// following words from their first bit, around the set; each idle worker is taken once.
    #[test]
    fn claim_searches_from_the_hint_across_words_and_wraps() {
        let set = IdleSet::new(130); // three words: 0–63, 64–127, 128–129
        for w in [3, 70, 129] {
            set.insert(w);
        }
        assert_eq!(set.claim(71), Some(70), "the hint's word first, wrapping below the hint's bit");
        assert_eq!(set.claim(71), Some(129), "then the next word");
        assert_eq!(set.claim(71), Some(3), "then around to word 0");
        assert_eq!(set.claim(5), None, "every bit was claimed once");
        set.insert(64);
        set.insert(65);
        assert_eq!(set.claim(65), Some(65), "the hint's own bit first");
        assert_eq!(set.claim(65), Some(64), "then the word wraps to its lower bits");
        set.insert(1);
        assert_eq!(set.claim(200), Some(1), "a hint past the last word wraps around the set");
        set.insert(10);
        set.remove(10);
        assert_eq!(set.claim(10), None, "a worker that took its bit back is not claimed");
    }
}
