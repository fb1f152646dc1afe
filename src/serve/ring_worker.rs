//! A worker on io_uring (`--io uring`): the same thread, pinning, hand-off, reclamation and
//! drain as the epoll worker ([`crate::serve::worker`]), with one ring instead of an epoll set.
//!
//! The loop: queue what the last turn decided (sends, receives to arm, cancels), then one
//! `io_uring_enter(2)` that submits it all and waits for at least one completion — announcing
//! itself idle and going offline first, exactly where the epoll worker does before
//! `epoll_wait`. Then, on the snapshot current for this turn, hand every completion to its
//! connection ([`RingConn`]), take new connections from the hand-off queue (each costs one
//! multishot-receive SQE, no syscall), and once a second expire timers.
//!
//! The bell is an `IORING_OP_READ` of the worker's eventfd, kept armed: the acceptor's write
//! completes it, so the idle-worker protocol of [`crate::serve::handoff`] is unchanged — a
//! worker blocked in `io_uring_enter` with that read armed is woken as one blocked in
//! `epoll_wait` on the eventfd is, and is offline for snapshot reclamation as that one is.

use std::io;
use std::os::fd::AsFd;

use crate::http::date::DateCache;
use crate::serve::inbuf::Spares;
use crate::serve::link::Keep;
use crate::serve::rendered::Rendered;
use crate::serve::respond::PathBufs;
use crate::serve::ring_conn::{self, Io, RingConn};
use crate::serve::slab::{self, Slab};
use crate::serve::worker::{self, Schedule, WorkerSetup};
use crate::sys::uring::{Completion, Ring, SendMsg};

/// The token of the bell's read.
const BELL: u64 = slab::RESERVED;
/// Inputs per turn from which the wait collects a batch (fewer: it wakes at the first
/// completion). Measured: 8 starves the client at 16 connections (half the throughput), 16 keeps
/// every case from 1 to 64 connections at or below epoll's CPU per request.
const BATCH_FROM: usize = 16;
/// Input buffers made at start for requests split across two receives (`inbuf::Spares`):
/// 16 × 4 KiB.
const SPARES_READY: usize = 16;
/// Submission ring size (the completion ring is four times larger, and overflow is kept by the
/// kernel: `IORING_FEAT_NODROP`).
const RING_ENTRIES: u32 = 1024;
/// Memory for provided receive buffers per worker — what an idle connection does *not* hold:
/// 1 MiB, resident from the start (the kernel cycles through all of it). Cut into 4 × 256 KiB
/// consumed a receive at a time, or on kernels before 6.12 into 256 × 4 KiB, one per receive
/// (`sys::uring::Buffers`). Receives beyond that between two turns end with `ENOBUFS` and are
/// armed again.
const BUFFER_MEMORY: usize = 1024 * 1024;

/// Runs the worker until the hand-off stops it and its connections are done.
pub fn run(setup: WorkerSetup) -> io::Result<()> {
    worker::pin(&setup);
    let handoff = &*setup.handoff;
    let bell = handoff.bell(setup.id);

    let mut reader = setup.sources.cache.reader(setup.id);
    let mut schedule = Schedule::new();
    // Declared before the ring, so dropped after it: the ring goes first (cancelling what is in
    // flight), then the memory its operations pointed into.
    let mut conns: Slab<RingConn> = Slab::default();
    let mut pool: Vec<Box<SendMsg>> = Vec::new();
    let mut bell_value: Box<u64> = Box::new(0);
    let mut ring = Ring::new(RING_ENTRIES, BUFFER_MEMORY)?;
    let mut completions: Vec<Completion> = Vec::with_capacity(RING_ENTRIES as usize * 4);
    let mut paths = PathBufs::with_capacity(256);
    let mut spares = Spares::with_ready(SPARES_READY);
    let mut date = DateCache::new();
    let mut rendered = Rendered::new(u64::MAX, date.text());
    let mut ready: Vec<u64> = Vec::new();
    let mut last_inputs = 0usize;
    // This turn handed a queued connection to a lighter worker (`worker::adopt_queued`).
    let mut handed = false;
    {
        let (mut sq, _) = ring.parts();
        // SAFETY: `bell_value` is boxed and outlives the ring (declared before it).
        unsafe { sq.read_u64(bell.as_fd(), &mut *bell_value, BELL)? };
    }
    reader.online();

    loop {
        let now = schedule.now_ms();
        if conns.is_empty() {
            setup.access.flush(&setup.sources.stats.workers[setup.id]);
        }
        let timeout = schedule.timeout(now, conns.is_empty(), !ready.is_empty());
        // A busy worker waits for a batch as large as its last one (see `Ring::submit_and_wait`).
        let batch = if last_inputs >= BATCH_FROM { last_inputs.min(RING_ENTRIES as usize) } else { 0 };
        // The sweep may have closed connections since the adoption step published the count.
        handoff.publish_load(setup.id, conns.len());
        worker::wait(&setup, &mut reader, timeout, handed, |timeout| ring.submit_and_wait(timeout, batch))?;
        completions.clear();
        if ring.completions(&mut completions) {
            setup.sources.stats.workers[setup.id].cq_overflows.incr();
        }
        last_inputs = completions.iter().filter(|c| c.buffer().is_some()).count();

        let snapshot = reader.current();
        let (started, now) = schedule.turn();
        date.refresh();
        rendered.refresh(snapshot.serial(), date.text());
        let stop_seen_now = schedule.notice_stop(now, &setup);
        let ctx = worker::context(&setup, &snapshot, &date, &rendered, (started, now), schedule.draining());
        let stats = ctx.stats;
        let closed = |conn: RingConn| {
            if conn.is_public() {
                stats.connections_closed.incr_release();
            }
        };
        let (mut sq, buffers) = ring.parts();
        let mut io = Io { sq: &mut sq, pool: &mut pool, paths: &mut paths, spares: &mut spares };
        for done in &completions {
            if done.token == BELL {
                // SAFETY: as at start-up; the read that filled it has completed.
                unsafe { io.sq.read_u64(bell.as_fd(), &mut *bell_value, BELL)? };
                continue;
            }
            let (token, op) = ring_conn::split(done.token);
            // Taken for every completion, of a live connection or not: it moves the buffer on,
            // and gives it back when it drops at the end of this iteration, whatever the verdict.
            let data = buffers.lend(done);
            if let Some(conn) = conns.get_mut(token) {
                let verdict = conn.on_completion(token, op, done, &data, &ctx, &mut io);
                settle(&mut conns, token, verdict, &mut ready, &mut io, closed);
            }
        }
        // Every completion's buffer has been given back (or is still the kernel's): 0 at rest.
        stats.recv_buffers_held.set(u64::from(buffers.held()));
        for token in std::mem::take(&mut ready) {
            if let Some(conn) = conns.get_mut(token) {
                let verdict = conn.drive(token, &ctx, &mut io);
                settle(&mut conns, token, verdict, &mut ready, &mut io, closed);
            }
        }
        if stop_seen_now {
            // Every connection once: idle ones close now, busy ones finish with a close.
            conns.retain(
                |token, conn| {
                    let verdict = conn.drive(token, &ctx, &mut io);
                    keeps(conn, token, verdict, &mut ready, &mut io)
                },
                closed,
            );
        }
        let room = (ring_conn::MAX_SLOTS - 1).saturating_sub(conns.len() as u64) as usize;
        handed = worker::adopt_queued(&setup, conns.len(), room, |accepted| {
            let mut conn = RingConn::new(accepted, now, &setup.timeouts);
            if conn.is_public() {
                stats.connections_accepted.incr();
            }
            let token = conns.vacant_token();
            match conn.start(token, &mut io) {
                Keep::No => closed(conn),
                _ => {
                    conns.insert(conn);
                }
            }
            conns.len()
        });
        if schedule.sweep_due(now) {
            setup.access.flush(stats);
            conns.retain(
                |token, conn| {
                    conn.deadline_ms() > now || {
                        let verdict = conn.on_timeout(&ctx);
                        keeps(conn, token, verdict, &mut ready, &mut io)
                    }
                },
                closed,
            );
        }
        if schedule.drained(now, conns.is_empty(), &setup) {
            setup.access.flush(stats);
            // Past the grace period, the ring is dropped first (its operations cancelled), then
            // the connections (their sockets closed) — see the declarations above.
            return Ok(());
        }
    }
}

/// Applies a connection's verdict: `Again` queues it on `ready`; `No` closes it — at once when
/// nothing of it is in flight, otherwise its operations are cancelled and the slot is freed at
/// their last completion (a later `settle` of the same token).
fn settle(
    conns: &mut Slab<RingConn>,
    token: u64,
    verdict: Keep,
    ready: &mut Vec<u64>,
    io: &mut Io<'_, '_>,
    closed: impl FnOnce(RingConn),
) {
    let Some(conn) = conns.get_mut(token) else { return };
    if !keeps(conn, token, verdict, ready, io) {
        conns.remove(token).map(closed);
    }
}

/// Whether the slab keeps the connection after `verdict` (see [`settle`]).
fn keeps(conn: &mut RingConn, token: u64, verdict: Keep, ready: &mut Vec<u64>, io: &mut Io<'_, '_>) -> bool {
    match verdict {
        Keep::Yes => true,
        Keep::Again => {
            ready.push(token);
            true
        }
        Keep::No => {
            conn.kill(token, io);
            conn.in_flight()
        }
    }
}
