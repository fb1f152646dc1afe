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
use std::os::fd::{AsFd, OwnedFd};

use crate::cache::{Lookup, Snapshot};
use crate::http::date::DateCache;
use crate::http::path;
use crate::http::request::{self, Limits, Method, Parsed, Request};
use crate::http::response::{self, Extra, Persistence, Status};
use crate::out_queue::{Flush, OutQueue};
use crate::sys::{socket, EAGAIN, EINTR};

/// Which listener a connection came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The public static-file listener.
    Public,
    /// The admin listener (`/healthz`, later `/metrics`).
    Admin,
}

/// A connection handed from the acceptor to a worker.
pub struct Accepted {
    pub fd: OwnedFd,
    pub role: Role,
}

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
        Timeouts {
            header_ms: 10_000,
            keep_alive_ms: 30_000,
            send_ms: 30_000,
            linger_ms: 2_000,
        }
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

/// Whether the worker keeps the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Keep {
    Yes,
    /// Close it (drop the fd).
    No,
}

/// One client connection.
pub struct Conn {
    fd: OwnedFd,
    role: Role,
    state: State,
    /// An incomplete request head (or pipelined requests not yet answered).
    inbuf: Vec<u8>,
    /// `inbuf` may hold a complete request: parsing stopped at the output high-water mark.
    parse_pending: bool,
    /// Request body bytes still to read and throw away.
    discard: u64,
    out: OutQueue,
    /// Edge-triggered state: no `EAGAIN` from recv since the last `EPOLLIN`.
    readable: bool,
    /// Edge-triggered state: no `EAGAIN` from send since the last `EPOLLOUT`.
    writable: bool,
    /// When the current timer expires (coarse monotonic ms).
    deadline_ms: u64,
    /// When the first byte of the request being read arrived.
    head_started_ms: Option<u64>,
}

impl Conn {
    pub fn new(accepted: Accepted, now_ms: u64, timeouts: &Timeouts) -> Self {
        Conn {
            fd: accepted.fd,
            role: accepted.role,
            state: State::Open,
            inbuf: Vec::new(),
            parse_pending: false,
            discard: 0,
            out: OutQueue::default(),
            // A new socket may already hold a request (TCP_DEFER_ACCEPT makes it likely).
            readable: true,
            writable: true,
            deadline_ms: now_ms + timeouts.header_ms,
            head_started_ms: Some(now_ms),
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The timer deadline, for the worker's sweep.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Whether the connection is between requests (closable at once when draining).
    pub fn is_idle(&self) -> bool {
        self.state == State::Open
            && self.out.is_empty()
            && self.inbuf.is_empty()
            && self.discard == 0
    }

    /// Records what epoll reported and runs the state machine.
    pub fn on_event(&mut self, readable: bool, writable: bool, ctx: &mut Ctx<'_>) -> Keep {
        self.readable |= readable;
        self.writable |= writable;
        self.drive(ctx)
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort), else close.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        if self.state == State::Open
            && self.out.is_empty()
            && (!self.inbuf.is_empty() || self.discard > 0)
        {
            self.inbuf.clear();
            self.discard = 0;
            self.fail(Status::RequestTimeout, false, ctx);
            let _ = self.out.flush(self.fd.as_fd());
        }
        Keep::No
    }

    /// Runs the state machine until it needs the kernel to report readiness again.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        loop {
            if !self.out.is_empty() {
                if !self.writable {
                    return Keep::Yes;
                }
                match self.out.flush(self.fd.as_fd()) {
                    Ok(Flush::Done) => {}
                    Ok(Flush::Blocked { progress }) => {
                        self.writable = false;
                        if progress || self.deadline_ms < ctx.now_ms {
                            self.deadline_ms = ctx.now_ms + ctx.timeouts.send_ms;
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
                    self.inbuf = Vec::new();
                    self.deadline_ms = ctx.now_ms + ctx.timeouts.linger_ms;
                }
                State::Lingering => return self.linger(ctx),
            }
            if self.parse_pending {
                let buffered = mem::take(&mut self.inbuf);
                let used = self.process(&buffered, ctx);
                self.keep_rest(&buffered[used..], true);
                continue;
            }
            if ctx.draining && self.inbuf.is_empty() && self.discard == 0 && !self.readable {
                return Keep::No; // idle while shutting down
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
    }

    /// Reads once, and processes what arrived. `Ok(false)`: end of stream.
    fn read(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, ()> {
        if self.inbuf.is_empty() {
            let n = match socket::recv(self.fd.as_fd(), ctx.scratch.as_mut_slice()) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) => return self.read_error(e),
            };
            let scratch = mem::take(ctx.scratch);
            let used = self.process(&scratch[..n], ctx);
            self.keep_rest(&scratch[used..n], false);
            *ctx.scratch = scratch;
        } else {
            // Append to the partial request. Reading more than the head limit would only be
            // rejected: the parser answers 431 once the buffer exceeds it.
            let mut buffered = mem::take(&mut self.inbuf);
            let old = buffered.len();
            buffered.resize(old + 4096, 0);
            let n = match socket::recv(self.fd.as_fd(), &mut buffered[old..]) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) => {
                    buffered.truncate(old);
                    self.inbuf = buffered;
                    return self.read_error(e);
                }
            };
            buffered.truncate(old + n);
            let used = self.process(&buffered, ctx);
            buffered.drain(..used);
            self.inbuf = buffered;
            self.head_started_ms = if self.inbuf.is_empty() {
                None
            } else {
                self.head_started_ms
            };
        }
        Ok(true)
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

    /// Keeps unparsed input after `process`. `from_inbuf`: it came from `self.inbuf`.
    fn keep_rest(&mut self, rest: &[u8], from_inbuf: bool) {
        if rest.is_empty() || self.state != State::Open {
            self.inbuf = Vec::new();
            self.head_started_ms = None;
            return;
        }
        if from_inbuf {
            self.inbuf = rest.to_vec();
        } else {
            self.inbuf.extend_from_slice(rest);
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
                    self.head_started_ms = None;
                    self.respond(&req, ctx);
                }
                Parsed::Invalid(status) => {
                    // A response to HEAD never has a body (RFC 9110 §9.3.2), even an error: the
                    // client would read the body as the start of the next response.
                    let head_only = data[pos..].starts_with(b"HEAD ");
                    self.fail(status, head_only, ctx);
                    pos = data.len();
                }
            }
        }
        pos
    }

    /// Queues the response to one request.
    fn respond(&mut self, req: &Request<'_>, ctx: &mut Ctx<'_>) {
        let persistence = if !req.keep_alive || ctx.draining {
            self.state = State::Closing;
            Persistence::Close
        } else if req.minor_version == 0 {
            Persistence::KeepAlive10
        } else {
            Persistence::KeepAlive11
        };
        let head_only = req.method == Method::Head;
        let date = ctx.date.text();
        let generated = |out: &mut OutQueue, status: Status, extra: Extra<'_>| {
            out.push_own(|buf| {
                response::write_generated(buf, status, extra, date, persistence, head_only)
            });
        };
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                return generated(
                    &mut self.out,
                    Status::NoContent,
                    Extra {
                        allow: true,
                        ..Extra::default()
                    },
                )
            }
            Method::NotAllowed => {
                return generated(
                    &mut self.out,
                    Status::MethodNotAllowed,
                    Extra {
                        allow: true,
                        ..Extra::default()
                    },
                )
            }
            Method::Unknown => {
                return generated(&mut self.out, Status::NotImplemented, Extra::default())
            }
        }
        let normalized = match path::normalize(req.target, ctx.key) {
            Ok(n) => n,
            Err(_) => return self.fail(Status::BadRequest, head_only, ctx),
        };
        if self.role == Role::Admin {
            return crate::admin::respond(
                ctx.key,
                ctx.draining,
                &mut self.out,
                date,
                persistence,
                head_only,
            );
        }
        match ctx.snapshot.resolve(ctx.key, normalized.dir, ctx.key2) {
            Lookup::File(entry) => {
                // SAFETY: the entry lives in `ctx.snapshot`, which the worker keeps alive until
                // every connection that may hold its bytes is gone (see Worker::snapshot).
                unsafe { self.out.push_shared(&entry.head) };
                self.out
                    .push_own(|buf| response::write_tail(buf, date, persistence));
                if !head_only {
                    // SAFETY: as above.
                    unsafe { self.out.push_shared(&entry.body) };
                }
            }
            Lookup::AddSlash => {
                ctx.key2.clear();
                path::encode_into(ctx.key, ctx.key2);
                ctx.key2.push(b'/');
                ctx.key2.extend_from_slice(path::query(req.target));
                let extra = Extra {
                    location: Some(ctx.key2.as_slice()),
                    ..Extra::default()
                };
                generated(&mut self.out, Status::MovedPermanently, extra);
            }
            Lookup::NotFound => generated(&mut self.out, Status::NotFound, Extra::default()),
        }
    }

    /// Queues an error response and closes after it: the framing of what follows is in doubt.
    fn fail(&mut self, status: Status, head_only: bool, ctx: &mut Ctx<'_>) {
        let date = ctx.date.text();
        self.out.push_own(|buf| {
            response::write_generated(
                buf,
                status,
                Extra::default(),
                date,
                Persistence::Close,
                head_only,
            )
        });
        self.state = State::Closing;
        self.discard = 0;
    }

    /// Lingering close: discard input until end of stream, an error, or the timer.
    fn linger(&mut self, ctx: &mut Ctx<'_>) -> Keep {
        loop {
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
    }

    /// Sets the timer while waiting for input: the head timeout runs from a request's first byte
    /// (a client dribbling bytes cannot extend it), the keep-alive timeout between requests.
    fn arm_read_timer(&mut self, ctx: &Ctx<'_>) {
        self.deadline_ms = match self.head_started_ms {
            Some(started) => started + ctx.timeouts.header_ms,
            None if self.discard > 0 => ctx.now_ms + ctx.timeouts.header_ms,
            None => {
                self.out.shrink();
                ctx.now_ms + ctx.timeouts.keep_alive_ms
            }
        };
    }
}

/// The most header fields any request may carry, whatever `--max-headers` says: the parser's
/// scratch array lives on the stack, uninitialised, so it costs nothing per request.
pub const MAX_HEADERS: usize = 256;
