//! The epoll transport: one client connection's bytes — read, flush, linger, timers — driving
//! the responder for each request it frames. It knows HTTP only as far as framing: where a
//! request head ends (the parser says), how long its body is (to discard it), and whether the
//! connection stays open (the responder's [`Outcome`](crate::serve::respond::Outcome) says).
//!
//! The worker calls [`Conn::drive`] whenever epoll reports the socket readable or writable
//! (edge-triggered, so the connection remembers what it last saw: `readable` stays true until a
//! read returns `EAGAIN`, `writable` until a send does). One turn of the loop:
//! 1. flush pending output; if the socket is full, wait for `EPOLLOUT`;
//! 2. if closing: `shutdown(SHUT_WR)`, then *linger* — read and discard what the client still
//!    sends until it closes or a short timer fires, so the kernel does not answer unread input
//!    with a reset that could destroy the response we just sent;
//! 3. parse every complete request already buffered and queue all their responses (pipelining);
//! 4. read more.
//!
//! Input is read into the worker's shared scratch buffer, and only an incomplete request is
//! copied into the connection's own [`InBuf`]; an idle connection holds no buffers at all.
//! Each request is counted and recorded once, from its `Outcome`, in [`Link::finish`].

use std::os::fd::{AsFd, BorrowedFd};

use crate::endpoint::{Endpoint, Role};
use crate::serve::inbuf::InBuf;
use crate::serve::link::{Bufs, Ctx, Keep, Link, State, Timeouts};
use crate::serve::out_queue::{Flush, OutQueue, Turn};
use crate::sys::{socket, EAGAIN, EINTR};

/// Loop turns one `drive` call may take (each reads up to the scratch size, 64 KiB), so that one
/// busy client cannot keep its worker from the other connections and the timers.
const TURN_BUDGET: usize = 16;

/// One client connection: its output queue, its buffered input, its HTTP state and what epoll
/// last reported — parts, so that a turn can lend the queue and the input to the state's methods.
pub struct Conn {
    link: Link,
    edge: Edge,
    inbuf: InBuf,
    out: OutQueue,
}

/// Edge-triggered readiness, remembered between events.
struct Edge {
    /// No `EAGAIN` from recv since the last `EPOLLIN`.
    readable: bool,
    /// No `EAGAIN` from send since the last `EPOLLOUT`.
    writable: bool,
    /// epoll reported `EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`: read until end of stream, because no
    /// further edge will come for the close.
    peer_closed: bool,
}

impl Conn {
    pub fn new(accepted: Endpoint, now_ms: u64, timeouts: &Timeouts) -> Self {
        // A new socket may already hold a request (TCP_DEFER_ACCEPT makes it likely).
        let edge = Edge { readable: true, writable: true, peer_closed: false };
        Conn {
            link: Link::new(accepted, now_ms, timeouts),
            edge,
            inbuf: InBuf::default(),
            out: OutQueue::default(),
        }
    }

    /// Whether the connection came from the public listener (only those are counted).
    pub fn is_public(&self) -> bool {
        self.link.role == Role::Public
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.link.fd.as_fd()
    }

    /// The timer deadline, for the worker's sweep.
    pub fn deadline_ms(&self) -> u64 {
        self.link.deadline_ms
    }

    /// Records what epoll reported and runs the state machine.
    pub fn on_event(
        &mut self,
        readable: bool,
        writable: bool,
        hangup: bool,
        ctx: &Ctx<'_>,
        bufs: &mut Bufs,
    ) -> Keep {
        self.edge.readable |= readable;
        self.edge.writable |= writable;
        self.edge.peer_closed |= hangup;
        self.drive(ctx, bufs)
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort), else close.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>) -> Keep {
        self.link.time_out(&mut self.inbuf, &mut self.out, ctx);
        Keep::No
    }

    /// Runs the state machine until it needs the kernel to report readiness again, or until its
    /// work budget is spent (then [`Keep::Again`]). The output queue is lent as a [`Turn`] on
    /// `ctx.snapshot`: output still pending when the turn ends stops borrowing from the snapshot,
    /// because the worker may pass a quiescent point before it is sent.
    pub fn drive(&mut self, ctx: &Ctx<'_>, bufs: &mut Bufs) -> Keep {
        let Conn { link, edge, inbuf, out } = self;
        out.turn(|out| link.turn(edge, out, inbuf, ctx, bufs))
    }
}

/// The epoll side of a connection's state machine.
impl Link {
    fn turn<'s>(
        &mut self,
        edge: &mut Edge,
        out: &mut Turn<'_, 's>,
        inbuf: &mut InBuf,
        ctx: &Ctx<'s>,
        bufs: &mut Bufs,
    ) -> Keep {
        for _ in 0..TURN_BUDGET {
            if !out.is_empty() {
                if !edge.writable {
                    return Keep::Yes;
                }
                // Coalescing here, not inside `flush`: one argument fewer to the send loop, which
                // cost it ~6 instructions a request in saved registers (callgrind).
                out.coalesce(&mut bufs.batches);
                match out.flush(self.fd.as_fd()) {
                    Ok(Flush::Done) => {
                        self.send_armed = false;
                        self.observe_batch(ctx, crate::sys::clock::monotonic_ns());
                    }
                    Ok(Flush::Yield) => {
                        // A large file had its share of this turn; the others get theirs first.
                        // Progress was made, so the send timer starts again.
                        self.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                        self.send_armed = true;
                        self.pace();
                        return Keep::Again;
                    }
                    Ok(Flush::Blocked { progress }) => {
                        edge.writable = false;
                        // The send timer runs from the last progress, and is armed afresh for
                        // new output even if an older (shorter) timer is still pending.
                        if progress || !self.send_armed {
                            self.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                            self.send_armed = true;
                        }
                        return Keep::Yes;
                    }
                    Err(_) => return Keep::No, // EPIPE, ECONNRESET: the client is gone
                }
            }
            match self.state {
                State::Open => {}
                State::Closing => {
                    // The last response is out. Half-close, then linger (see module docs).
                    if socket::shutdown_write(self.fd.as_fd()).is_err() {
                        return Keep::No;
                    }
                    self.state = State::Lingering;
                    inbuf.release();
                    out.shrink(Some(&mut bufs.batches)); // the queue is empty: a last batch's buffer goes back
                    self.deadline_ms = ctx.now_ms + ctx.timeouts.linger_ms;
                    return self.linger(edge, &mut bufs.scratch);
                }
                State::Lingering => return self.linger(edge, &mut bufs.scratch),
            }
            if self.parse_pending {
                let used = self.process(inbuf.pending(), out, &mut bufs.paths, ctx);
                inbuf.consume(used);
                self.after_process(inbuf);
                continue;
            }
            if ctx.draining && self.is_idle(out, inbuf) && !edge.readable {
                // Between requests while shutting down. The client cannot know, and its next
                // request may already be here: close with a FIN and linger rather than close(2),
                // which would answer those bytes with a reset. It sees end of stream before any
                // response byte, which it may retry elsewhere (RFC 9112 §9.3.1).
                self.state = State::Closing;
                continue;
            }
            if !edge.readable {
                self.arm_read_timer(out, ctx, Some(&mut bufs.batches));
                return Keep::Yes;
            }
            match self.read(edge, out, inbuf, ctx, bufs) {
                Ok(true) => {}
                Ok(false) => return Keep::No, // the client closed its side
                Err(()) => return Keep::No,
            }
        }
        if out.is_empty() {
            self.arm_read_timer(out, ctx, Some(&mut bufs.batches));
        }
        Keep::Again
    }

    /// Reads once, and processes what arrived. `Ok(false)`: end of stream.
    fn read<'s>(
        &mut self,
        edge: &mut Edge,
        out: &mut Turn<'_, 's>,
        inbuf: &mut InBuf,
        ctx: &Ctx<'s>,
        bufs: &mut Bufs,
    ) -> Result<bool, ()> {
        if inbuf.is_empty() {
            // The common case: read into the worker's scratch buffer and answer from there; only
            // an incomplete tail is copied into the connection's own buffer.
            let n = match socket::recv(self.fd.as_fd(), &mut bufs.scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) => return read_error(edge, e),
            };
            short_read(edge, n, bufs.scratch.len());
            self.batch_started.get_or_insert(ctx.turn_started);
            let used = self.process(&bufs.scratch[..n], out, &mut bufs.paths, ctx);
            if self.state == State::Open {
                inbuf.keep(&bufs.scratch[used..n]);
            }
        } else {
            // Append to what is buffered. Reading past the head limit would only be rejected:
            // the parser answers 431 once the buffer exceeds it.
            // A chunked body being buffered may be up to `--max-body`: read it in large steps.
            let spare = inbuf.spare(if self.body_pending { 64 * 1024 } else { 4096 });
            let asked = spare.len();
            let n = match socket::recv(self.fd.as_fd(), spare) {
                Ok(n) => n,
                Err(e) => {
                    inbuf.commit(0);
                    return read_error(edge, e);
                }
            };
            inbuf.commit(n);
            if n == 0 {
                return Ok(false);
            }
            short_read(edge, n, asked);
            self.batch_started.get_or_insert(ctx.turn_started);
            let used = self.process(inbuf.pending(), out, &mut bufs.paths, ctx);
            inbuf.consume(used);
        }
        self.after_process(inbuf);
        if self.batch_requests == 0 && inbuf.is_empty() && !self.parse_pending {
            // This read answered nothing and left no request half-read (a discarded body, blank
            // lines): it must not start the clock of a later request.
            self.batch_started = None;
        }
        Ok(true)
    }

    /// Lingering close: discard input until end of stream, an error, or the timer.
    fn linger(&mut self, edge: &mut Edge, scratch: &mut [u8]) -> Keep {
        for _ in 0..TURN_BUDGET {
            match socket::recv(self.fd.as_fd(), scratch) {
                Ok(0) => return Keep::No,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                    edge.readable = false;
                    return Keep::Yes;
                }
                Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                Err(_) => return Keep::No,
            }
        }
        Keep::Again
    }
}

/// A read that returned less than it asked for emptied the socket's receive queue (TCP
/// hands over everything queued, up to the length asked). With edge-triggered epoll, bytes
/// arriving later raise a new edge, so there is no need to read again until `EAGAIN`: that
/// saves one `recv` per request. Not after a hang-up, whose edge has been consumed already.
fn short_read(edge: &mut Edge, n: usize, asked: usize) {
    if n < asked && !edge.peer_closed {
        edge.readable = false;
    }
}

fn read_error(edge: &mut Edge, e: std::io::Error) -> Result<bool, ()> {
    match e.raw_os_error() {
        Some(EAGAIN) => {
            edge.readable = false;
            Ok(true)
        }
        Some(EINTR) => Ok(true),
        _ => Err(()), // ECONNRESET and friends
    }
}

#[cfg(test)]
mod tests {
    //! The transport driven by hand over a socket pair, where what it keeps between reads can
    //! be looked at.
    use super::*;
    use crate::cache::{load, LoadOptions};
    use crate::http::chunked;
    use crate::http::date::DateCache;
    use crate::http::request::Limits;
    use crate::observe::access::AccessSink;
    use crate::observe::scrape::Sources;
    use crate::serve::out_queue::BatchSpares;
    use crate::serve::rendered::Rendered;
    use crate::serve::respond::PathBufs;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// Regression: while a chunked body arrived, every read scanned it again from its start
    /// (a body of many small chunks sent in small pieces cost work quadratic in its size).
    /// Between reads the connection now keeps how far the body has been scanned.
    #[test]
    fn a_chunked_body_arriving_in_pieces_is_scanned_once() {
        let root = std::env::temp_dir().join(format!("atomserve-transport-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<!doctype html>\n").unwrap();
        let opts = LoadOptions::for_tests(root.clone(), false);
        let snapshot = load(&opts).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let sources = Sources::for_tests();
        let stats = sources.stats.clone();
        let (date, limits, timeouts) = (DateCache::new(), Limits::default(), Timeouts::default());
        let access = AccessSink { text: None, otlp: None };
        let rendered = Rendered::new(snapshot.serial(), date.text());
        let ctx = Ctx {
            snapshot: &snapshot,
            sources: &sources,
            date: &date,
            rendered: &rendered,
            limits: &limits,
            timeouts: &timeouts,
            now_ms: 0,
            turn_started: crate::sys::clock::monotonic_ns(),
            draining: false,
            stats: &stats.workers[0],
            access: &access,
        };
        let mut bufs =
            Bufs { scratch: vec![0; 64 * 1024], paths: PathBufs::default(), batches: BatchSpares::new() };
        let (server, mut client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut conn = Conn::new(Endpoint { fd: server.into(), role: Role::Public }, 0, &timeouts);

        let head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        let body: Vec<u8> = b"1\r\nx\r\n".repeat(2000).into_iter().chain(*b"0\r\n\r\n").collect();
        client.write_all(head).unwrap();
        let mut sent = 0;
        for piece in body.chunks(600) {
            client.write_all(piece).unwrap();
            sent += piece.len();
            assert_ne!(conn.on_event(true, true, false, &ctx, &mut bufs), Keep::No);
            if sent < body.len() {
                // Still waiting for the end, with the scan kept at the last complete element.
                let at = conn.link.body_scan.scanned();
                assert!(conn.link.body_pending && at + 6 > sent && at <= sent, "scanned to {at} of {sent}");
            }
        }
        assert_eq!(conn.link.body_scan, chunked::Scanner::default(), "dropped once the body ended");
        let mut answer = [0u8; 64];
        let n = client.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 405 "), "{:?}", String::from_utf8_lossy(&answer[..n]));
    }
}
