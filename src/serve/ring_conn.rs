//! The io_uring transport: one client connection driven by completions instead of readiness.
//!
//! epoll says "fd 9 is readable" and the worker then calls `recv`; io_uring is told once "keep
//! receiving on fd 9" (a multishot receive) and hands over the bytes themselves, in a buffer the
//! kernel took from the worker's provided-buffer ring. So a connection here reacts to three
//! completions — data (or end of stream) arrived, a send finished, a full socket became writable
//! again — and never makes a syscall on the hot path: the receive is armed once per connection,
//! each answer is one `IORING_OP_SEND` (`SENDMSG` for several buffers) queued for the worker's next
//! `io_uring_enter`, and the framing, close decision, timers and counting are the epoll transport's
//! own [`Link`].
//!
//! The rules that keep the kernel's view of memory sound:
//! - A send in flight reads the connection's output queue as it was queued: while one is in
//!   flight nothing is added to the queue (new input waits in the [`InBuf`]), and the
//!   [`SendMsg`] holding its iovecs is kept until the completion.
//! - A connection with an operation in flight is never dropped: closing it cancels what is in
//!   flight and waits for the last completion ([`RingConn::in_flight`]); the socket stays open
//!   meanwhile (io_uring holds a reference), so the worker keeps the slot.
//! - Input that arrives while a response is still going out is kept in the connection's
//!   buffer; past [`PAUSE_AT`] bytes the receive is cancelled until the output is sent, so a
//!   client that pipelines without reading cannot grow it without bound.
//!
//! Large file bodies are the exception: `sendfile(2)` has no io_uring equivalent short of
//! `IORING_OP_SPLICE` through a pipe, so they are sent with the syscall, and a full socket
//! arms an `IORING_OP_POLL_ADD` for `POLLOUT` to resume (docs/io_uring.md says why).

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use crate::endpoint::{Endpoint, Role};
use crate::serve::inbuf::{InBuf, Spares};
use crate::serve::link::{Ctx, Keep, Link, State, Timeouts};
use crate::serve::out_queue::{self, OutQueue, Turn, MAX_IOV};
use crate::serve::respond::PathBufs;
use crate::sys::uring::{Completion, SendMsg, Submissions};
use crate::sys::{clock, socket};

/// The most bytes of a file sent per `sendfile` before the connection lets the others go first:
/// the epoll backend's share (see there).
const FILE_SHARE: u64 = out_queue::FILE_SHARE;
/// Buffered input beyond which the receive is cancelled until the pending output is sent.
pub const PAUSE_AT: usize = 256 * 1024;
/// Steps one call may take (each a parse of buffered input or a `sendfile`), as in epoll.
const TURN_BUDGET: usize = 16;

/// What a completion was for: the low two bits of a token's slot half (see [`user_data`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Recv = 0,
    Send = 1,
    Poll = 2,
    Cancel = 3,
}

/// Slot indexes stay below this (a slab of 2^30 connections is beyond any fd limit), leaving
/// bits 30 and 31 of a token for the [`Op`].
pub const MAX_SLOTS: u64 = 1 << 30;

/// The `user_data` of an operation of the connection behind slab `token`.
pub fn user_data(token: u64, op: Op) -> u64 {
    debug_assert!(token & 0xffff_ffff < MAX_SLOTS);
    token | (op as u64) << 30
}

/// Splits a completion's `user_data` into the slab token and the operation.
pub fn split(user_data: u64) -> (u64, Op) {
    let op = match (user_data >> 30) & 3 {
        0 => Op::Recv,
        1 => Op::Send,
        2 => Op::Poll,
        _ => Op::Cancel,
    };
    (user_data & !(3 << 30), op)
}

/// What a ring connection borrows from its worker while it handles a completion.
pub struct Io<'a, 'r> {
    pub sq: &'a mut Submissions<'r>,
    /// Spare send messages: a send takes one and gives it back when it completes, so sends
    /// allocate nothing once the pool has grown to the worker's most concurrent sends.
    pub pool: &'a mut Vec<Box<SendMsg>>,
    pub paths: &'a mut PathBufs,
    /// Emptied input buffers, for the next request split across two receives.
    pub spares: &'a mut Spares,
}

/// One client connection on the ring.
pub struct RingConn {
    link: Link,
    inbuf: InBuf,
    out: OutQueue,
    ops: InFlight,
}

/// The connection's operations and transport state.
#[derive(Default)]
struct InFlight {
    /// The multishot receive is armed (until a completion without `IORING_CQE_F_MORE`).
    recv: bool,
    /// The send in flight, with the message it reads.
    send: Option<Box<SendMsg>>,
    /// A `POLLOUT` poll is in flight (a `sendfile` found the socket full).
    poll: bool,
    /// The receive was cancelled because too much input is buffered.
    paused: bool,
    /// The client sent end of stream.
    eof: bool,
    /// Closing: everything in flight was cancelled; the slot is freed at the last completion.
    dead: bool,
    /// Bytes of file chunks still allowed before yielding to other connections (and pacing the
    /// connection, `Link::pace`): `FILE_SHARE` for each download, renewed when the queue empties.
    file_budget: u64,
}

impl RingConn {
    pub fn new(accepted: Endpoint, now_ms: u64, timeouts: &Timeouts) -> Self {
        RingConn {
            link: Link::new(accepted, now_ms, timeouts),
            inbuf: InBuf::default(),
            out: OutQueue::default(),
            ops: InFlight { file_budget: FILE_SHARE, ..InFlight::default() },
        }
    }

    /// Whether the connection came from the public listener (only those are counted).
    pub fn is_public(&self) -> bool {
        self.link.role == Role::Public
    }

    /// The timer deadline, for the worker's sweep (a closing connection has none).
    pub fn deadline_ms(&self) -> u64 {
        if self.ops.dead {
            u64::MAX
        } else {
            self.link.deadline_ms
        }
    }

    /// Whether an operation of this connection may still complete: it must not be dropped yet.
    pub fn in_flight(&self) -> bool {
        self.ops.recv || self.ops.send.is_some() || self.ops.poll
    }

    /// Arms the receive of a connection just adopted under `token`.
    pub fn start(&mut self, token: u64, io: &mut Io<'_, '_>) -> Keep {
        arm_recv(&self.link, &mut self.ops, token, io)
    }

    /// Begins closing: cancels everything in flight. The worker drops the connection once
    /// [`RingConn::in_flight`] is false.
    pub fn kill(&mut self, token: u64, io: &mut Io<'_, '_>) {
        if self.ops.dead {
            return;
        }
        self.ops.dead = true;
        if self.in_flight() && io.sq.cancel_fd(self.link.fd.as_fd(), user_data(token, Op::Cancel)).is_err() {
            // No room even after submitting: shutting the socket down ends its operations too.
            let _ = socket::shutdown_both(self.link.fd.as_fd());
        }
    }

    /// Handles one completion of this connection. `data` is what a receive brought (from a
    /// provided buffer the worker gives back after this call).
    pub fn on_completion(
        &mut self,
        token: u64,
        op: Op,
        done: &Completion,
        data: &[u8],
        ctx: &Ctx<'_>,
        io: &mut Io<'_, '_>,
    ) -> Keep {
        match op {
            Op::Recv => {
                if !done.more() {
                    self.ops.recv = false;
                }
            }
            Op::Send => {
                if let Some(msg) = self.ops.send.take() {
                    io.pool.push(msg);
                }
            }
            Op::Poll => self.ops.poll = false,
            Op::Cancel => return if self.ops.dead { Keep::No } else { Keep::Yes },
        }
        if self.ops.dead {
            return Keep::No; // the worker frees the slot once nothing is in flight
        }
        let RingConn { link, inbuf, out, ops } = self;
        out.turn(|out| {
            match op {
                Op::Recv => match done.result {
                    n if n > 0 => on_input(link, ops, inbuf, out, data, ctx, io),
                    0 => ops.eof = true,
                    // The buffer ring ran dry: armed again below.
                    e if -e == crate::sys::ENOBUFS => ctx.stats.recv_buffers_exhausted.incr(),
                    e if -e == crate::sys::ECANCELED && ops.paused => {}
                    _ => return Keep::No, // ECONNRESET and friends
                },
                Op::Send => match done.result {
                    n if n > 0 => {
                        out.advance(n as usize);
                        // Progress: the send timer runs from here.
                        link.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                        if out.is_empty() {
                            // The completion was posted before this turn began: its start is
                            // the time the batch was sent by, without a clock read.
                            sent_all(link, ops, ctx, ctx.turn_started);
                        }
                    }
                    _ => return Keep::No, // EPIPE, ECONNRESET: the client is gone
                },
                Op::Poll | Op::Cancel => {}
            }
            pump(link, ops, inbuf, out, token, ctx, io)
        })
    }

    /// Runs the state machine without a completion: after [`Keep::Again`], and once when the
    /// server starts draining.
    pub fn drive(&mut self, token: u64, ctx: &Ctx<'_>, io: &mut Io<'_, '_>) -> Keep {
        if self.ops.dead {
            return Keep::No;
        }
        let RingConn { link, inbuf, out, ops } = self;
        out.turn(|out| pump(link, ops, inbuf, out, token, ctx, io))
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort), else close.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>) -> Keep {
        if self.ops.send.is_none() {
            self.link.time_out(&mut self.inbuf, &mut self.out, ctx);
        }
        Keep::No
    }
}

fn arm_recv(link: &Link, ops: &mut InFlight, token: u64, io: &mut Io<'_, '_>) -> Keep {
    if ops.recv || ops.eof {
        return Keep::Yes;
    }
    match io.sq.recv_multishot(link.fd.as_fd(), user_data(token, Op::Recv)) {
        Ok(()) => {
            ops.recv = true;
            ops.paused = false;
            Keep::Yes
        }
        Err(_) => Keep::No,
    }
}

/// Takes in bytes a receive brought: answered at once when the connection is waiting for a
/// request, otherwise kept until the output in flight is sent.
fn on_input<'s>(
    link: &mut Link,
    ops: &mut InFlight,
    inbuf: &mut InBuf,
    out: &mut Turn<'_, 's>,
    data: &[u8],
    ctx: &Ctx<'s>,
    io: &mut Io<'_, '_>,
) {
    if link.state != State::Open {
        return; // closing or lingering: input is discarded
    }
    link.batch_started.get_or_insert(ctx.turn_started);
    let busy = ops.send.is_some() || ops.poll || !out.is_empty() || link.parse_pending;
    if busy {
        // A send in flight reads the queue: nothing may be added until it completes.
        inbuf.keep_from(data, io.spares);
        link.parse_pending = true;
        return;
    }
    if inbuf.is_empty() {
        // The common case: answer straight from the kernel's buffer; copy only an incomplete
        // tail into the connection's own.
        let used = link.process(data, out, io.paths, ctx);
        if link.state == State::Open {
            inbuf.keep_from(&data[used..], io.spares);
        }
    } else {
        inbuf.keep(data);
        let used = link.process(inbuf.pending(), out, io.paths, ctx);
        inbuf.consume_into(used, io.spares);
    }
    link.after_process(inbuf);
    if link.batch_requests == 0 && inbuf.is_empty() && !link.parse_pending {
        // Nothing answered and nothing half-read: this read must not start a later request's clock.
        link.batch_started = None;
    }
}

/// Moves the connection on until it waits for a completion: sends what is queued, closes,
/// answers buffered requests, or arms the receive.
fn pump<'s>(
    link: &mut Link,
    ops: &mut InFlight,
    inbuf: &mut InBuf,
    out: &mut Turn<'_, 's>,
    token: u64,
    ctx: &Ctx<'s>,
    io: &mut Io<'_, '_>,
) -> Keep {
    for _ in 0..TURN_BUDGET {
        if ops.send.is_some() || ops.poll {
            return pause_if_full(ops, inbuf, token, io);
        }
        if !out.is_empty() {
            if !link.send_armed {
                // The send timer: armed when output starts waiting, moved on by each progress.
                link.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                link.send_armed = true;
            }
            if out.front_is_file() {
                match out.send_front_file(link.fd.as_fd(), ops.file_budget) {
                    Ok(Some(sent)) => {
                        link.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                        ops.file_budget -= sent as u64;
                        // Done first: a download that ends exactly with its share (5 MiB is 20
                        // of them) is finished, not paced and yielded with its bookkeeping
                        // skipped (its duration went unrecorded, tests/bigfiles.rs).
                        if out.is_empty() {
                            sent_all(link, ops, ctx, clock::monotonic_ns());
                            continue;
                        }
                        if ops.file_budget == 0 {
                            ops.file_budget = FILE_SHARE;
                            link.pace();
                            // Input goes on arriving while the download yields: the same bound
                            // as behind a send in flight, or a client whose reads keep the
                            // socket from filling would grow `inbuf` without one.
                            if pause_if_full(ops, inbuf, token, io) == Keep::No {
                                return Keep::No;
                            }
                            return Keep::Again; // the other connections first
                        }
                        continue;
                    }
                    Ok(None) => {
                        if io.sq.poll_writable(link.fd.as_fd(), user_data(token, Op::Poll)).is_err() {
                            return Keep::No;
                        }
                        ops.poll = true;
                        return Keep::Yes;
                    }
                    Err(_) => return Keep::No,
                }
            }
            let mut msg = io.pool.pop().unwrap_or_else(SendMsg::new);
            // No `OutQueue::coalesce` here, unlike epoll: a pipelined batch goes out as one iovec
            // per response. Copied into one stretch, it was read by the kernel a turn later from
            // a buffer each connection keeps until its send completes, colder than epoll's, which
            // is reused at once: 0.98× the server CPU without the copy here, 1.04× on epoll
            // (docs/benchmarks.md).
            let mut iov = [const { MaybeUninit::uninit() }; MAX_IOV];
            let (n, file_follows) = out.gather(&mut iov);
            // SAFETY: `gather` initialised `iov[..n]`, and `MaybeUninit<T>` has `T`'s layout.
            msg.set(unsafe { std::slice::from_raw_parts(iov.as_ptr().cast(), n) });
            // SAFETY: the iovecs point into the queue's chunks: snapshot bytes (borrowed for this
            // turn, then held by the queue's own `Arc`s at the same address) and the queue's own
            // buffer, which is not written while `ops.send` is set (`on_input` keeps new input
            // aside); the ring never coalesces, so no chunk is in the batch buffer. The chunks
            // leave the queue only in `advance`, after that completion; `msg` is kept in
            // `ops.send` until then; and a connection with a send in flight is never dropped
            // (`in_flight`).
            let queued =
                unsafe { io.sq.send_msg(link.fd.as_fd(), &msg, file_follows, user_data(token, Op::Send)) };
            if queued.is_err() {
                io.pool.push(msg);
                return Keep::No;
            }
            ops.send = Some(msg);
            return Keep::Yes;
        }
        match link.state {
            State::Open => {}
            State::Closing => {
                // The last response is out. Half-close, then linger: the receive discards what
                // the client still sends until its end of stream or the linger timer.
                if socket::shutdown_write(link.fd.as_fd()).is_err() {
                    return Keep::No;
                }
                link.state = State::Lingering;
                inbuf.release_into(io.spares);
                out.shrink(None); // the queue is empty
                link.deadline_ms = ctx.now_ms + ctx.timeouts.linger_ms;
                if ops.eof {
                    return Keep::No;
                }
                return arm_recv(link, ops, token, io);
            }
            State::Lingering => return if ops.eof { Keep::No } else { arm_recv(link, ops, token, io) },
        }
        if link.parse_pending {
            let used = link.process(inbuf.pending(), out, io.paths, ctx);
            inbuf.consume_into(used, io.spares);
            link.after_process(inbuf);
            continue;
        }
        if ops.eof {
            return Keep::No; // the client closed its side and everything is answered
        }
        if ctx.draining && link.is_idle(out, inbuf) {
            // Between requests while shutting down: close with a FIN and linger (as epoll does).
            link.state = State::Closing;
            continue;
        }
        link.arm_read_timer(out, ctx, None);
        return arm_recv(link, ops, token, io);
    }
    Keep::Again
}

/// The output queue emptied, after a send completion or a file's last `sendfile`: the batch is
/// answered (its send timer disarmed, its durations recorded), and the next download gets a whole
/// file share. The share is per download, as epoll's is per flush: renewed only when spent, what
/// each 190 KiB response left of it ran out on the next one, which was then paced
/// (`TCP_NOTSENT_LOWAT`), and every later response went out in two `sendfile`s a poll apart (1.74
/// a response, docs/benchmarks.md). `sent_ns` is when the last byte was handed to the kernel, or
/// a reading no earlier (`sys::clock::monotonic_ns`).
fn sent_all(link: &mut Link, ops: &mut InFlight, ctx: &Ctx<'_>, sent_ns: u64) {
    link.send_armed = false;
    link.observe_batch(ctx, sent_ns);
    ops.file_budget = FILE_SHARE;
}

/// While output is in flight or a download yields its turn: stop receiving once too much input
/// is buffered behind it.
fn pause_if_full(ops: &mut InFlight, inbuf: &InBuf, token: u64, io: &mut Io<'_, '_>) -> Keep {
    if ops.recv && !ops.paused && inbuf.len() >= PAUSE_AT {
        if io.sq.cancel(user_data(token, Op::Recv), user_data(token, Op::Cancel)).is_err() {
            return Keep::No;
        }
        ops.paused = true;
    }
    Keep::Yes
}
