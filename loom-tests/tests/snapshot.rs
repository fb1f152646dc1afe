//! loom models of the snapshot swap and its quiescent-state reclamation (`src/cache/swap.rs`),
//! run on the real `SnapshotCell`.
//!
//! The published value is a `Probe` whose contents live in a loom-tracked cell written when it
//! is built, so a reader that can see a snapshot before its construction is visible is reported
//! as a data race (a "half-built" snapshot). Under loom a freed node is not deallocated: the free
//! writes a tracked flag, so a reader access not ordered before the free is reported too (a
//! "freed" snapshot), and `Guard::deref` asserts the flag is clear.
#![cfg(atomserve_loom)]

use atomserve::cache::SnapshotCell;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

struct Probe {
    value: UnsafeCell<u64>,
}

impl Probe {
    fn new(v: u64) -> Self {
        let p = Probe { value: UnsafeCell::new(0) };
        // A tracked write, so readers must be ordered after construction.
        p.value.with_mut(|x| unsafe { *x = v });
        p
    }

    fn read(&self) -> u64 {
        self.value.with(|x| unsafe { *x })
    }
}

#[test]
fn reader_never_sees_a_half_built_snapshot() {
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let v = r.current().read();
            assert!(v == 1 || v == 2, "read {v}");
        });
        cell.publish(Probe::new(2));
        reader.join().unwrap();
    });
}

#[test]
fn reader_never_sees_a_freed_snapshot() {
    // The reader uses a snapshot, passes a quiescent point, and uses the current one again,
    // while the writer publishes and tries to reclaim once, concurrently.
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let _ = r.current().read();
            r.quiescent();
            let v = r.current().read();
            assert!(v == 1 || v == 2);
            r.offline();
        });
        cell.publish(Probe::new(2));
        cell.reclaim();
        reader.join().unwrap();
        assert_eq!(cell.reclaim(), 0, "the reader went offline: the old snapshot must be freed");
    });
}

#[test]
fn waking_reader_never_sees_a_freed_snapshot() {
    // The reader starts asleep (offline) and wakes up while the writer publishes and reclaims:
    // the Dekker pair of fences in `online` and `publish`.
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let _ = r.current().read();
            r.offline();
        });
        cell.publish(Probe::new(2));
        cell.reclaim();
        reader.join().unwrap();
    });
}

#[test]
fn offline_reader_does_not_hold_back_reclamation() {
    // Worker 1 sleeps throughout; worker 0 works and then sleeps. Once worker 0 is offline, a
    // reclaim must free the retired snapshot although worker 1 never passed a quiescent point.
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 2));
        let _sleeper = cell.reader(1); // never online
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let _ = r.current().read();
            r.offline();
        });
        cell.publish(Probe::new(2));
        reader.join().unwrap();
        assert_eq!(cell.reclaim(), 0);
        assert_eq!(cell.pending(), 0);
    });
}

#[test]
fn retired_snapshot_is_freed_once_readers_pass_a_quiescent_point() {
    // A busy worker never goes offline; its quiescent points alone must let the old one go.
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        cell.publish(Probe::new(2));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            assert_eq!(r.current().read(), 2, "a reader online after a publish sees it");
            r.quiescent();
            std::mem::forget(r); // stays online: no offline() on drop
        });
        reader.join().unwrap();
        assert_eq!(cell.reclaim(), 0);
    });
}

#[test]
fn reader_that_sleeps_and_wakes_never_sees_a_freed_snapshot() {
    // Read, sleep (offline), wake (online) and read again, while the writer publishes and
    // reclaims: the writer may see only the slot value stored on waking.
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let _ = r.current().read();
            r.offline();
            r.online();
            let _ = r.current().read();
            r.offline();
        });
        cell.publish(Probe::new(2));
        cell.reclaim();
        reader.join().unwrap();
    });
}

/// Two publishes before one reclaim, while a reader goes online → quiescent → offline → online
/// and reads at each step: both retired snapshots are freed only when no read can still reach
/// them (one retired at each epoch; the reader's slot moves through every state in between).
/// This is what a reload does now: phase 1 and phase 2 each publish.
#[test]
fn two_publishes_before_one_reclaim_free_nothing_a_reader_still_uses() {
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 1));
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let mut r = c.reader(0);
            r.online();
            let _ = r.current().read();
            r.quiescent();
            let _ = r.current().read();
            r.offline();
            r.online();
            let v = r.current().read();
            assert!((1..=3).contains(&v), "read {v}");
        });
        cell.publish(Probe::new(2));
        cell.publish(Probe::new(3));
        cell.reclaim();
        reader.join().unwrap();
        assert_eq!(cell.reclaim(), 0, "once the reader is gone, everything retired is freed");
    });
}

/// Two readers (two workers) and a writer that publishes and reclaims: a snapshot is freed only
/// when *both* slots allow it.
#[test]
fn two_readers_never_see_a_freed_snapshot() {
    model(|| {
        let cell = Arc::new(SnapshotCell::new(Probe::new(1), 2));
        let readers: Vec<_> = (0..2)
            .map(|id| {
                let c = cell.clone();
                thread::spawn(move || {
                    let mut r = c.reader(id);
                    r.online();
                    let _ = r.current().read();
                    r.quiescent();
                    let _ = r.current().read();
                })
            })
            .collect();
        cell.publish(Probe::new(2));
        cell.reclaim();
        for r in readers {
            r.join().unwrap();
        }
    });
}
