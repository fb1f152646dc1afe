//! A worker: one thread pinned to one CPU, owning its connections for their whole life and
//! multiplexing them with its own epoll instance.
//!
//! The loop: wait in `epoll_wait` (announcing itself idle first, see [`crate::handoff`], and
//! going offline for snapshot reclamation, see [`crate::cache::swap`]); then, on the snapshot
//! current for this turn, drive every connection epoll reported, take new connections from the
//! hand-off queue, and once a second expire the connections whose timer ran out. No locks, no
//! allocation per request, no syscall that is not a read, a write or the wait itself.
//!
//! Shutdown: when the hand-off says stop, the worker *drains* — idle keep-alive connections are
//! closed at once, responses in flight finish (with `Connection: close`), connections still
//! queued are served — and exits when it owns nothing, or when the grace period ends.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::access::AccessSink;
use crate::cache::{Snapshot, SnapshotCell};
use crate::conn::{Conn, Ctx, Keep, Timeouts};
use crate::endpoint::FdHandoff;
use crate::handoff::Wake;
use crate::http::date::DateCache;
use crate::http::request::Limits;
use crate::metrics::Sources;
use crate::stats::{Stats, WorkerStats};
use crate::sync::Arc;
use crate::sys::affinity;
use crate::sys::epoll::{self, Epoll, Events};
use crate::sys::eventfd::EventFd;

/// The hand-off as the server uses it: accepted sockets, eventfd bells.

/// Everything a worker starts with.
pub struct WorkerSetup {
    pub id: usize,
    /// The CPU to pin to (`None`: no pinning).
    pub cpu: Option<usize>,
    pub handoff: Arc<FdHandoff>,
    /// The live snapshot; this worker reads it through `reader(id)`.
    pub cache: Arc<SnapshotCell<Snapshot>>,
    /// Counters; this worker writes `stats.workers[id]` only.
    pub stats: Arc<Stats>,
    /// What the admin endpoints read.
    pub sources: Arc<Sources>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// How long to let in-flight work finish after a stop.
    pub grace: Duration,
    /// Where this worker's access records go (text log, OTLP bridge); usually nowhere.
    pub access: AccessSink,
}

impl Wake for EventFd {
    /// Rings the worker's eventfd: its `epoll_wait` returns, now or at its next call.
    fn wake(&self) {
        self.ring();
    }
}

/// The epoll token of the worker's own bell.
const BELL: u64 = u64::MAX;
/// New connections taken from the queue per loop turn, so that a burst is shared among workers.
const ADOPT_BATCH: usize = 64;
/// How often timers are checked.
const SWEEP_MS: u64 = 1000;
/// Size of the shared read buffer: room for many pipelined requests per `recv`.
const SCRATCH: usize = 64 * 1024;

/// Runs the worker until the hand-off stops it and its connections are done.
pub fn run(setup: WorkerSetup) -> io::Result<()> {
    if let Some(cpu) = setup.cpu {
        if let Err(e) = affinity::pin_current_thread(cpu) {
            crate::log!("worker {} could not be pinned to CPU {cpu}: {e} (running unpinned)", setup.id);
        }
    }
    let handoff = &*setup.handoff;
    let bell = handoff.bell(setup.id);
    let epoll = Epoll::new()?;
    epoll.add(bell.as_fd(), epoll::READ, BELL)?;

    let mut reader = setup.cache.reader(setup.id);
    let clock = Instant::now();
    let now_ms = || clock.elapsed().as_millis() as u64;
    let mut events = Events::with_capacity(256);
    let mut conns = Slab::default();
    let mut scratch = vec![0u8; SCRATCH];
    let (mut key, mut key2) = (Vec::with_capacity(256), Vec::with_capacity(256));
    let mut date = DateCache::new();
    let mut drain_deadline: Option<u64> = None;
    // Connections that stopped at their work budget with input left (see `Keep::Again`).
    let mut ready: Vec<u64> = Vec::new();
    let mut next_sweep = now_ms() + SWEEP_MS;
    reader.online();

    loop {
        // Wait. A worker that may sleep goes offline first: asleep it holds no snapshot, so it
        // never holds reclamation back; awake again it announces itself before reading one.
        let now = now_ms();
        if conns.is_empty() {
            // About to sleep with nothing to wake for: let the access log out first.
            setup.access.flush(&setup.stats.workers[setup.id]);
        }
        let timeout = match (conns.is_empty(), drain_deadline) {
            _ if !ready.is_empty() => Some(Duration::ZERO),
            (true, None) => None,
            (_, Some(deadline)) => Some(Duration::from_millis(next_sweep.min(deadline).saturating_sub(now))),
            (false, None) => Some(Duration::from_millis(next_sweep.saturating_sub(now))),
        };
        let may_sleep = timeout != Some(Duration::ZERO) && handoff.prepare_sleep(setup.id);
        if may_sleep {
            reader.offline();
        }
        let n = epoll.wait(&mut events, if may_sleep { timeout } else { Some(Duration::ZERO) });
        if may_sleep {
            handoff.woke(setup.id);
            reader.online();
        } else {
            // A quiescent point: no connection holds a borrowed chunk (drive() holds pending
            // output before returning), and the last turn's snapshot guard is gone.
            reader.quiescent();
        }
        n?;

        // Work, on the snapshot that is current for this turn.
        let snapshot = reader.current();
        let now = now_ms();
        date.refresh();
        // Notice a stop before handling this turn's events: a request completed in the same
        // wake-up as the stop must already be answered with `Connection: close` (regression:
        // tests/h11 test_sigterm_drains saw a keep-alive answer, then a close).
        let stop_seen_now = drain_deadline.is_none() && handoff.is_stopping();
        if stop_seen_now {
            drain_deadline = Some(now + setup.grace.as_millis() as u64);
        }
        let mut ctx = Ctx {
            snapshot: &snapshot,
            scratch: &mut scratch,
            key: &mut key,
            key2: &mut key2,
            date: &date,
            limits: &setup.limits,
            timeouts: &setup.timeouts,
            now_ms: now,
            draining: drain_deadline.is_some(),
            stats: &setup.stats.workers[setup.id],
            sources: &setup.sources,
            access: &setup.access,
        };
        for event in events.iter() {
            if event.token() == BELL {
                bell.drain();
                continue;
            }
            if let Some(conn) = conns.get_mut(event.token()) {
                let verdict =
                    conn.on_event(event.is_readable(), event.is_writable(), event.is_hangup(), &mut ctx);
                if !keep(verdict, event.token(), &mut ready) {
                    conns.remove(event.token(), ctx.stats);
                }
            }
        }
        for token in std::mem::take(&mut ready) {
            if let Some(conn) = conns.get_mut(token) {
                if !keep(conn.drive(&mut ctx), token, &mut ready) {
                    conns.remove(token, ctx.stats);
                }
            }
        }
        if stop_seen_now {
            // Every connection once: idle ones close now, busy ones finish with a close.
            let stats = ctx.stats;
            conns.retain(stats, |token, conn| keep(conn.drive(&mut ctx), token, &mut ready));
        }
        for _ in 0..ADOPT_BATCH {
            let Some(accepted) = handoff.pop() else { break };
            let mut conn = Conn::new(accepted, now, &setup.timeouts);
            let public = conn.is_public();
            if public {
                ctx.stats.connections_accepted.incr();
            }
            let token = conns.vacant_token();
            if epoll.add(conn.fd(), epoll::CONNECTION, token).is_err() {
                if public {
                    ctx.stats.connections_closed.incr_release();
                }
                continue; // dropping the connection closes it
            }
            if keep(conn.drive(&mut ctx), token, &mut ready) {
                conns.insert(conn);
            } else if public {
                ctx.stats.connections_closed.incr_release();
            }
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP_MS;
            let stats = ctx.stats;
            setup.access.flush(stats);
            conns.retain(stats, |_, conn| conn.deadline_ms() > now || conn.on_timeout(&mut ctx) != Keep::No);
        }
        if let Some(deadline) = drain_deadline {
            if conns.is_empty() && handoff.queued() == 0 {
                setup.access.flush(ctx.stats);
                return Ok(());
            }
            if now >= deadline {
                setup.access.flush(ctx.stats);
                return Ok(()); // grace is over: dropping `conns` closes whatever is left
            }
        }
    }
}

/// The worker's connections, addressed by epoll token: slot index in the low 32 bits and the
/// slot's generation in the high 32, so that an event for a closed connection cannot reach a new
/// one that reused its slot within the same `epoll_wait` batch.
#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

impl Slab {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The token the next `insert` will use.
    fn vacant_token(&mut self) -> u64 {
        if self.free.is_empty() {
            self.free.push(self.slots.len() as u32);
            self.slots.push(Slot::default());
        }
        let index = *self.free.last().unwrap_or(&0);
        token(index, self.slots[index as usize].generation)
    }

    fn insert(&mut self, conn: Conn) {
        let _ = self.vacant_token();
        if let Some(index) = self.free.pop() {
            self.slots[index as usize].conn = Some(conn);
            self.len += 1;
        }
    }

    fn get_mut(&mut self, token: u64) -> Option<&mut Conn> {
        let slot = self.slots.get_mut((token & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        slot.conn.as_mut()
    }

    /// Closes the connection behind `token` (counting it in `stats` if it was public).
    fn remove(&mut self, token: u64, stats: &WorkerStats) {
        let index = (token & 0xffff_ffff) as u32;
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if let Some(conn) = slot.conn.take() {
                if conn.is_public() {
                    stats.connections_closed.incr_release();
                }
                slot.generation = slot.generation.wrapping_add(1) % (u32::MAX - 1);
                self.free.push(index);
                self.len -= 1;
            }
        }
    }

    /// Keeps the connections for which `keep(token, conn)` returns true; closes the others.
    fn retain(&mut self, stats: &WorkerStats, mut keep: impl FnMut(u64, &mut Conn) -> bool) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let t = token(index as u32, slot.generation);
            let Some(conn) = slot.conn.as_mut() else { continue };
            if !keep(t, conn) {
                self.remove(t, stats);
            }
        }
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

fn token(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}
