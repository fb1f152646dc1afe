//! loom models of the single-writer counters (`src/stats.rs`), on the real `Stats`: an
//! increment is a Relaxed load + store, not a locked read-modify-write.
#![cfg(atomserve_loom)]

use atomserve::stats::Stats;
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

fn writers(stats: &Arc<Stats>) -> Vec<thread::JoinHandle<()>> {
    (0..2)
        .map(|w| {
            let stats = stats.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    stats.workers[w].requests.incr();
                }
            })
        })
        .collect()
}

#[test]
fn sums_never_go_backwards() {
    model(|| {
        let stats = Arc::new(Stats::new(2));
        let handles = writers(&stats);
        let first = stats.sum(|w| &w.requests);
        let second = stats.sum(|w| &w.requests);
        assert!(second >= first, "sum went from {first} to {second}");
        assert!(second <= 4);
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn sums_are_exact_once_writers_are_quiet() {
    model(|| {
        let stats = Arc::new(Stats::new(2));
        for h in writers(&stats) {
            h.join().unwrap();
        }
        assert_eq!(stats.sum(|w| &w.requests), 4, "no increment lost");
    });
}

/// `Stats::open_connections` is read while the acceptor counts a connection and pushes it and a
/// worker pops and closes it: it never wraps below zero. Without the Release/Acquire pair on the
/// close counter (or with `accepted` counted after the push), the reader can see the close
/// before the accept.
#[test]
fn open_connections_never_see_a_close_before_its_accept() {
    use atomserve::sync::BoundedQueue;
    model(|| {
        let stats = Arc::new(Stats::new(1));
        let queue = Arc::new(BoundedQueue::new(1));
        let (s, q) = (stats.clone(), queue.clone());
        let acceptor = thread::spawn(move || {
            s.acceptor.accepted.incr();
            let _ = q.push(1u8);
        });
        let s = stats.clone();
        let worker = thread::spawn(move || {
            if queue.pop().is_some() {
                s.workers[0].connections_closed.incr_release();
            }
        });
        let open = stats.open_connections();
        assert!(open <= 1, "open connections read as {open}");
        acceptor.join().unwrap();
        worker.join().unwrap();
    });
}

/// The same for a connection the full queue refuses (it holds an admin connection, which is not
/// counted): the refusal is never seen before the accept.
#[test]
fn open_connections_never_see_a_refusal_before_its_accept() {
    use atomserve::sync::BoundedQueue;
    model(|| {
        let stats = Arc::new(Stats::new(1));
        let queue = Arc::new(BoundedQueue::new(1));
        assert!(queue.push(0u8).is_ok());
        let s = stats.clone();
        let acceptor = thread::spawn(move || {
            s.acceptor.accepted.incr();
            if queue.push(1u8).is_err() {
                s.acceptor.public_refused.incr_release();
            }
        });
        let open = stats.open_connections();
        assert!(open <= 1, "open connections read as {open}");
        acceptor.join().unwrap();
        assert_eq!(stats.open_connections(), 0);
    });
}

/// A worker's own open-connection count (adopted − closed, both its counters) read while it
/// adopts and closes one: never wraps.
#[test]
fn a_workers_open_connections_never_wrap() {
    model(|| {
        let stats = Arc::new(Stats::new(1));
        let s = stats.clone();
        let worker = thread::spawn(move || {
            s.workers[0].connections_accepted.incr();
            s.workers[0].connections_closed.incr_release();
        });
        let open = stats.workers[0].open_connections();
        assert!(open <= 1, "a worker's open connections read as {open}");
        worker.join().unwrap();
    });
}
