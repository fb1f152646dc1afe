//! The epoll transport: one client connection's bytes — read, flush, linger, timers — driving
//! the responder for each request it frames. It knows HTTP only as far as framing: where a
//! request head ends (the parser says), how long its body is (to discard it), and whether the
//! connection stays open (the responder's [`Outcome`] says).
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

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Instant, SystemTime};

use crate::cache::Snapshot;
use crate::endpoint::{Endpoint, Role};
use crate::http::chunked::{self, Scan};
use crate::http::date::DateCache;
use crate::http::request::{self, Limits, Method, Parsed, Request, MAX_HEADERS};
use crate::http::response::Status;
use crate::observe::access::{AccessRecord, AccessSink};
use crate::observe::scrape::Sources;
use crate::serve::inbuf::InBuf;
use crate::serve::out_queue::{Flush, OutQueue, Turn};
use crate::serve::respond::{self, CacheUse, Outcome, PathBufs, Service, Site};
use crate::stats::{self, WorkerStats};
use crate::sys::{socket, EAGAIN, EINTR};

/// Timeouts, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the first byte of a request head to its end.
    pub header_ms: u64,
    /// Between requests on a keep-alive connection.
    pub keep_alive_ms: u64,
    /// Without any send progress while output is pending.
    pub send_ms: u64,
    /// Lingering close: how long to wait for the client's FIN after ours.
    pub linger_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { header_ms: 10_000, keep_alive_ms: 30_000, send_ms: 30_000, linger_ms: 2_000 }
    }
}

/// Stop parsing pipelined requests once this much output is queued; the rest waits for a flush.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Also stop when this many chunks are queued (each response adds up to three).
const OUT_MAX_CHUNKS: usize = 48;

/// What every connection of a worker shares during one turn of its loop.
#[derive(Clone, Copy)]
pub struct Ctx<'w> {
    pub snapshot: &'w Snapshot,
    /// What the admin endpoints read (all workers' counters, queue, cache).
    pub sources: &'w Sources,
    pub date: &'w DateCache,
    pub limits: &'w Limits,
    pub timeouts: &'w Timeouts,
    /// Coarse monotonic time of this loop turn.
    pub now_ms: u64,
    /// The server is shutting down: finish what is in flight, take nothing new.
    pub draining: bool,
    /// This worker's counters.
    pub stats: &'w WorkerStats,
    /// Where access records go (text log, OTLP); usually nowhere.
    pub access: &'w AccessSink,
}

/// The worker's buffers, lent to one connection at a time.
pub struct Bufs {
    /// Read buffer shared by the worker's connections.
    pub scratch: Vec<u8>,
    /// The responder's path buffers.
    pub paths: PathBufs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Serving requests.
    Open,
    /// The last response is queued; close once it is sent.
    Closing,
    /// Our FIN is sent; discarding input until the client closes or the linger timer fires.
    Lingering,
}

/// What the worker does with the connection after a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Keep {
    /// Keep it; it waits for epoll (or its timer).
    Yes,
    /// Keep it, and call `drive` again soon: it used its work budget with input still waiting.
    /// Edge-triggered epoll will not report that input again, so the worker must remember.
    Again,
    /// Close it (drop the fd).
    No,
}

/// Loop turns one `drive` call may take (each reads up to the scratch size, 64 KiB), so that one
/// busy client cannot keep its worker from the other connections and the timers.
const TURN_BUDGET: usize = 16;

/// One client connection: its output queue, its buffered input, and the rest of its state —
/// three parts, so that a turn can lend the queue and the input to the state's methods.
pub struct Conn {
    link: Link,
    inbuf: InBuf,
    out: OutQueue,
}

/// A connection's socket, framing and timers.
struct Link {
    fd: OwnedFd,
    role: Role,
    state: State,
    /// `inbuf` may hold a complete request: parsing stopped at the output high-water mark.
    parse_pending: bool,
    /// `inbuf` holds a complete head whose chunked body has not all arrived: it is answered
    /// once the body's end is in (see `http::chunked`).
    body_pending: bool,
    /// How far that body has been scanned, so that each read scans only what it brought.
    body_scan: chunked::Scanner,
    /// Request body bytes still to read and throw away.
    discard: u64,
    /// Edge-triggered state: no `EAGAIN` from recv since the last `EPOLLIN`.
    readable: bool,
    /// Edge-triggered state: no `EAGAIN` from send since the last `EPOLLOUT`.
    writable: bool,
    /// epoll reported `EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`: read until end of stream, because no
    /// further edge will come for the close.
    peer_closed: bool,
    /// When the current timer expires (coarse monotonic ms).
    deadline_ms: u64,
    /// When the request being read (head, or body being discarded) started: its timer runs from
    /// there, so a client dribbling bytes cannot extend it.
    head_started_ms: Option<u64>,
    /// The send timer is armed for the output now pending.
    send_armed: bool,
    /// Requests answered so far; a connection that has not finished one is not idle.
    requests: u32,
    /// When the read that brought in the requests now being answered happened.
    batch_started: Option<Instant>,
    /// Public requests answered since `batch_started` whose responses are not fully sent yet.
    batch_requests: u32,
    /// Their access records, when a sink wants them (see [`crate::observe::access`]).
    records: Vec<AccessRecord>,
    /// The client's address, asked for once, when the first record needs it.
    peer: Option<Option<SocketAddr>>,
}

impl Conn {
    pub fn new(accepted: Endpoint, now_ms: u64, timeouts: &Timeouts) -> Self {
        let link = Link {
            fd: accepted.fd,
            role: accepted.role,
            state: State::Open,
            parse_pending: false,
            body_pending: false,
            body_scan: chunked::Scanner::default(),
            discard: 0,
            // A new socket may already hold a request (TCP_DEFER_ACCEPT makes it likely).
            readable: true,
            writable: true,
            peer_closed: false,
            deadline_ms: now_ms + timeouts.header_ms,
            head_started_ms: Some(now_ms),
            send_armed: false,
            requests: 0,
            batch_started: None,
            batch_requests: 0,
            records: Vec::new(),
            peer: None,
        };
        Conn { link, inbuf: InBuf::default(), out: OutQueue::default() }
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
        self.link.readable |= readable;
        self.link.writable |= writable;
        self.link.peer_closed |= hangup;
        self.drive(ctx, bufs)
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort), else close.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>) -> Keep {
        let Conn { link, inbuf, out } = self;
        if link.state == State::Open && out.is_empty() && (!inbuf.is_empty() || link.discard > 0) {
            inbuf.release();
            link.discard = 0;
            link.body_scan = chunked::Scanner::default();
            let outcome = respond::invalid(out, Status::RequestTimeout, link.site(ctx), false);
            link.finish(outcome, None, ctx);
            if let Ok(Flush::Done) = out.flush(link.fd.as_fd()) {
                link.observe_batch(ctx);
            }
        }
        Keep::No
    }

    /// Runs the state machine until it needs the kernel to report readiness again, or until its
    /// work budget is spent (then [`Keep::Again`]). The output queue is lent as a [`Turn`] on
    /// `ctx.snapshot`: output still pending when the turn ends stops borrowing from the snapshot,
    /// because the worker may pass a quiescent point before it is sent.
    pub fn drive(&mut self, ctx: &Ctx<'_>, bufs: &mut Bufs) -> Keep {
        let Conn { link, inbuf, out } = self;
        out.turn(|out| link.turn(out, inbuf, ctx, bufs))
    }
}

impl Link {
    fn turn<'s>(
        &mut self,
        out: &mut Turn<'_, 's>,
        inbuf: &mut InBuf,
        ctx: &Ctx<'s>,
        bufs: &mut Bufs,
    ) -> Keep {
        for _ in 0..TURN_BUDGET {
            if !out.is_empty() {
                if !self.writable {
                    return Keep::Yes;
                }
                match out.flush(self.fd.as_fd()) {
                    Ok(Flush::Done) => {
                        self.send_armed = false;
                        self.observe_batch(ctx);
                    }
                    Ok(Flush::Yield) => {
                        // A large file had its share of this turn; the others get theirs first.
                        // Progress was made, so the send timer starts again.
                        self.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
                        self.send_armed = true;
                        return Keep::Again;
                    }
                    Ok(Flush::Blocked { progress }) => {
                        self.writable = false;
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
                    self.deadline_ms = ctx.now_ms + ctx.timeouts.linger_ms;
                    return self.linger(&mut bufs.scratch);
                }
                State::Lingering => return self.linger(&mut bufs.scratch),
            }
            if self.parse_pending {
                let used = self.process(inbuf.pending(), out, &mut bufs.paths, ctx);
                inbuf.consume(used);
                self.after_process(inbuf);
                continue;
            }
            if ctx.draining && self.is_idle(out, inbuf) && !self.readable {
                // Between requests while shutting down. The client cannot know, and its next
                // request may already be here: close with a FIN and linger rather than close(2),
                // which would answer those bytes with a reset. It sees end of stream before any
                // response byte, which it may retry elsewhere (RFC 9112 §9.3.1).
                self.state = State::Closing;
                continue;
            }
            if !self.readable {
                self.arm_read_timer(out, ctx);
                return Keep::Yes;
            }
            match self.read(out, inbuf, ctx, bufs) {
                Ok(true) => {}
                Ok(false) => return Keep::No, // the client closed its side
                Err(()) => return Keep::No,
            }
        }
        if out.is_empty() {
            self.arm_read_timer(out, ctx);
        }
        Keep::Again
    }

    /// What this connection's listener serves, as the responder sees it this turn.
    fn site<'c>(&self, ctx: &Ctx<'c>) -> Site<'c> {
        let service = match self.role {
            Role::Public => Service::Files(ctx.snapshot),
            Role::Admin => Service::Admin(ctx.sources),
        };
        Site { service, date: ctx.date.text(), draining: ctx.draining }
    }

    /// Between requests on a keep-alive connection: closable at once when draining. A new
    /// connection that has not sent its first request yet is not idle — it gets served.
    fn is_idle(&self, out: &OutQueue, inbuf: &InBuf) -> bool {
        self.state == State::Open
            && self.requests > 0
            && out.is_empty()
            && inbuf.is_empty()
            && self.discard == 0
    }

    /// Reads once, and processes what arrived. `Ok(false)`: end of stream.
    fn read<'s>(
        &mut self,
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
                Err(e) => return self.read_error(e),
            };
            self.short_read(n, bufs.scratch.len());
            self.batch_started.get_or_insert_with(Instant::now);
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
                    return self.read_error(e);
                }
            };
            inbuf.commit(n);
            if n == 0 {
                return Ok(false);
            }
            self.short_read(n, asked);
            self.batch_started.get_or_insert_with(Instant::now);
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

    /// A read that returned less than it asked for emptied the socket's receive queue (TCP
    /// hands over everything queued, up to the length asked). With edge-triggered epoll, bytes
    /// arriving later raise a new edge, so there is no need to read again until `EAGAIN`: that
    /// saves one `recv` per request. Not after a hang-up, whose edge has been consumed already.
    fn short_read(&mut self, n: usize, asked: usize) {
        if n < asked && !self.peer_closed {
            self.readable = false;
        }
    }

    fn read_error(&mut self, e: std::io::Error) -> Result<bool, ()> {
        match e.raw_os_error() {
            Some(EAGAIN) => {
                self.readable = false;
                Ok(true)
            }
            Some(EINTR) => Ok(true),
            _ => Err(()), // ECONNRESET and friends
        }
    }

    /// Drops buffered input once the connection is closing, and ends the request timer once no
    /// request is half-read (nothing buffered, no body left).
    fn after_process(&mut self, inbuf: &mut InBuf) {
        if self.state != State::Open {
            inbuf.release();
        }
        if inbuf.is_empty() && self.discard == 0 {
            self.head_started_ms = None;
        }
    }

    /// Answers every complete request at the start of `data`; returns the bytes consumed.
    fn process<'s>(
        &mut self,
        data: &[u8],
        out: &mut Turn<'_, 's>,
        paths: &mut PathBufs,
        ctx: &Ctx<'s>,
    ) -> usize {
        self.parse_pending = false;
        self.body_pending = false;
        let mut pos = 0;
        while self.state == State::Open {
            if self.discard > 0 {
                let skip = self.discard.min((data.len() - pos) as u64);
                pos += skip as usize;
                self.discard -= skip;
                if self.discard > 0 {
                    break;
                }
                self.head_started_ms = None; // the body is done; the next request starts afresh
            }
            if pos == data.len() {
                break;
            }
            if out.pending() >= OUT_HIGH_WATER || out.chunks() >= OUT_MAX_CHUNKS {
                self.parse_pending = true;
                break;
            }
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let limit = ctx.limits.max_headers.min(MAX_HEADERS);
            match request::parse(&data[pos..], &mut headers[..limit], ctx.limits) {
                Parsed::Partial => {
                    if self.head_started_ms.is_none() {
                        self.head_started_ms = Some(ctx.now_ms);
                    }
                    break;
                }
                Parsed::Complete(req) => {
                    // A chunked body is skipped before its request is answered (unless the
                    // client waits for a 100 Continue, see `respond`): where it ends decides
                    // where the next request starts, and a malformed one gets its 400 or 413.
                    let mut chunked_len = 0;
                    if req.chunked && !req.expect_continue {
                        // A body still arriving is always the first request of `data` (its head
                        // stays at the front of the input buffer): its scan goes on from there.
                        debug_assert!(pos == 0 || self.body_scan == chunked::Scanner::default());
                        let scan = self.body_scan.resume(&data[pos + req.head_len..], ctx.limits.max_body);
                        if scan != Scan::Partial {
                            self.body_scan = chunked::Scanner::default();
                        }
                        match scan {
                            Scan::Complete(n) => chunked_len = n,
                            Scan::Partial => {
                                if self.head_started_ms.is_none() {
                                    self.head_started_ms = Some(ctx.now_ms);
                                }
                                self.body_pending = true;
                                break;
                            }
                            Scan::Invalid(status) => {
                                let head_only = req.method == Method::Head;
                                let outcome = respond::invalid(out, status, self.site(ctx), head_only);
                                self.finish(outcome, Some(&req), ctx);
                                pos = data.len();
                                continue;
                            }
                        }
                    }
                    pos += req.head_len + chunked_len;
                    self.discard = req.body_len;
                    // A body to discard keeps the request's timer running from now, once.
                    self.head_started_ms = (req.body_len > 0).then_some(ctx.now_ms);
                    self.requests = self.requests.saturating_add(1);
                    let outcome = respond::respond(&req, self.site(ctx), paths, out);
                    self.finish(outcome, Some(&req), ctx);
                }
                Parsed::Invalid(status) => {
                    // A response to HEAD never has a body (RFC 9110 §9.3.2), even an error: the
                    // client would read the body as the start of the next response.
                    let head_only = data[pos..].starts_with(b"HEAD ");
                    let outcome = respond::invalid(out, status, self.site(ctx), head_only);
                    self.finish(outcome, None, ctx);
                    pos = data.len();
                }
            }
        }
        pos
    }

    /// After a response is queued: close if the responder said so, and count the request — the
    /// one place every answered request passes. Only the public listener is counted (the admin
    /// listener's own traffic is not part of the HTTP metrics); the duration is recorded when
    /// the response is fully sent. `req` is `None` for a head that could not be parsed.
    #[inline]
    fn finish(&mut self, outcome: Outcome, req: Option<&Request<'_>>, ctx: &Ctx<'_>) {
        if outcome.close {
            self.state = State::Closing;
            self.discard = 0; // the lingering close swallows whatever body follows
        }
        if self.role != Role::Public {
            return;
        }
        match outcome.cache {
            CacheUse::Hit => ctx.stats.cache_hits.incr(),
            CacheUse::Miss => ctx.stats.cache_misses.incr(),
            CacheUse::None => {}
        }
        ctx.stats.requests.incr();
        ctx.stats.status[stats::status_index(outcome.status.code())].incr();
        ctx.stats.response_bytes.add(outcome.body_bytes);
        self.batch_requests += 1;
        if ctx.access.enabled() {
            self.record(req, outcome);
        }
    }

    /// Builds the access record of an answered request (only when a sink wants it).
    #[cold]
    fn record(&mut self, req: Option<&Request<'_>>, outcome: Outcome) {
        let fd = self.fd.as_fd();
        let peer = *self.peer.get_or_insert_with(|| socket::peer_addr(fd).ok());
        let since_read = self.batch_started.map_or(std::time::Duration::ZERO, |t| t.elapsed());
        let start = SystemTime::now() - since_read;
        let mut record = match req {
            Some(req) => AccessRecord::new(req, start, peer),
            None => AccessRecord::unparsed(start, peer),
        };
        record.status = outcome.status.code();
        record.body_bytes = outcome.body_bytes;
        self.records.push(record);
    }

    /// The batch's responses are all sent: record one duration per request in it, measured from
    /// the read that brought the batch in (one clock read per batch, not per request).
    fn observe_batch(&mut self, ctx: &Ctx<'_>) {
        // Requests of the same batch still to be answered (parsing stopped at the output
        // high-water mark) keep the batch's start time.
        let started = if self.parse_pending { self.batch_started } else { self.batch_started.take() };
        if let Some(started) = started {
            if self.batch_requests > 0 {
                let ns = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
                ctx.stats.duration.observe_ns(ns, u64::from(self.batch_requests));
            }
        }
        self.batch_requests = 0;
        if !self.records.is_empty() {
            let end = SystemTime::now();
            for mut record in self.records.drain(..) {
                record.duration = end.duration_since(record.start).unwrap_or_default();
                ctx.access.emit(record, ctx.stats);
            }
        }
    }

    /// Lingering close: discard input until end of stream, an error, or the timer.
    fn linger(&mut self, scratch: &mut [u8]) -> Keep {
        for _ in 0..TURN_BUDGET {
            match socket::recv(self.fd.as_fd(), scratch) {
                Ok(0) => return Keep::No,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                    self.readable = false;
                    return Keep::Yes;
                }
                Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                Err(_) => return Keep::No,
            }
        }
        Keep::Again
    }

    /// Sets the timer while waiting for input: the head timeout runs from a request's first byte
    /// (a client dribbling bytes cannot extend it), the keep-alive timeout between requests.
    fn arm_read_timer(&mut self, out: &mut OutQueue, ctx: &Ctx<'_>) {
        if self.state == State::Lingering {
            return; // the linger deadline stands
        }
        self.deadline_ms = match self.head_started_ms {
            Some(started) => started + ctx.timeouts.header_ms,
            None => {
                out.shrink();
                ctx.now_ms + ctx.timeouts.keep_alive_ms
            }
        };
    }
}

#[cfg(test)]
mod tests {
    //! The transport driven by hand over a socket pair, where what it keeps between reads can
    //! be looked at.
    use super::*;
    use crate::cache::{load, LoadOptions};
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
        let opts = LoadOptions {
            root: root.clone(),
            spa_fallback: true,
            budget: u64::MAX,
            max_cached_file: u64::MAX,
            cache_control: "no-cache".into(),
            compress: false,
            site: Default::default(),
        };
        let snapshot = load(&opts).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let sources = Sources::for_tests();
        let stats = sources.stats.clone();
        let (date, limits, timeouts) = (DateCache::new(), Limits::default(), Timeouts::default());
        let access = AccessSink { text: None, otlp: None };
        let ctx = Ctx {
            snapshot: &snapshot,
            sources: &sources,
            date: &date,
            limits: &limits,
            timeouts: &timeouts,
            now_ms: 0,
            draining: false,
            stats: &stats.workers[0],
            access: &access,
        };
        let mut bufs = Bufs { scratch: vec![0; 64 * 1024], paths: PathBufs::default() };
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
