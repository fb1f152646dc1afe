//! One client connection's state machine: read → parse → respond → write, repeated for
//! keep-alive and pipelined requests, then a graceful close.
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
//! copied into the connection's own buffer; an idle connection holds no buffers at all.

use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Instant, SystemTime};

use crate::access::{AccessRecord, AccessSink};
use crate::cache::{Entry, Lookup, Repr, Snapshot};
use crate::endpoint::{Endpoint, Role};
use crate::http::date::{self, DateCache};
use crate::http::encoding::{AcceptEncoding, Coding};
use crate::http::path;
use crate::http::range::{self, Range};
use crate::http::request::{self, Limits, Method, Parsed, Request, MAX_HEADERS};
use crate::http::response::{self, Extra, Persistence, Status};
use crate::http::{conditional, response::FileMeta};
use crate::metrics::Sources;
use crate::out_queue::{Flush, OutQueue};
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

/// What a worker needs to drive a connection, borrowed from it for one call.
pub struct Ctx<'w> {
    pub snapshot: &'w Snapshot,
    /// Read buffer shared by the worker's connections.
    pub scratch: &'w mut Vec<u8>,
    /// Buffer for normalised paths.
    pub key: &'w mut Vec<u8>,
    /// Buffer for lookups and redirect targets.
    pub key2: &'w mut Vec<u8>,
    pub date: &'w DateCache,
    pub limits: &'w Limits,
    pub timeouts: &'w Timeouts,
    /// Coarse monotonic time of this loop turn.
    pub now_ms: u64,
    /// The server is shutting down: finish what is in flight, take nothing new.
    pub draining: bool,
    /// This worker's counters.
    pub stats: &'w WorkerStats,
    /// What the admin endpoints read (all workers' counters, queue, cache).
    pub sources: &'w Sources,
    /// Where access records go (text log, OTLP); usually nowhere.
    pub access: &'w AccessSink,
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

/// One client connection.
pub struct Conn {
    fd: OwnedFd,
    role: Role,
    state: State,
    /// An incomplete request head (or pipelined requests not yet answered).
    inbuf: InBuf,
    /// `inbuf` may hold a complete request: parsing stopped at the output high-water mark.
    parse_pending: bool,
    /// Request body bytes still to read and throw away.
    discard: u64,
    out: OutQueue,
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
    /// Their access records, when a sink wants them (see [`crate::access`]).
    records: Vec<AccessRecord>,
    /// The client's address, asked for once, when the first record needs it.
    peer: Option<Option<SocketAddr>>,
}

impl Conn {
    pub fn new(accepted: Endpoint, now_ms: u64, timeouts: &Timeouts) -> Self {
        Conn {
            fd: accepted.fd,
            role: accepted.role,
            state: State::Open,
            inbuf: InBuf::default(),
            parse_pending: false,
            discard: 0,
            out: OutQueue::default(),
            // A new socket may already hold a request (TCP_DEFER_ACCEPT makes it likely).
            readable: true,
            writable: true,
            deadline_ms: now_ms + timeouts.header_ms,
            head_started_ms: Some(now_ms),
            send_armed: false,
            requests: 0,
            batch_started: None,
            batch_requests: 0,
            records: Vec::new(),
            peer: None,
            peer_closed: false,
        }
    }

    /// Whether the connection came from the public listener (only those are counted).
    pub fn is_public(&self) -> bool {
        self.role == Role::Public
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The timer deadline, for the worker's sweep.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Between requests on a keep-alive connection: closable at once when draining. A new
    /// connection that has not sent its first request yet is not idle — it gets served.
    fn is_idle(&self) -> bool {
        self.state == State::Open
            && self.requests > 0
            && self.out.is_empty()
            && self.inbuf.is_empty()
            && self.discard == 0
    }

    /// Records what epoll reported and runs the state machine.
    pub fn on_event(&mut self, readable: bool, writable: bool, hangup: bool, ctx: &mut Ctx<'_>) -> Keep {
        self.readable |= readable;
        self.writable |= writable;
        self.peer_closed |= hangup;
        self.drive(ctx)
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort), else close.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        if self.state == State::Open && self.out.is_empty() && (!self.inbuf.is_empty() || self.discard > 0) {
            self.inbuf.release();
            self.discard = 0;
            self.fail(Status::RequestTimeout, false, None, ctx);
            if let Ok(Flush::Done) = self.out.flush(self.fd.as_fd()) {
                self.observe_batch(ctx);
            }
        }
        Keep::No
    }

    /// Runs the state machine until it needs the kernel to report readiness again, or until its
    /// work budget is spent (then [`Keep::Again`]). Output still pending afterwards is made
    /// independent of the current snapshot (see `OutQueue::hold`), because the worker may pass a
    /// quiescent point before it is sent.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        let keep = self.turn(ctx);
        if keep != Keep::No && !self.out.is_empty() {
            self.out.hold();
        }
        keep
    }

    fn turn(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        for _ in 0..TURN_BUDGET {
            if !self.out.is_empty() {
                if !self.writable {
                    return Keep::Yes;
                }
                match self.out.flush(self.fd.as_fd()) {
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
                    self.inbuf.release();
                    self.deadline_ms = ctx.now_ms + ctx.timeouts.linger_ms;
                    return self.linger(ctx);
                }
                State::Lingering => return self.linger(ctx),
            }
            if self.parse_pending {
                let mut inbuf = mem::take(&mut self.inbuf);
                let used = self.process(inbuf.pending(), ctx);
                inbuf.consume(used);
                self.inbuf = inbuf;
                self.after_process();
                continue;
            }
            if ctx.draining && self.is_idle() && !self.readable {
                // Between requests while shutting down. The client cannot know, and its next
                // request may already be here: close with a FIN and linger rather than close(2),
                // which would answer those bytes with a reset. It sees end of stream before any
                // response byte, which it may retry elsewhere (RFC 9112 §9.3.1).
                self.state = State::Closing;
                continue;
            }
            if !self.readable {
                self.arm_read_timer(ctx);
                return Keep::Yes;
            }
            match self.read(ctx) {
                Ok(true) => {}
                Ok(false) => return Keep::No, // the client closed its side
                Err(()) => return Keep::No,
            }
        }
        if self.out.is_empty() {
            self.arm_read_timer(ctx);
        }
        Keep::Again
    }

    /// Reads once, and processes what arrived. `Ok(false)`: end of stream.
    fn read(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, ()> {
        if self.inbuf.is_empty() {
            // The common case: read into the worker's scratch buffer and answer from there; only
            // an incomplete tail is copied into the connection's own buffer.
            let n = match socket::recv(self.fd.as_fd(), ctx.scratch.as_mut_slice()) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) => return self.read_error(e),
            };
            self.short_read(n, ctx.scratch.len());
            self.batch_started.get_or_insert_with(Instant::now);
            let scratch = mem::take(ctx.scratch);
            let used = self.process(&scratch[..n], ctx);
            if self.state == State::Open {
                self.inbuf.keep(&scratch[used..n]);
            }
            *ctx.scratch = scratch;
        } else {
            // Append to what is buffered. Reading past the head limit would only be rejected:
            // the parser answers 431 once the buffer exceeds it.
            let mut inbuf = mem::take(&mut self.inbuf);
            let spare = inbuf.spare(4096);
            let asked = spare.len();
            let n = match socket::recv(self.fd.as_fd(), spare) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) => {
                    inbuf.commit(0);
                    self.inbuf = inbuf;
                    return self.read_error(e);
                }
            };
            inbuf.commit(n);
            self.short_read(n, asked);
            self.batch_started.get_or_insert_with(Instant::now);
            let used = self.process(inbuf.pending(), ctx);
            inbuf.consume(used);
            self.inbuf = inbuf;
        }
        self.after_process();
        if self.batch_requests == 0 && self.inbuf.is_empty() && !self.parse_pending {
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

    /// Drops buffered input once the connection is closing, and ends the request timer when
    /// nothing is half-read.
    fn after_process(&mut self) {
        if self.state != State::Open {
            self.inbuf.release();
        }
        self.end_request_timer_if_done();
    }

    /// Clears the request timer once no request is half-read (nothing buffered, no body left).
    fn end_request_timer_if_done(&mut self) {
        if self.inbuf.is_empty() && self.discard == 0 {
            self.head_started_ms = None;
        }
    }

    /// Answers every complete request at the start of `data`; returns the bytes consumed.
    fn process(&mut self, data: &[u8], ctx: &mut Ctx<'_>) -> usize {
        self.parse_pending = false;
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
            if self.out.pending() >= OUT_HIGH_WATER || self.out.chunks() >= OUT_MAX_CHUNKS {
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
                    pos += req.head_len;
                    self.discard = req.body_len;
                    // A body to discard keeps the request's timer running from now, once.
                    self.head_started_ms = (req.body_len > 0).then_some(ctx.now_ms);
                    self.requests = self.requests.saturating_add(1);
                    self.respond(&req, ctx);
                }
                Parsed::Invalid(status) => {
                    // A response to HEAD never has a body (RFC 9110 §9.3.2), even an error: the
                    // client would read the body as the start of the next response.
                    let head_only = data[pos..].starts_with(b"HEAD ");
                    self.fail(status, head_only, None, ctx);
                    pos = data.len();
                }
            }
        }
        pos
    }

    /// Queues the response to one request.
    fn respond(&mut self, req: &Request<'_>, ctx: &mut Ctx<'_>) {
        // A client that sent `Expect: 100-continue` may never send the body we would wait to
        // discard (we never say 100): answer and close instead of guessing where the next
        // request starts. The lingering close swallows a body that does come.
        let body_in_doubt = req.expect_continue && req.body_len > 0;
        if body_in_doubt {
            self.discard = 0;
        }
        let persistence = if !req.keep_alive || ctx.draining || body_in_doubt {
            self.state = State::Closing;
            Persistence::Close
        } else if req.minor_version == 0 {
            Persistence::KeepAlive10
        } else {
            Persistence::KeepAlive11
        };
        let head_only = req.method == Method::Head;
        let date = ctx.date.text();
        let generated = |this: &mut Self, ctx: &Ctx<'_>, status: Status, extra: Extra<'_>| {
            let mut body = 0;
            this.out.push_own(|buf| {
                body = response::write_generated(buf, status, extra, date, persistence, head_only)
            });
            this.count(ctx, Some(req), status, body as u64);
        };
        let allow = Extra { allow: true, ..Extra::default() };
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => return generated(self, ctx, Status::NoContent, allow),
            Method::NotAllowed => return generated(self, ctx, Status::MethodNotAllowed, allow),
            Method::Unknown => return generated(self, ctx, Status::NotImplemented, Extra::default()),
        }
        let normalized = match path::normalize(req.target, ctx.key) {
            Ok(n) => n,
            Err(_) => return self.fail(Status::BadRequest, head_only, Some(req), ctx),
        };
        if self.role == Role::Admin {
            return crate::admin::respond(ctx, &mut self.out, req.accept, persistence, head_only);
        }
        match ctx.snapshot.resolve(ctx.key, normalized.dir, ctx.key2) {
            Lookup::File(entry) => {
                ctx.stats.cache_hits.incr();
                self.respond_file(entry, req, ctx, persistence, head_only);
            }
            Lookup::AddSlash => {
                ctx.key2.clear();
                path::encode_into(ctx.key, ctx.key2);
                ctx.key2.push(b'/');
                ctx.key2.extend_from_slice(path::query(req.target));
                let location = std::mem::take(ctx.key2);
                generated(
                    self,
                    ctx,
                    Status::MovedPermanently,
                    Extra {
                        location: Some(&location),
                        cache_control: Some(ctx.snapshot.default_cache_control()),
                        ..Extra::default()
                    },
                );
                *ctx.key2 = location;
            }
            Lookup::NotFound => {
                ctx.stats.cache_misses.incr();
                generated(self, ctx, Status::NotFound, Extra::default());
            }
        }
    }

    /// Answers a request for a cached file: pick the representation `Accept-Encoding` prefers,
    /// then preconditions (304/412), then `Range` on that representation (206/416, GET only, and
    /// only if `If-Range` allows), else the whole representation (200).
    fn respond_file(
        &mut self,
        entry: &Entry,
        req: &Request<'_>,
        ctx: &Ctx<'_>,
        persistence: Persistence,
        head_only: bool,
    ) {
        let date = ctx.date.text();
        let wants = AcceptEncoding::parse(req.accept_encoding);
        let (repr, coding) = entry.repr(wants.choose(entry.br.is_some(), entry.gzip.is_some()));
        match conditional::evaluate(&req.conditions, &repr.etag, entry.modified) {
            conditional::Outcome::Proceed => {}
            conditional::Outcome::NotModified => {
                // SAFETY: the entry lives in `ctx.snapshot`, which stays alive until the worker's
                // next quiescent point; `drive` calls `hold` before returning if output is pending.
                unsafe { self.out.push_shared(&repr.not_modified) };
                self.out.push_own(|buf| response::write_tail(buf, date, persistence));
                return self.count(ctx, Some(req), Status::NotModified, 0);
            }
            conditional::Outcome::PreconditionFailed => {
                let mut body = 0;
                self.out.push_own(|buf| {
                    body = response::write_generated(
                        buf,
                        Status::PreconditionFailed,
                        Extra::default(),
                        date,
                        persistence,
                        head_only,
                    )
                });
                return self.count(ctx, Some(req), Status::PreconditionFailed, body as u64);
            }
        }
        let len = repr.len();
        let wanted = match req.range {
            Some(header)
                if req.method == Method::Get
                    && conditional::range_applies(&req.conditions, &repr.etag, entry.modified) =>
            {
                range::parse(header, len)
            }
            _ => Range::Full,
        };
        match wanted {
            Range::Full => {
                // SAFETY: as above.
                unsafe { self.out.push_shared(&repr.head) };
                self.out.push_own(|buf| response::write_tail(buf, date, persistence));
                let mut body = 0;
                if !head_only {
                    match &repr.file {
                        Some(disk) => self.out.push_file(disk, 0, len),
                        // SAFETY: as above.
                        None => unsafe { self.out.push_shared(&repr.body) },
                    }
                    body = len;
                }
                self.count(ctx, Some(req), Status::Ok, body);
            }
            Range::Part { start, end } => {
                let last_modified = date::format(entry.modified);
                let m = file_meta(entry, repr, coding, &last_modified);
                self.out.push_own(|buf| {
                    response::write_partial_head(buf, &m, start, end);
                    response::write_tail(buf, date, persistence);
                });
                match &repr.file {
                    Some(disk) => self.out.push_file(disk, start, end + 1),
                    // SAFETY: as above; `start <= end < len` by `range::parse`.
                    None => unsafe {
                        self.out.push_shared_range(&repr.body, start as usize, end as usize + 1)
                    },
                }
                self.count(ctx, Some(req), Status::PartialContent, end - start + 1);
            }
            Range::Unsatisfiable => {
                let last_modified = date::format(entry.modified);
                let m = file_meta(entry, repr, coding, &last_modified);
                self.out.push_own(|buf| response::write_unsatisfiable(buf, &m, date, persistence));
                self.count(ctx, Some(req), Status::RangeNotSatisfiable, 0);
            }
        }
    }

    /// Queues an error response and closes after it: the framing of what follows is in doubt.
    fn fail(&mut self, status: Status, head_only: bool, req: Option<&Request<'_>>, ctx: &mut Ctx<'_>) {
        let date = ctx.date.text();
        let mut body = 0;
        self.out.push_own(|buf| {
            body =
                response::write_generated(buf, status, Extra::default(), date, Persistence::Close, head_only)
        });
        self.count(ctx, req, status, body as u64);
        self.state = State::Closing;
        self.discard = 0;
    }

    /// Counts one answered request on the public listener (the admin listener's own traffic is
    /// not part of the HTTP metrics). Its duration is recorded when its response is fully sent.
    /// `req` is `None` for a head that could not be parsed.
    fn count(&mut self, ctx: &Ctx<'_>, req: Option<&Request<'_>>, status: Status, body_bytes: u64) {
        if self.role != Role::Public {
            return;
        }
        ctx.stats.requests.incr();
        ctx.stats.status[stats::status_index(status.code())].incr();
        ctx.stats.response_bytes.add(body_bytes);
        self.batch_requests += 1;
        if ctx.access.enabled() {
            self.record(req, status, body_bytes);
        }
    }

    /// Builds the access record of an answered request (only when a sink wants it).
    #[cold]
    fn record(&mut self, req: Option<&Request<'_>>, status: Status, body_bytes: u64) {
        let fd = self.fd.as_fd();
        let peer = *self.peer.get_or_insert_with(|| socket::peer_addr(fd).ok());
        let since_read = self.batch_started.map_or(std::time::Duration::ZERO, |t| t.elapsed());
        let start = SystemTime::now() - since_read;
        let mut record = match req {
            Some(req) => AccessRecord::new(req, start, peer),
            None => AccessRecord::unparsed(start, peer),
        };
        record.status = status.code();
        record.body_bytes = body_bytes;
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
    fn linger(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        for _ in 0..TURN_BUDGET {
            match socket::recv(self.fd.as_fd(), ctx.scratch.as_mut_slice()) {
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
    fn arm_read_timer(&mut self, ctx: &Ctx<'_>) {
        if self.state == State::Lingering {
            return; // the linger deadline stands
        }
        self.deadline_ms = match self.head_started_ms {
            Some(started) => started + ctx.timeouts.header_ms,
            None => {
                self.out.shrink();
                ctx.now_ms + ctx.timeouts.keep_alive_ms
            }
        };
    }
}

/// The fields that describe one representation of `entry` in a generated (206/416) head.
fn file_meta<'a>(
    entry: &'a Entry,
    repr: &'a Repr,
    coding: Coding,
    last_modified: &'a [u8; date::LEN],
) -> FileMeta<'a> {
    FileMeta {
        content_type: entry.content_type,
        encoding: coding.token(),
        vary: entry.varies(),
        len: repr.len(),
        etag: &repr.etag,
        last_modified,
        cache_control: &entry.cache_control,
    }
}

/// Input kept between reads: an incomplete request, or pipelined requests not yet answered
/// because the output high-water mark was reached. Consumed from the front by moving `start`,
/// so answering a long pipeline in batches does not copy the rest of it each time; compacted
/// only before new bytes are appended. Its memory is released whenever it empties, so an idle
/// connection holds no input buffer.
#[derive(Default)]
struct InBuf {
    buf: Vec<u8>,
    start: usize,
    /// Bytes `spare` added that `commit` has not settled yet.
    spare_len: usize,
}

impl InBuf {
    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            self.release();
        }
    }

    fn release(&mut self) {
        *self = InBuf::default();
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends `bytes` (an incomplete tail from the scratch buffer).
    fn keep(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.compact();
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Room for `n` more bytes at the end; follow with `commit(bytes actually written)`.
    fn spare(&mut self, n: usize) -> &mut [u8] {
        self.compact();
        let len = self.buf.len();
        self.buf.resize(len + n, 0);
        self.spare_len = n;
        &mut self.buf[len..]
    }

    fn commit(&mut self, written: usize) {
        let len = self.buf.len();
        // `spare` grew the buffer by the room it offered; keep only what was written.
        self.buf.truncate(len - self.spare_len + written);
        self.spare_len = 0;
    }
}
