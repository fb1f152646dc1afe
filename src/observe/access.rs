//! Access records: one per answered request, built only when someone reads them — the text access
//! log (`--access-log stdout`) or the OTLP bridge (spans and log records, see
//! [`crate::observe::telemetry`]). With both off, the request path never builds one.
//!
//! A record copies what it needs out of the read buffer into one allocation (method, target and a
//! few fields), because the buffer is reused as soon as the batch is answered. Records wait in
//! their connection until the batch's responses are fully sent, so that the duration covers the
//! send, then go to the worker's [`AccessSink`]: formatted into the worker's text buffer, and
//! pushed (without blocking) onto the bounded queue the OTLP bridge drains. A full queue drops
//! the record and counts it (`atomserve_telemetry_records_dropped_total`). Text lines are written
//! by a thread of their own ([`LogWriter`]), so a slow standard output never blocks a worker.

use std::cell::RefCell;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use crate::http::date;
use crate::http::request::Request;
use crate::stats::{Stats, WorkerStats};
use crate::sync::{thread, Arc};
use crate::sys::file;

/// The bounded queue between the workers and the OTLP bridge thread.
pub type RecordQueue = ArrayQueue<AccessRecord>;

/// Fields copied out of a request head, in [`AccessRecord::text`].
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum Field {
    Method,
    Target,
    Host,
    UserAgent,
    Referer,
    TraceParent,
    TraceState,
}

const FIELDS: usize = 7;

/// One answered request.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the read that brought the request in happened (wall clock).
    pub start: SystemTime,
    /// From `start` until the response was fully handed to the kernel.
    pub duration: Duration,
    pub status: u16,
    /// Body bytes of the response (what `atomserve_http_response_bytes_total` counts).
    pub body_bytes: u64,
    /// `Some(0|1)` for HTTP/1.0 or 1.1; `None` when the head could not be parsed.
    pub minor_version: Option<u8>,
    /// The client, from getpeername(2) once per connection.
    pub peer: Option<SocketAddr>,
    text: Vec<u8>,
    ends: [u32; FIELDS],
}

impl AccessRecord {
    /// A record of a parsed request, still without its outcome.
    pub fn new(req: &Request<'_>, start: SystemTime, peer: Option<SocketAddr>) -> Self {
        let fields: [&[u8]; FIELDS] = [
            req.method_token.as_bytes(),
            req.target,
            req.host.unwrap_or_default(),
            req.user_agent.unwrap_or_default(),
            req.referer.unwrap_or_default(),
            req.traceparent.unwrap_or_default(),
            req.tracestate.unwrap_or_default(),
        ];
        let mut text = Vec::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0; FIELDS];
        for (end, field) in ends.iter_mut().zip(fields) {
            // A head is at most --max-header-bytes (far below 4 GiB): the ends fit in u32.
            text.extend_from_slice(field);
            *end = text.len() as u32;
        }
        AccessRecord {
            start,
            duration: Duration::ZERO,
            status: 0,
            body_bytes: 0,
            minor_version: Some(req.minor_version),
            peer,
            text,
            ends,
        }
    }

    /// A record of a request whose head could not be parsed (it is answered with a 4xx).
    pub fn unparsed(start: SystemTime, peer: Option<SocketAddr>) -> Self {
        AccessRecord {
            start,
            duration: Duration::ZERO,
            status: 0,
            body_bytes: 0,
            minor_version: None,
            peer,
            text: Vec::new(),
            ends: [0; FIELDS],
        }
    }

    /// A field's bytes as sent (empty when absent).
    pub fn field(&self, field: Field) -> &[u8] {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[Range { start, end: self.ends[i] as usize }]
    }

    /// The field as text, when present and valid UTF-8 (header values are almost always ASCII).
    pub fn field_str(&self, field: Field) -> Option<&str> {
        let bytes = self.field(field);
        if bytes.is_empty() {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }

    /// Appends the record in the Combined Log Format that nginx and Apache write by default:
    /// `peer - - [time] "request line" status bytes "referer" "user-agent"`, with `"`, `\` and
    /// control bytes escaped as `\xHH` so that a hostile header cannot forge a line.
    pub fn write_combined(&self, out: &mut Vec<u8>) {
        match self.peer {
            Some(peer) => out.extend_from_slice(peer.ip().to_string().as_bytes()),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        let secs = self.start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        out.extend_from_slice(&date::format_clf(secs));
        out.extend_from_slice(b"] \"");
        match self.minor_version {
            Some(minor) => {
                escape(self.field(Field::Method), out);
                out.push(b' ');
                escape(self.field(Field::Target), out);
                out.extend_from_slice(if minor == 0 { b" HTTP/1.0" } else { b" HTTP/1.1" });
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(format!("\" {} {} \"", self.status, self.body_bytes).as_bytes());
        quoted_or_dash(self.field(Field::Referer), out);
        out.extend_from_slice(b"\" \"");
        quoted_or_dash(self.field(Field::UserAgent), out);
        out.extend_from_slice(b"\"\n");
    }
}

fn quoted_or_dash(value: &[u8], out: &mut Vec<u8>) {
    if value.is_empty() {
        out.push(b'-');
    } else {
        escape(value, out);
    }
}

/// nginx's escaping for access logs: printable ASCII stays, the rest becomes `\xHH`.
fn escape(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in value {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
    }
}

/// A worker's text access log: lines gather in a buffer of the worker's own; a full buffer (or
/// one a second old) is handed whole to the [`LogWriter`] thread, which does the `write(2)`.
/// A worker never blocks on standard output: when the writer falls behind (a slow pipe, a
/// stopped terminal), buffers it has no room for are dropped and their lines counted.
pub struct TextLog {
    buf: Vec<u8>,
    out: SyncSender<Vec<u8>>,
}

/// Hand a buffer to the writer once it holds this much.
const HAND_OVER_AT: usize = 32 * 1024;

impl TextLog {
    pub fn new(out: SyncSender<Vec<u8>>) -> Self {
        TextLog { buf: Vec::new(), out }
    }

    fn push(&mut self, record: &AccessRecord, stats: &WorkerStats) {
        record.write_combined(&mut self.buf);
        if self.buf.len() >= HAND_OVER_AT {
            self.flush(stats);
        }
    }

    /// Hands what is buffered to the writer, without blocking.
    pub fn flush(&mut self, stats: &WorkerStats) {
        if self.buf.is_empty() {
            return;
        }
        let full = mem::replace(&mut self.buf, Vec::with_capacity(HAND_OVER_AT + 1024));
        if let Err(TrySendError::Full(lost) | TrySendError::Disconnected(lost)) = self.out.try_send(full) {
            stats.access_log_dropped.add(count_lines(&lost));
        }
    }
}

fn count_lines(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Buffers the writer may hold before workers start dropping (at 32 KiB each: 2 MiB).
const WRITER_BACKLOG: usize = 64;

/// The thread that writes the workers' access-log buffers to standard output, one `write(2)`
/// per buffer, so that lines of two workers never interleave.
pub struct LogWriter {
    sender: SyncSender<Vec<u8>>,
    handle: thread::JoinHandle<()>,
}

impl LogWriter {
    /// Starts the writer; `stats.log` is its own counter of lines it could not write.
    pub fn spawn(stats: Arc<Stats>) -> std::io::Result<LogWriter> {
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(WRITER_BACKLOG);
        let handle = thread::Builder::new().name("atomserve-log".into()).spawn(move || {
            for buf in receiver {
                if file::write_all(file::stdout(), &buf).is_err() {
                    // EPIPE (the reader went away), EBADF: the lines are lost, serving goes on.
                    stats.log.lines_dropped.add(count_lines(&buf));
                }
            }
        })?;
        Ok(LogWriter { sender, handle })
    }

    /// A sender for one worker's [`TextLog`].
    pub fn sender(&self) -> SyncSender<Vec<u8>> {
        self.sender.clone()
    }

    /// Once the workers are gone (their senders dropped): writes what is left, waiting at most
    /// `timeout` for a standard output that does not take it.
    pub fn finish(self, timeout: Duration) {
        drop(self.sender);
        let deadline = Instant::now() + timeout;
        while !self.handle.is_finished() {
            if Instant::now() > deadline {
                crate::log!("the access log could not be written out within {timeout:?}");
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.handle.join();
    }
}

/// Where a worker's access records go. Both parts are optional; with neither, `enabled` is false
/// and no record is ever built.
#[derive(Default)]
pub struct AccessSink {
    /// `--access-log stdout`. A `RefCell` because the connection code holds the sink through a
    /// shared reference; only the owning worker thread touches it.
    pub text: Option<RefCell<TextLog>>,
    /// The OTLP bridge's queue.
    pub otlp: Option<Arc<RecordQueue>>,
}

impl AccessSink {
    #[inline]
    pub fn enabled(&self) -> bool {
        self.text.is_some() || self.otlp.is_some()
    }

    /// Hands a finished record on: to the text log, then to the OTLP bridge (never blocking).
    pub fn emit(&self, record: AccessRecord, stats: &WorkerStats) {
        if let Some(text) = &self.text {
            text.borrow_mut().push(&record, stats);
        }
        if let Some(queue) = &self.otlp {
            if queue.push(record).is_err() {
                stats.telemetry_dropped.incr();
            }
        }
    }

    /// Writes buffered text lines (once a second, and when the worker stops).
    pub fn flush(&self, stats: &WorkerStats) {
        if let Some(text) = &self.text {
            text.borrow_mut().flush(stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{self, Limits, Parsed};

    #[test]
    fn combined_format_escapes_what_could_forge_a_line() {
        let raw = b"GET /a%20b?q=x HTTP/1.1\r\nHost: h\r\nUser-Agent: evil\" 200 0 \"\xff\r\n\r\n";
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(raw, &Limits::default(), &mut fields) else {
            panic!("parse")
        };
        let peer = "192.0.2.7:5555".parse().ok();
        let mut rec = AccessRecord::new(&req, UNIX_EPOCH + Duration::from_secs(1_795_663_171), peer);
        rec.status = 200;
        rec.body_bytes = 460;
        let mut out = Vec::new();
        rec.write_combined(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [26/Nov/2026:03:19:31 +0000] \"GET /a%20b?q=x HTTP/1.1\" 200 460 \
             \"-\" \"evil\\x22 200 0 \\x22\\xFF\"\n"
        );
        assert_eq!(rec.field(Field::Host), b"h");
        assert_eq!(rec.field_str(Field::Referer), None);
    }

    #[test]
    fn unparsed_requests_log_a_dash() {
        let mut rec = AccessRecord::unparsed(UNIX_EPOCH, None);
        rec.status = 400;
        let mut out = Vec::new();
        rec.write_combined(&mut out);
        assert_eq!(out, b"- - - [01/Jan/1970:00:00:00 +0000] \"-\" 400 0 \"-\" \"-\"\n");
    }
}
