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
