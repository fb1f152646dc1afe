//! loom models of the acceptor → worker hand-off (`src/serve/handoff.rs`), run on the real `Handoff`.
//!
//! The bell is a loom mutex + condition variable with eventfd semantics: a ring sets a flag that
//! persists until the owner consumes it. A worker that sleeps while an item waits and nobody will
//! ring its bell leaves every thread blocked, which loom reports as a deadlock — that is how a
//! lost wake-up shows up here. `stop()` is only called after the last item was consumed, so it
//! can never mask a lost wake-up.
#![cfg(atomserve_loom)]

use atomserve::serve::handoff::Handoff;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_tests::{model, worker, worker_owning, Bell};

/// One worker of the model: takes items until the last one is consumed, whose consumer stops
/// everyone (never before: see the module docs).
fn consume(
    h: &Handoff<usize, Bell>,
    id: usize,
    consumed: &AtomicUsize,
    total: usize,
    seen: &Mutex<Vec<usize>>,
) {
    worker(h, id, |item| {
        seen.lock().unwrap().push(item);
        if consumed.fetch_add(1, Ordering::Relaxed) + 1 == total {
            h.stop();
        }
    });
}

fn run(workers: usize, items: usize) {
    let h = Arc::new(Handoff::new(4, (0..workers).map(|_| Bell::default()).collect()));
    let consumed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..workers)
        .map(|id| {
            let (h, consumed, seen) = (h.clone(), consumed.clone(), seen.clone());
            thread::spawn(move || consume(&h, id, &consumed, items, &seen))
        })
        .collect();
    for item in 0..items {
        assert!(h.push(item, item).is_ok(), "the queue holds 4");
    }
    for handle in handles {
        handle.join().unwrap();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..items).collect::<Vec<_>>(), "every item delivered exactly once");
}

#[test]
fn no_lost_wakeup_one_worker() {
    model(|| run(1, 2));
}

#[test]
fn no_lost_wakeup_two_workers() {
    model(|| run(2, 1));
}

#[test]
fn no_item_lost_or_doubled_two_workers_two_items() {
    model(|| run(2, 2));
}

/// The 503 path: a queue of one (the stand-in's capacity is clamped to 1..=4) already holding a
/// connection refuses the next push and hands the item back, and the connection that did get in
/// is still served (the refusal rings nobody and loses no wake-up).
#[test]
fn a_full_queue_refuses_and_loses_no_wakeup() {
    model(|| {
        let h = Arc::new(Handoff::new(1, vec![Bell::default()]));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let consumed = Arc::new(AtomicUsize::new(0));
        let w = {
            let (h, seen, consumed) = (h.clone(), seen.clone(), consumed.clone());
            thread::spawn(move || consume(&h, 0, &consumed, 1, &seen))
        };
        assert!(h.push(0, 0).is_ok());
        // The worker may or may not have taken item 0 yet: if not, item 1 is refused.
        let refused = match h.push(1, 1) {
            Ok(()) => None,
            Err(item) => Some(item),
        };
        w.join().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], 0, "the first connection is served");
        if let Some(item) = refused {
            assert_eq!(item, 1, "a refused push hands its item back (the acceptor answers 503)");
        }
    });
}

/// Two workers owning `owned[0]` and `owned[1]` connections take items from `h` until it stops;
/// `adopt(id, item)` receives each item and stops `h` after the last. Joined before returning.
fn run_owning(
    h: &Arc<Handoff<usize, Bell>>,
    owned: [usize; 2],
    items: usize,
    adopt: impl Fn(usize, usize) + Send + Sync + 'static,
) {
    let adopt = Arc::new(adopt);
    let handles: Vec<_> = (0..2)
        .map(|id| {
            let (h, adopt) = (h.clone(), adopt.clone());
            thread::spawn(move || worker_owning(&h, id, owned[id], |item| adopt(id, item)))
        })
        .collect();
    for item in 0..items {
        assert!(h.push(item, item).is_ok());
    }
    for handle in handles {
        handle.join().unwrap();
    }
}

fn two_bells() -> Arc<Handoff<usize, Bell>> {
    Arc::new(Handoff::new(2, vec![Bell::default(), Bell::default()]))
}

/// Sharing by load: worker 0 already owns three connections, worker 1 none. Whichever worker
/// the push rings, the item ends with worker 1 — taken directly, or handed to it by worker 0
/// (its flag set, its bell rung) while worker 0 goes to sleep with the item still queued. A
/// hand-off without the ring leaves both asleep with the item queued: loom reports the deadlock.
#[test]
fn a_heavier_worker_hands_its_item_to_the_lighter_one() {
    model(|| {
        let h = two_bells();
        let taken_by = Arc::new(Mutex::new(Vec::new()));
        let (stop, record) = (h.clone(), taken_by.clone());
        run_owning(&h, [3, 0], 1, move |id, _| {
            record.lock().unwrap().push(id);
            stop.stop(); // the one item is in
        });
        assert_eq!(*taken_by.lock().unwrap(), vec![1], "taken once, by the lighter worker");
    });
}

/// Two items and the same loads: hand-offs and direct takes interleave every way, and each
/// item is still delivered exactly once, with no worker asleep while one waits.
#[test]
fn a_heavier_worker_hands_two_items_and_none_is_lost() {
    model(|| {
        let h = two_bells();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, record) = (h.clone(), seen.clone());
        run_owning(&h, [3, 0], 2, move |_, item| {
            let last = {
                let mut seen = record.lock().unwrap();
                seen.push(item);
                seen.len() == 2
            };
            if last {
                stop.stop();
            }
        });
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1], "every item delivered exactly once");
    });
}

/// Both workers loaded (5 and 3) and their loads not yet published, as at start-up: each may
/// read the other's as 0 and hand the item over, so hand-offs go both ways — the `handed` flag
/// seen or not (it is Relaxed) — and the item is still taken exactly once, by either worker,
/// with none asleep while it waits.
#[test]
fn workers_that_hand_to_each_other_lose_nothing() {
    model(|| {
        let h = two_bells();
        let taken = Arc::new(AtomicUsize::new(0));
        let (stop, count) = (h.clone(), taken.clone());
        run_owning(&h, [5, 3], 1, move |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
            stop.stop();
        });
        assert_eq!(taken.load(Ordering::Relaxed), 1, "taken exactly once");
    });
}
