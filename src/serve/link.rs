//! A client connection's HTTP state, whichever transport moves its bytes: framing (where each
//! pipelined request ends, bodies to skip or scan), the close decision, timers, and counting.
//!
//! [`Link::process`] answers every complete request at the start of some input through the
//! responder and queues the answers; [`Link::finish`] is the one place each answered request
//! passes (close, counters, access record). The epoll transport (`transport.rs`) and the io_uring
//! transport (`ring_conn.rs`) own a `Link` each and differ only in how bytes reach it and leave.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime};

use crate::cache::Snapshot;
use crate::endpoint::{Endpoint, Role};
use crate::http::chunked::{self, Scan};
use crate::http::date::DateCache;
use crate::http::request::{self, Fields, Limits, Method, Parsed, Request};
use crate::http::response::Status;
use crate::observe::access::{AccessRecord, AccessSink};
use crate::observe::scrape::Sources;
use crate::serve::inbuf::InBuf;
use crate::serve::out_queue::{BatchSpares, Flush, OutQueue, Turn};
use crate::serve::rendered::Rendered;
use crate::serve::respond::{self, CacheUse, Outcome, PathBufs, Service, Site};
use crate::stats::{self, WorkerStats};
use crate::sys::{clock, socket};

/// A large download's limit on bytes queued in its socket and not yet transmitted (see
/// [`Link::pace`]): half a file share, so each `sendfile` finds the last one mostly on its way.
/// With 16 clients of a 5 MiB file: 1.5× the req/s at the same server CPU per request (1.3×
/// and 0.89× with a huge-page memfd); 64 KiB did as well, 256 KiB less (docs/benchmarks.md).
pub(super) const PACED_UNSENT: u32 = (crate::serve::out_queue::FILE_SHARE / 2) as u32;

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
    /// This worker's whole responses for hot small files, current for this turn.
    pub rendered: &'w Rendered,
    pub limits: &'w Limits,
    pub timeouts: &'w Timeouts,
    /// Coarse monotonic time of this loop turn.
    pub now_ms: u64,
    /// When this turn started (the worker woke up to the readiness or completions it serves):
    /// where a request's duration starts, one clock read per turn rather than one per read.
    /// `sys::clock::monotonic_ns`.
    pub turn_started: u64,
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
    /// Buffers for pipelined batches (`OutQueue::coalesce`), lent to a connection until it idles.
    pub batches: BatchSpares,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
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
    /// Keep it; it waits for the kernel (epoll readiness, a ring completion) or its timer.
    Yes,
    /// Keep it, and drive it again soon: it used its work budget with work still waiting, which
    /// the kernel will not report again (edge-triggered epoll; a ring's pending `sendfile`).
    Again,
    /// Close it (drop the fd).
    No,
}

/// A connection's socket, framing and timers: everything but how its bytes move.
pub(super) struct Link {
    pub(super) fd: OwnedFd,
    pub(super) role: Role,
    pub(super) state: State,
    /// `inbuf` may hold a complete request: parsing stopped at the output high-water mark.
    pub(super) parse_pending: bool,
    /// `inbuf` holds a complete head whose chunked body has not all arrived: it is answered
    /// once the body's end is in (see `http::chunked`).
    pub(super) body_pending: bool,
    /// How far that body has been scanned, so that each read scans only what it brought.
    pub(super) body_scan: chunked::Scanner,
    /// Request body bytes still to read and throw away.
    pub(super) discard: u64,
    /// When the current timer expires (coarse monotonic ms).
    pub(super) deadline_ms: u64,
    /// When the request being read (head, or body being discarded) started: its timer runs from
    /// there, so a client dribbling bytes cannot extend it.
    pub(super) head_started_ms: Option<u64>,
    /// The send timer is armed for the output now pending.
    pub(super) send_armed: bool,
    /// `TCP_NOTSENT_LOWAT` is set: the connection has sent a large file (see [`Link::pace`]).
    pub(super) paced: bool,
    /// Requests answered so far; a connection that has not finished one is not idle.
    pub(super) requests: u32,
    /// When the read that brought in the requests now being answered happened.
    pub(super) batch_started: Option<u64>,
    /// Public requests answered since `batch_started` whose responses are not fully sent yet.
    pub(super) batch_requests: u32,
    /// Their access records, when a sink wants them (see [`crate::observe::access`]).
    pub(super) records: Vec<AccessRecord>,
    /// The client's address, asked for once, when the first record needs it.
    pub(super) peer: Option<Option<SocketAddr>>,
}

impl Link {
    pub(super) fn new(accepted: Endpoint, now_ms: u64, timeouts: &Timeouts) -> Self {
        Link {
            fd: accepted.fd,
            role: accepted.role,
            state: State::Open,
            parse_pending: false,
            body_pending: false,
            body_scan: chunked::Scanner::default(),
            discard: 0,
            deadline_ms: now_ms + timeouts.header_ms,
            head_started_ms: Some(now_ms),
            send_armed: false,
            paced: false,
            requests: 0,
            batch_started: None,
            batch_requests: 0,
            records: Vec::new(),
            peer: None,
        }
    }

    /// A file larger than its share of a turn is being sent: from now on the socket keeps at
    /// most [`PACED_UNSENT`] bytes queued and not yet transmitted. Without it each share lands
    /// behind the last in the send queue, and the kernel transmits it later from the receiver's
    /// ACKs — on loopback in the client's softirq, on its CPU. Set once per connection (one
    /// `setsockopt`); a kernel without the option (before 3.12) just goes on unpaced.
    pub(super) fn pace(&mut self) {
        if !self.paced {
            self.paced = true;
            let _ = socket::set_notsent_lowat(self.fd.as_fd(), PACED_UNSENT);
        }
    }

    /// The timer fired: answer 408 to a request that stalled mid-head (best effort, one
    /// non-blocking send), else nothing; the caller closes the connection.
    pub(super) fn time_out(&mut self, inbuf: &mut InBuf, out: &mut OutQueue, ctx: &Ctx<'_>) {
        if self.state == State::Open && out.is_empty() && (!inbuf.is_empty() || self.discard > 0) {
            inbuf.release();
            self.discard = 0;
            self.body_scan = chunked::Scanner::default();
            let outcome = respond::invalid(out, Status::RequestTimeout, self.site(ctx), false);
            self.finish(outcome, None, ctx);
            if let Ok(Flush::Done) = out.flush(self.fd.as_fd()) {
                self.observe_batch(ctx, clock::monotonic_ns());
            }
        }
    }

    /// What this connection's listener serves, as the responder sees it this turn.
    pub(super) fn site<'c>(&self, ctx: &Ctx<'c>) -> Site<'c> {
        let service = match self.role {
            Role::Public => Service::Files(ctx.snapshot),
            Role::Admin => Service::Admin(ctx.sources),
        };
        Site { service, date: ctx.date.text(), draining: ctx.draining }
    }

    /// Between requests on a keep-alive connection: closable at once when draining. A new
    /// connection that has not sent its first request yet is not idle — it gets served.
    pub(super) fn is_idle(&self, out: &OutQueue, inbuf: &InBuf) -> bool {
        self.state == State::Open
            && self.requests > 0
            && out.is_empty()
            && inbuf.is_empty()
            && self.discard == 0
    }

    /// Drops buffered input once the connection is closing, and ends the request timer once no
    /// request is half-read (nothing buffered, no body left).
    pub(super) fn after_process(&mut self, inbuf: &mut InBuf) {
        if self.state != State::Open {
            inbuf.release();
        }
        if inbuf.is_empty() && self.discard == 0 {
            self.head_started_ms = None;
        }
    }

    /// Answers every complete request at the start of `data`; returns the bytes consumed.
    pub(super) fn process<'s>(
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
            // The request's fields go into this slot, which the `Request` borrows (a few words
            // to move, not ~400 bytes: `request::Request`).
            let mut fields = Fields::default();
            let parsed = request::parse(&data[pos..], ctx.limits, &mut fields);
            match &parsed {
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
                                self.finish(outcome, Some(req), ctx);
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
                    // A hot small file's whole response, or the responder (which may offer its
                    // answer to the table for next time).
                    let open = self.role == Role::Public && !ctx.draining;
                    let outcome = match ctx.rendered.find(req, open) {
                        Some((response, outcome)) => {
                            response.queue(out);
                            outcome
                        }
                        None => {
                            let before = out.pending();
                            let outcome = respond::respond(req, self.site(ctx), paths, out);
                            let len = out.pending() - before;
                            ctx.rendered.offer(req, open, outcome, out, len);
                            outcome
                        }
                    };
                    self.finish(outcome, Some(req), ctx);
                }
                Parsed::Invalid(status) => {
                    // A response to HEAD never has a body (RFC 9110 §9.3.2), even an error: the
                    // client would read the body as the start of the next response.
                    let head_only = data[pos..].starts_with(b"HEAD ");
                    let outcome = respond::invalid(out, *status, self.site(ctx), head_only);
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
    // Always inlined: out of line (as the inliner chose once `CacheUse` had a fourth case) it
    // cost 24 instructions a keep-alive request (callgrind).
    #[inline(always)]
    pub(super) fn finish(&mut self, outcome: Outcome, req: Option<&Request<'_>>, ctx: &Ctx<'_>) {
        if outcome.close {
            self.state = State::Closing;
            self.discard = 0; // the lingering close swallows whatever body follows
        }
        if self.role != Role::Public {
            return;
        }
        match outcome.cache {
            CacheUse::Hit => ctx.stats.cache_hits.incr(),
            CacheUse::Rendered => ctx.stats.rendered_hits.incr(),
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
    pub(super) fn record(&mut self, req: Option<&Request<'_>>, outcome: Outcome) {
        let fd = self.fd.as_fd();
        let peer = *self.peer.get_or_insert_with(|| socket::peer_addr(fd).ok());
        let since_read = self
            .batch_started
            .map_or(Duration::ZERO, |t| Duration::from_nanos(clock::monotonic_ns().saturating_sub(t)));
        let start = SystemTime::now() - since_read;
        let mut record = match req {
            Some(req) => AccessRecord::new(req, start, peer),
            None => AccessRecord::unparsed(start, peer),
        };
        record.status = outcome.status.code();
        record.body_bytes = outcome.body_bytes;
        self.records.push(record);
    }

    /// The batch's responses are all sent, as of `sent_ns` (a `sys::clock::monotonic_ns`
    /// reading): record one duration per request in it, measured from the start of the turn that
    /// read the batch in (`Ctx::turn_started`) to then: at most one clock read per batch, not per
    /// request, and none when the caller knows the time already (the ring's send completion).
    pub(super) fn observe_batch(&mut self, ctx: &Ctx<'_>, sent_ns: u64) {
        // Requests of the same batch still to be answered (parsing stopped at the output
        // high-water mark) keep the batch's start time.
        let started = if self.parse_pending { self.batch_started } else { self.batch_started.take() };
        if let Some(started) = started {
            if self.batch_requests > 0 {
                let ns = sent_ns.saturating_sub(started);
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

    /// Sets the timer while waiting for input: the head timeout runs from a request's first byte
    /// (a client dribbling bytes cannot extend it), the keep-alive timeout between requests.
    /// `batches`: where an idle connection's batch buffer goes back (`OutQueue::shrink`).
    pub(super) fn arm_read_timer(
        &mut self,
        out: &mut OutQueue,
        ctx: &Ctx<'_>,
        batches: Option<&mut BatchSpares>,
    ) {
        if self.state == State::Lingering {
            return; // the linger deadline stands
        }
        self.deadline_ms = match self.head_started_ms {
            Some(started) => started + ctx.timeouts.header_ms,
            None => {
                out.shrink(batches);
                ctx.now_ms + ctx.timeouts.keep_alive_ms
            }
        };
    }
}
