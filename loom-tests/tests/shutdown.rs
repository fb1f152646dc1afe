//! loom models of shutdown through the hand-off (`src/serve/handoff.rs` `stop`), on the real
//! `Handoff`: after the stop flag, every item ever pushed is taken by a worker (a worker exits
//! only once stopped *and* the queue is empty, as `src/serve/worker.rs` does), and no worker sleeps
//! forever (loom reports a deadlock if one does).
#![cfg(atomserve_loom)]

use atomserve::serve::handoff::Handoff;
use loom::sync::{Arc, Mutex};
use loom::thread;
use loom_tests::{model, worker, Bell};

fn run(workers: usize, items: usize) {
    let h = Arc::new(Handoff::new(4, (0..workers).map(|_| Bell::default()).collect()));
    let taken = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..workers)
        .map(|id| {
            let (h, taken) = (h.clone(), taken.clone());
            thread::spawn(move || worker(&h, id, |item| taken.lock().unwrap().push(item)))
        })
        .collect();
    for item in 0..items {
        assert!(h.push(item, item).is_ok());
    }
    h.stop();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut taken = taken.lock().unwrap().clone();
    taken.sort_unstable();
    assert_eq!(taken, (0..items).collect::<Vec<_>>(), "every pushed item served exactly once");
}

#[test]
fn stop_wakes_every_sleeping_worker() {
    model(|| run(2, 0));
}

#[test]
fn every_item_pushed_before_stop_is_served() {
    model(|| run(1, 2));
}

#[test]
fn every_item_pushed_before_stop_is_served_two_workers() {
    model(|| run(2, 1));
}

/// The precondition `stop()` states — its caller happens-after the pushes — met through a join
/// rather than by pushing on the same thread: the pushes run on a thread of their own, main
/// joins it and stops. Here only the Release of `stop`'s store (paired with `is_stopping`'s
/// Acquire) carries the pushed item to a worker that sees the flag, so weakening that store to
/// Relaxed lets the worker exit with the item still queued. (When the pushes run on the stopping
/// thread, the push's own SeqCst fence already orders them: that mutant is equivalent there.)
#[test]
fn stop_after_pushes_joined_from_another_thread_serves_them() {
    model(|| {
        let h = Arc::new(Handoff::new(4, vec![Bell::default()]));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let worker = {
            let (h, taken) = (h.clone(), taken.clone());
            thread::spawn(move || worker(&h, 0, |item| taken.lock().unwrap().push(item)))
        };
        let pusher = {
            let h = h.clone();
            thread::spawn(move || assert!(h.push(7, 0).is_ok()))
        };
        pusher.join().unwrap();
        h.stop();
        worker.join().unwrap();
        assert_eq!(*taken.lock().unwrap(), vec![7], "the item pushed before stop was served");
    });
}
