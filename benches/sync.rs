//! Criterion benches behind the concurrency choices in `docs/concurrency.md`:
//! - fd hand-off: crossbeam `ArrayQueue` (what atomserve uses) vs `Mutex<VecDeque>` vs
//!   `std::sync::mpsc::sync_channel`, with 1 and 2 producers/consumers;
//! - one connection through atomserve's `Handoff` (push, then the worker's take), with 1 to 64
//!   workers: what weighing every worker's load costs per accepted connection;
//! - snapshot read path: atomserve's QSBR `SnapshotCell` vs cloning an `Arc` vs an `RwLock` read
//!   vs `arc-swap`, on 1 and 2 threads;
//! - counters: a padded single-writer load + store (atomserve's `Counter`) vs a shared
//!   `fetch_add` vs unpadded per-thread `fetch_add`s on neighbouring words (false sharing), on 2
//!   threads.
//!
//! Multi-threaded cases use `iter_custom`: each of the threads does `iters` operations and the
//! wall time of the slowest is reported, so the figure is time per operation per thread.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use atomserve::cache::SnapshotCell;
use atomserve::serve::handoff::{Handoff, Take, Wake};
use atomserve::stats::Counter;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;

/// Runs `f(thread_index, iters)` on `threads` threads started together; returns the wall time.
fn parallel(threads: usize, iters: u64, f: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        for t in 0..threads {
            let (barrier, f) = (&barrier, &f);
            s.spawn(move || {
                barrier.wait();
                f(t, iters);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // scope joins every thread before returning
        start
    })
    .elapsed()
}

/// A queue under test: push may fail when full (then the producer retries).
trait Queue: Sync {
    fn push(&self, v: u64) -> bool;
    fn pop(&self) -> Option<u64>;
}

impl Queue for crossbeam_queue::ArrayQueue<u64> {
    fn push(&self, v: u64) -> bool {
        crossbeam_queue::ArrayQueue::push(self, v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        crossbeam_queue::ArrayQueue::pop(self)
    }
}

struct Locked(Mutex<VecDeque<u64>>, usize);

impl Queue for Locked {
    fn push(&self, v: u64) -> bool {
        let mut q = self.0.lock().unwrap();
        if q.len() >= self.1 {
            return false;
        }
        q.push_back(v);
        true
    }
    fn pop(&self) -> Option<u64> {
        self.0.lock().unwrap().pop_front()
    }
}

struct Channel(mpsc::SyncSender<u64>, Mutex<mpsc::Receiver<u64>>);

impl Queue for Channel {
    fn push(&self, v: u64) -> bool {
        self.0.try_send(v).is_ok()
    }
    fn pop(&self) -> Option<u64> {
        // mpsc has one consumer: several consumers must share the receiver behind a lock.
        self.1.lock().unwrap().try_recv().ok()
    }
}

/// Moves `iters` items per producer from `pairs` producers to `pairs` consumers.
fn pass_through(q: &dyn Queue, pairs: usize, iters: u64) -> Duration {
    let total = iters * pairs as u64;
    let taken = AtomicU64::new(0);
    parallel(pairs * 2, iters, |t, n| {
        if t < pairs {
            for i in 0..n {
                while !q.push(i) {
                    std::hint::spin_loop();
                }
            }
        } else {
            while taken.load(Ordering::Relaxed) < total {
                if q.pop().is_some() {
                    taken.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    })
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    for pairs in [1, 2] {
        g.bench_with_input(BenchmarkId::new("array_queue", pairs), &pairs, |b, &p| {
            b.iter_custom(|n| pass_through(&crossbeam_queue::ArrayQueue::new(4096), p, n))
        });
        g.bench_with_input(BenchmarkId::new("mutex_vecdeque", pairs), &pairs, |b, &p| {
            b.iter_custom(|n| pass_through(&Locked(Mutex::new(VecDeque::with_capacity(4096)), 4096), p, n))
        });
        g.bench_with_input(BenchmarkId::new("mpsc_sync_channel", pairs), &pairs, |b, &p| {
            b.iter_custom(|n| {
                let (tx, rx) = mpsc::sync_channel(4096);
                pass_through(&Channel(tx, Mutex::new(rx)), p, n)
            })
        });
    }
    g.finish();
}

/// A bell that rings nothing: the bench measures the hand-off's own work.
struct Silent;
impl Wake for Silent {
    fn wake(&self) {}
}

/// One accepted connection through the real `Handoff` on one thread: a worker announces its
/// sleep (`prepare_sleep`, a fence), the acceptor `push`es (its fence, the scan for the lightest
/// worker, the idle-set claim) and the worker `take`s (the scan for a lighter worker). Every
/// worker carries the same load, so nothing is handed on. One thread: the loads are in its cache,
/// so this is the scans' own cost, not the cache misses of loads other cores just wrote.
fn handoff_push_take(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff_push_take");
    g.throughput(Throughput::Elements(1));
    for workers in [1, 2, 8, 64] {
        let handoff: Handoff<u64, Silent> = Handoff::new(1024, (0..workers).map(|_| Silent).collect());
        for w in 0..workers {
            handoff.publish_load(w, 10);
        }
        g.bench_with_input(BenchmarkId::from_parameter(workers), &workers, |b, _| {
            b.iter(|| {
                handoff.prepare_sleep(0, false);
                handoff.push(black_box(7), 0).unwrap();
                match handoff.take(0, 10) {
                    Take::Item(v) => black_box(v),
                    _ => unreachable!("one item, equal loads"),
                }
            })
        });
    }
    g.finish();
}

/// A stand-in snapshot: a little data to read, as a worker reads one entry per request.
struct Snap {
    files: [u64; 8],
}

fn snapshot_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_read");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        // atomserve: a quiescent point + an Acquire load + a plain read, no RMW, no lock.
        let cell = SnapshotCell::new(Snap { files: [7; 8] }, threads);
        g.bench_with_input(BenchmarkId::new("qsbr_cell", threads), &threads, |b, &t| {
            b.iter_custom(|n| {
                parallel(t, n, |id, n| {
                    let mut r = cell.reader(id);
                    r.online();
                    for i in 0..n {
                        r.quiescent();
                        black_box(r.current().files[(i & 7) as usize]);
                    }
                    r.offline();
                })
            })
        });
        // The obvious alternative: every request clones the Arc (an RMW on a shared line).
        let shared = Arc::new(Snap { files: [7; 8] });
        g.bench_with_input(BenchmarkId::new("arc_clone", threads), &threads, |b, &t| {
            b.iter_custom(|n| {
                parallel(t, n, |_, n| {
                    for i in 0..n {
                        let s = Arc::clone(&shared);
                        black_box(s.files[(i & 7) as usize]);
                    }
                })
            })
        });
        let lock = RwLock::new(Arc::new(Snap { files: [7; 8] }));
        g.bench_with_input(BenchmarkId::new("rwlock_read", threads), &threads, |b, &t| {
            b.iter_custom(|n| {
                parallel(t, n, |_, n| {
                    for i in 0..n {
                        let s = lock.read().unwrap();
                        black_box(s.files[(i & 7) as usize]);
                    }
                })
            })
        });
        let swap = ArcSwap::from_pointee(Snap { files: [7; 8] });
        g.bench_with_input(BenchmarkId::new("arc_swap_load", threads), &threads, |b, &t| {
            b.iter_custom(|n| {
                parallel(t, n, |_, n| {
                    for i in 0..n {
                        let s = swap.load();
                        black_box(s.files[(i & 7) as usize]);
                    }
                })
            })
        });
    }
    g.finish();
}

fn counters(c: &mut Criterion) {
    let mut g = c.benchmark_group("counters_2_threads");
    g.throughput(Throughput::Elements(1));
    let padded: Vec<CachePadded<Counter>> = (0..2).map(|_| CachePadded::new(Counter::new())).collect();
    g.bench_function("padded_single_writer", |b| {
        b.iter_custom(|n| {
            parallel(2, n, |t, n| {
                for _ in 0..n {
                    padded[t].incr();
                }
            })
        })
    });
    let shared = AtomicU64::new(0);
    g.bench_function("shared_fetch_add", |b| {
        b.iter_custom(|n| {
            parallel(2, n, |_, n| {
                for _ in 0..n {
                    shared.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    });
    let unpadded: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
    g.bench_function("unpadded_fetch_add_neighbours", |b| {
        b.iter_custom(|n| {
            parallel(2, n, |t, n| {
                for _ in 0..n {
                    unpadded[t].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, handoff, handoff_push_take, snapshot_read, counters);
criterion_main!(benches);
