//! A worker: one thread pinned to one CPU, owning its connections for their whole life and
//! multiplexing them with its own epoll instance.
//!
//! The loop: wait in `epoll_wait` (announcing itself idle first, see [`crate::serve::handoff`], and
//! going offline for snapshot reclamation, see [`crate::cache::swap`]); then, on the snapshot
//! current for this turn, drive every connection epoll reported, take new connections from the
//! hand-off queue, and once a second expire the connections whose timer ran out. No locks and,
//! once warm, no allocation per request. The syscalls of a keep-alive request are its `recv`, its
//! `sendto` (or `sendmsg`, or `sendfile`) and the shared `epoll_wait`; besides those a connection
//! costs one `epoll_ctl` when adopted, a `shutdown` when it closes gracefully, and a `getpeername`
//! only when an access record needs the client's address.
//!
//! Shutdown: when the hand-off says stop, the worker *drains* — idle keep-alive connections are
//! closed at once, responses in flight finish (with `Connection: close`), connections still
//! queued are served — and exits when it owns nothing, or when the grace period ends.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::cache::swap::Reader;
use crate::cache::Snapshot;
use crate::endpoint::Endpoint;
use crate::http::date::DateCache;
use crate::http::request::Limits;
use crate::observe::access::AccessSink;
use crate::observe::scrape::Sources;
use crate::serve::handoff::Take;
use crate::serve::link::{Bufs, Ctx, Keep, Timeouts};
use crate::serve::out_queue::BatchSpares;
use crate::serve::rendered::Rendered;
use crate::serve::respond::PathBufs;
use crate::serve::slab::{self, Slab};
use crate::serve::transport::Conn;
use crate::serve::FdHandoff;
use crate::sync::Arc;
use crate::sys::epoll::{self, Epoll, Events};
use crate::sys::{affinity, clock};

/// Everything a worker starts with.
pub struct WorkerSetup {
    pub id: usize,
    /// The CPU to pin to (`None`: no pinning).
    pub cpu: Option<usize>,
    pub handoff: Arc<FdHandoff>,
    /// The live snapshot (`sources.cache`, read through `reader(id)`), the counters
    /// (`sources.stats`, of which this worker writes `workers[id]` only), and what the admin
    /// endpoints read.
    pub sources: Arc<Sources>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// How long to let in-flight work finish after a stop.
    pub grace: Duration,
    /// Where this worker's access records go (text log, OTLP bridge); usually nowhere.
    pub access: AccessSink,
}

/// The epoll token of the worker's own bell.
const BELL: u64 = slab::RESERVED;
/// Most new connections taken from the queue in one loop turn (fewer: the worker's fair share,
/// `Handoff::fair_share`), so that a burst is shared among workers.
const ADOPT_BATCH: usize = 64;
/// How often timers are checked.
const SWEEP_MS: u64 = 1000;
/// Size of the shared read buffer: room for many pipelined requests per `recv`.
const SCRATCH: usize = 64 * 1024;

/// Runs the worker until the hand-off stops it and its connections are done.
pub fn run(setup: WorkerSetup) -> io::Result<()> {
    pin(&setup);
    let handoff = &*setup.handoff;
    let bell = handoff.bell(setup.id);
    let epoll = Epoll::new()?;
    epoll.add(bell.as_fd(), epoll::READ, BELL)?;

    let mut reader = setup.sources.cache.reader(setup.id);
    let mut schedule = Schedule::new();
    let mut events = Events::with_capacity(256);
    let mut conns: Slab<Conn> = Slab::default();
    let mut bufs = Bufs {
        scratch: vec![0u8; SCRATCH],
        paths: PathBufs::with_capacity(256),
        batches: BatchSpares::new(),
    };
    let mut date = DateCache::new();
    let mut rendered = Rendered::new(u64::MAX, date.text());
    // Connections that stopped at their work budget with input left (see `Keep::Again`).
    let mut ready: Vec<u64> = Vec::new();
    // This turn handed a queued connection to a lighter worker (`adopt_queued`).
    let mut handed = false;
    reader.online();

    loop {
        // Wait. A worker that may sleep goes offline first: asleep it holds no snapshot, so it
        // never holds reclamation back; awake again it announces itself before reading one.
        let now = schedule.now_ms();
        if conns.is_empty() {
            // About to sleep with nothing to wake for: let the access log out first.
            setup.access.flush(&setup.sources.stats.workers[setup.id]);
        }
        let timeout = schedule.timeout(now, conns.is_empty(), !ready.is_empty());
        // The sweep may have closed connections since the adoption step published the count.
        handoff.publish_load(setup.id, conns.len());
        wait(&setup, &mut reader, timeout, handed, |timeout| epoll.wait(&mut events, timeout))?;

        // Work, on the snapshot that is current for this turn.
        let snapshot = reader.current();
        let (started, now) = schedule.turn();
        date.refresh();
        rendered.refresh(snapshot.serial(), date.text());
        let stop_seen_now = schedule.notice_stop(now, &setup);
        let ctx = context(&setup, &snapshot, &date, &rendered, (started, now), schedule.draining());
        let stats = ctx.stats;
        // Closes a connection: dropping it closes the socket; a public one is counted.
        let closed = |conn: Conn| {
            if conn.is_public() {
                stats.connections_closed.incr_release();
            }
        };
        for event in events.iter() {
            if event.token() == BELL {
                bell.drain();
                continue;
            }
            if let Some(conn) = conns.get_mut(event.token()) {
                let verdict = conn.on_event(
                    event.is_readable(),
                    event.is_writable(),
                    event.is_hangup(),
                    &ctx,
                    &mut bufs,
                );
                if !keep(verdict, event.token(), &mut ready) {
                    conns.remove(event.token()).map(closed);
                }
            }
        }
        for token in std::mem::take(&mut ready) {
            if let Some(conn) = conns.get_mut(token) {
                if !keep(conn.drive(&ctx, &mut bufs), token, &mut ready) {
                    conns.remove(token).map(closed);
                }
            }
        }
        if stop_seen_now {
            // Every connection once: idle ones close now, busy ones finish with a close.
            conns.retain(|token, conn| keep(conn.drive(&ctx, &mut bufs), token, &mut ready), closed);
        }
        handed = adopt_queued(&setup, conns.len(), usize::MAX, |accepted| {
            let mut conn = Conn::new(accepted, now, &setup.timeouts);
            let public = conn.is_public();
            if public {
                stats.connections_accepted.incr();
            }
            let token = conns.vacant_token();
            if epoll.add(conn.fd(), epoll::CONNECTION, token).is_err() {
                closed(conn);
            } else if keep(conn.drive(&ctx, &mut bufs), token, &mut ready) {
                conns.insert(conn);
            } else {
                closed(conn);
            }
            conns.len()
        });
        if schedule.sweep_due(now) {
            setup.access.flush(stats);
            conns.retain(|_, conn| conn.deadline_ms() > now || conn.on_timeout(&ctx) != Keep::No, closed);
        }
        if schedule.drained(now, conns.is_empty(), &setup) {
            setup.access.flush(stats);
            return Ok(()); // past the grace period, dropping `conns` closes whatever is left
        }
    }
}

/// Pins the calling thread to the worker's CPU, if it has one (a failure is logged, not fatal).
pub fn pin(setup: &WorkerSetup) {
    if let Some(cpu) = setup.cpu {
        if let Err(e) = affinity::pin_current_thread(cpu) {
            crate::log!("worker {} could not be pinned to CPU {cpu}: {e} (running unpinned)", setup.id);
        }
    }
}

/// A worker's clock and its turn-by-turn decisions that do not depend on how it waits: how
/// long the next wait may last, when timers are swept, when a stop was noticed and when the
/// drain is over. Shared by the epoll and the io_uring loops.
pub struct Schedule {
    /// `sys::clock::monotonic_ns` when the worker started.
    epoch_ns: u64,
    drain_deadline: Option<u64>,
    next_sweep: u64,
}

impl Schedule {
    pub fn new() -> Schedule {
        Schedule { epoch_ns: clock::monotonic_ns(), drain_deadline: None, next_sweep: SWEEP_MS }
    }

    /// Coarse monotonic milliseconds since the worker started.
    pub fn now_ms(&self) -> u64 {
        self.ms_at(clock::monotonic_ns())
    }

    /// The time of a turn's start: `sys::clock::monotonic_ns` and, coarse,
    /// [`Schedule::now_ms`] of it (one clock read for both).
    pub fn turn(&self) -> (u64, u64) {
        let now = clock::monotonic_ns();
        (now, self.ms_at(now))
    }

    /// Milliseconds from the worker's start to `ns` (a `sys::clock::monotonic_ns` reading).
    fn ms_at(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.epoch_ns) / 1_000_000
    }

    /// How long the next wait may last: not at all with connections `ready` to run again;
    /// without end with no connection and no drain; else until the next sweep or drain end.
    pub fn timeout(&self, now: u64, idle: bool, ready: bool) -> Option<Duration> {
        match (idle, self.drain_deadline) {
            _ if ready => Some(Duration::ZERO),
            (true, None) => None,
            (_, Some(deadline)) => {
                Some(Duration::from_millis(self.next_sweep.min(deadline).saturating_sub(now)))
            }
            (false, None) => Some(Duration::from_millis(self.next_sweep.saturating_sub(now))),
        }
    }

    /// Notices a stop, at the start of a turn's work; true on the turn it is first seen. Before
    /// the turn's events: a request completed in the same wake-up as the stop must already be
    /// answered with `Connection: close` (regression: tests/h11 test_sigterm_drains saw a
    /// keep-alive answer, then a close).
    pub fn notice_stop(&mut self, now: u64, setup: &WorkerSetup) -> bool {
        let seen_now = self.drain_deadline.is_none() && setup.handoff.is_stopping();
        if seen_now {
            self.drain_deadline = Some(now + setup.grace.as_millis() as u64);
        }
        seen_now
    }

    pub fn draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Whether timers are due for a sweep (once a second); moves the next sweep on if so.
    pub fn sweep_due(&mut self, now: u64) -> bool {
        let due = now >= self.next_sweep;
        if due {
            self.next_sweep = now + SWEEP_MS;
        }
        due
    }

    /// Whether a draining worker is done: it owns nothing and nothing is queued for it, or the
    /// grace period is over (dropping its connections then closes whatever is left).
    pub fn drained(&self, now: u64, idle: bool, setup: &WorkerSetup) -> bool {
        self.drain_deadline.is_some_and(|deadline| (idle && setup.handoff.queued() == 0) || now >= deadline)
    }
}

/// Waits for the kernel with `wait` (given how long it may block), at the two protocol points
/// every worker loop shares. A worker that may sleep announces itself idle to the hand-off
/// (`prepare_sleep`: it may then be rung for a new connection) and goes offline for snapshot
/// reclamation (asleep it holds no snapshot, so it never holds a reload back); awake again it
/// comes back online before reading one. A worker that only polls (timeout zero) passes a
/// quiescent point instead: no connection holds a borrowed chunk (each turn holds its pending
/// output before returning), and the last turn's snapshot guard is gone.
pub fn wait<T>(
    setup: &WorkerSetup,
    reader: &mut Reader<'_, Snapshot>,
    timeout: Option<Duration>,
    handed: bool,
    wait: impl FnOnce(Option<Duration>) -> io::Result<T>,
) -> io::Result<T> {
    setup.sources.stats.workers[setup.id].turns.incr();
    let may_sleep = timeout != Some(Duration::ZERO) && setup.handoff.prepare_sleep(setup.id, handed);
    if may_sleep {
        reader.offline();
    }
    let waited = wait(if may_sleep { timeout } else { Some(Duration::ZERO) });
    if may_sleep {
        setup.handoff.woke(setup.id);
        reader.online();
    } else {
        reader.quiescent();
    }
    waited
}

/// Adopts up to the worker's fair share of queued connections (at most `ADOPT_BATCH` and
/// `room`), calling `adopt` with each, which returns how many the worker owns then; or hands
/// the next one to a worker with fewer (`Handoff::take`). Publishes the worker's load first
/// and last. Returns whether it handed one on: the worker may then sleep with connections
/// queued (`Handoff::prepare_sleep`).
pub fn adopt_queued(
    setup: &WorkerSetup,
    mut owned: usize,
    room: usize,
    mut adopt: impl FnMut(Endpoint) -> usize,
) -> bool {
    let handoff = &*setup.handoff;
    handoff.publish_load(setup.id, owned);
    let mut handed = false;
    for _ in 0..handoff.fair_share().min(ADOPT_BATCH).min(room) {
        match handoff.take(setup.id, owned) {
            Take::Item(accepted) => owned = adopt(accepted),
            Take::Handed => {
                handed = true;
                break;
            }
            Take::Empty => break,
        }
    }
    handoff.publish_load(setup.id, owned);
    handed
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule::new()
    }
}

/// What every connection of the worker shares during one turn.
pub fn context<'w>(
    setup: &'w WorkerSetup,
    snapshot: &'w Snapshot,
    date: &'w DateCache,
    rendered: &'w Rendered,
    (started, now): (u64, u64),
    draining: bool,
) -> Ctx<'w> {
    Ctx {
        snapshot,
        sources: &setup.sources,
        date,
        rendered,
        limits: &setup.limits,
        timeouts: &setup.timeouts,
        now_ms: now,
        turn_started: started,
        draining,
        stats: &setup.sources.stats.workers[setup.id],
        access: &setup.access,
    }
}

/// Applies a connection's verdict: `false` means close it; `Again` also queues it on `ready`.
fn keep(verdict: Keep, token: u64, ready: &mut Vec<u64>) -> bool {
    match verdict {
        Keep::Yes => true,
        Keep::Again => {
            ready.push(token);
            true
        }
        Keep::No => false,
    }
}
