//! loom models of atomserve's atomic protocols, run against the real code in `src/` compiled
//! with `--cfg atomserve_loom` (see `src/sync/mod.rs`). The models live in `tests/`, one file
//! per protocol and one model per invariant; run them with `make loom`. This file holds what
//! they share: the model runner and an eventfd stand-in.

#[cfg(atomserve_loom)]
mod shared {
    use atomserve::serve::handoff::{Handoff, Take, Wake};
    use loom::sync::{Condvar, Mutex};

    /// The fewest preemptions at which every model catches the mutants it is there for
    /// (measured with `make loom-mutants`: at 2, four `swap.rs` orderings survive). A bound
    /// below it would pass models that prove nothing, so it is refused.
    pub const LEAST_PREEMPTIONS: usize = 3;

    /// Runs `f` under loom, exploring every interleaving with up to `LOOM_MAX_PREEMPTIONS`
    /// preemptions (default and minimum [`LEAST_PREEMPTIONS`]).
    pub fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        let bound = *builder.preemption_bound.get_or_insert(LEAST_PREEMPTIONS);
        // LOOM_BELOW_FLOOR=1: only to measure what a lower bound misses (mutants.py --bound).
        let measuring = std::env::var_os("LOOM_BELOW_FLOOR").is_some_and(|v| v == "1");
        assert!(
            bound >= LEAST_PREEMPTIONS || measuring,
            "LOOM_MAX_PREEMPTIONS={bound} is below {LEAST_PREEMPTIONS}, where the models stop catching \
             the mutants they exist for (docs/concurrency.md); refusing to report a pass"
        );
        builder.check(f);
    }

    /// An eventfd stand-in: `wake` sets a flag that persists until `sleep` consumes it, so a ring
    /// before the sleeper blocks is not lost — exactly the eventfd counter's semantics. A worker
    /// that sleeps with nobody left to ring leaves every thread blocked: loom reports a deadlock.
    pub struct Bell {
        rung: Mutex<bool>,
        cv: Condvar,
    }

    impl Default for Bell {
        fn default() -> Self {
            Bell { rung: Mutex::new(false), cv: Condvar::new() }
        }
    }

    impl Bell {
        pub fn sleep(&self) {
            let mut rung = self.rung.lock().unwrap();
            while !*rung {
                rung = self.cv.wait(rung).unwrap();
            }
            *rung = false;
        }
    }

    /// The worker loop of `src/serve/worker.rs`, reduced to its hand-off calls: take everything
    /// queued, exit only once stopped *and* the queue is empty, otherwise announce idleness and
    /// sleep. `adopt` receives each item.
    pub fn worker(h: &Handoff<usize, Bell>, id: usize, adopt: impl FnMut(usize)) {
        worker_owning(h, id, 0, adopt);
    }

    /// [`worker`], owning `owned` connections from the start, each item taken one more — the
    /// load it publishes and `Handoff::take` weighs (`worker::adopt_queued`): a worker that
    /// handed an item on may sleep with items queued.
    pub fn worker_owning(
        h: &Handoff<usize, Bell>,
        id: usize,
        mut owned: usize,
        mut adopt: impl FnMut(usize),
    ) {
        let mut handed = false;
        loop {
            h.publish_load(id, owned);
            loop {
                match h.take(id, owned) {
                    Take::Item(item) => {
                        adopt(item);
                        owned += 1;
                    }
                    Take::Handed => {
                        handed = true;
                        break;
                    }
                    Take::Empty => break,
                }
            }
            h.publish_load(id, owned);
            if h.is_stopping() && h.queued() == 0 {
                return;
            }
            if h.prepare_sleep(id, std::mem::take(&mut handed)) {
                h.bell(id).sleep();
                h.woke(id);
            } else {
                // The real worker polls epoll without blocking here: a scheduling point, not a spin.
                loom::thread::yield_now();
            }
        }
    }

    impl Wake for Bell {
        fn wake(&self) {
            *self.rung.lock().unwrap() = true;
            self.cv.notify_one();
        }
    }
}

#[cfg(atomserve_loom)]
pub use shared::{model, worker, worker_owning, Bell};
