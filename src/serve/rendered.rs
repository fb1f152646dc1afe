//! Whole responses for hot files (up to 256 KiB with their head), rendered once a second: a
//! keep-alive hit is one contiguous buffer queued as one chunk, like a fixed-response server's
//! `send` (issue #16).
//!
//! **What is rendered.** The responder's own output, copied: when a request that could be
//! answered from this table misses it and the responder answers `200` from the cache with a
//! body in memory (on the heap, or in the snapshot's memfd, read back with `pread(2)` at each
//! capture), the whole response at most [`MAX_RESPONSE`] bytes, the bytes it queued are
//! *captured*. So a
//! rendered response is byte for byte what `respond` would queue, `_headers`, `Vary` and all; only
//! its `Date` is rewritten, in place, when the second changes.
//!
//! **Which requests.** A response depends on the method, the target, `Accept-Encoding`, the
//! conditional and `Range` fields, the version and the close decision. The table is keyed by
//! target and `Accept-Encoding` (the exact bytes: a browser sends the same string every time),
//! and only answers a `GET` over HTTP/1.1 that keeps the connection open, with no conditional
//! field, no `Range` and no body, on the public listener, while not draining. Everything else
//! (HEAD, 304s, ranges, HTTP/1.0, the last request of a connection) takes the responder's path.
//!
//! **When.** Per worker, between turns ([`Rendered::refresh`], at the top of the loop): a new
//! snapshot empties the table (it is keyed by the snapshot's serial, not its address, which a
//! reload may reuse); a new second rewrites every entry's `Date` and drops the entries no request
//! used during the second before; captures made during the last turn are adopted. During a turn
//! the table is only read, so queued chunks may borrow its buffers like the snapshot's, under the
//! same contract (`out_queue::Turn`): output still pending at the end of a turn holds its own
//! reference.
//!
//! **How it is sent.** A response under [`FILE_MIN`] bytes is queued as one shared buffer and goes
//! out with the connection's other output in one send (`sendto(2)` when it is alone), which copies
//! it into the socket. From [`FILE_MIN`] up it lives in a stretch of a memfd and goes out with one
//! `sendfile(2)`, which hands the kernel page references instead of copying: measured with the
//! floor (benches/load/floor.c), from 8 KiB up that costs the server less CPU per request and the
//! client too (docs/benchmarks.md, "Rendered responses from a memfd"). The pages a socket
//! still holds cannot be rewritten, so each new second packs those responses, with their new
//! `Date`, into a new memfd (one per worker and second, [`crate::cache::pack`]); the old
//! stretches are punched out once the last response using them is sent.
//!
//! **Memory.** At most [`MAX_ENTRIES`] entries and [`BUDGET`] bytes of responses per worker,
//! twice over (a small entry keeps a spare buffer, so that rewriting the date allocates nothing
//! while no slow client still holds the spare; a large one its memfd stretch, page-rounded);
//! at most [`MAX_CAPTURES`] captures a turn, their bytes within the same budget. Beyond that,
//! what slow clients hold: a response still queued keeps the buffer or stretch of the second it
//! was sent in, which every connection served that second shares, until it is sent — so each
//! second that a trickling download is still in flight keeps up to [`BUDGET`] more. On a host
//! whose shmem gets huge pages, each second's memfd takes a 2 MiB page however little it holds.

use std::cell::{Cell, RefCell};
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry as Slot, HashTable};

use crate::cache::pack;
use crate::cache::DiskFile;
use crate::http::date;
use crate::http::request::{Method, Request};
use crate::http::response::Status;
use crate::serve::out_queue::{OutQueue, Turn};
use crate::serve::respond::{CacheUse, Outcome};

/// The largest response rendered whole (head and body): every body kept on the heap, such as
/// the ~36 KB brotli variant of a Vite bundle that browsers ask for, and the bodies in the
/// snapshot's memfd up to a Vite chunk's size (the ~190 KiB identity JS). Those would
/// otherwise go out as a `sendmsg(2)` of the head with `MSG_MORE` and a `sendfile(2)` of the
/// body — and on io_uring as a send operation, then the `sendfile` a turn later. Rendered,
/// either is one `sendfile`. Bodies sent from their own file (`Backing::Source`, from
/// `cache::pack::PAGE_CACHE_MIN`, and `Backing::Disk`) are never captured.
pub const MAX_RESPONSE: usize = 256 * 1024;
/// Bytes of rendered responses per worker (twice that with the spares; see the module doc).
pub const BUDGET: usize = 512 * 1024;
/// Entries per worker.
pub const MAX_ENTRIES: usize = 64;
/// Captures kept per turn: a stream of distinct targets costs a bounded copy a turn.
pub const MAX_CAPTURES: usize = 8;
/// Responses from this size up are sent from a memfd with `sendfile(2)` (see the module doc).
pub const FILE_MIN: usize = 8 * 1024;

type KeyHash = foldhash::fast::RandomState;

/// One rendered response.
struct Entry {
    /// The `Accept-Encoding` value it answers (`None`: the request had none).
    accept_encoding: Option<Box<[u8]>>,
    /// The response, with this second's `Date`.
    form: Form,
    /// Where the `Date` value starts in the response.
    date_at: usize,
    outcome: Outcome,
    /// Requests it answered since the last new second.
    hits: Cell<u32>,
}

/// Where a rendered response lives, by its size.
enum Form {
    /// Under [`FILE_MIN`]: on the heap, queued by reference.
    Heap {
        bytes: Arc<[u8]>,
        /// The previous second's buffer (at first, a copy), rewritten in place next second if
        /// nobody holds it any more.
        spare: Arc<[u8]>,
    },
    /// From [`FILE_MIN`] up: `text` is the response, rewritten in place each second (nothing
    /// queues it); `sent` is this second's copy in a memfd stretch, which is what goes out.
    File { text: Box<[u8]>, sent: Arc<DiskFile> },
}

impl Form {
    fn len(&self) -> usize {
        match self {
            Form::Heap { bytes, .. } => bytes.len(),
            Form::File { text, .. } => text.len(),
        }
    }
}

/// A rendered response, as [`Rendered::find`] hands it out.
pub enum Response<'t> {
    /// A shared buffer, borrowed for the turn.
    Bytes(&'t Arc<[u8]>),
    /// A whole memfd stretch, sent with `sendfile(2)`.
    File(&'t Arc<DiskFile>),
}

impl<'t> Response<'t> {
    /// Queues the response on `out`; the table lives through the turn (`'t: 's`).
    #[inline]
    pub fn queue<'s>(self, out: &mut Turn<'_, 's>)
    where
        't: 's,
    {
        match self {
            Response::Bytes(bytes) => out.push_shared(bytes),
            Response::File(disk) => out.push_file(disk, 0, disk.len),
        }
    }
}

/// A response captured during a turn, adopted at the next [`Rendered::refresh`].
struct Capture {
    target: Box<[u8]>,
    accept_encoding: Option<Box<[u8]>>,
    bytes: Vec<u8>,
    date_at: usize,
    outcome: Outcome,
}

/// A worker's rendered responses.
pub struct Rendered {
    /// The serial of the snapshot the entries were captured from.
    serial: u64,
    /// The `Date` every entry carries.
    date: [u8; date::LEN],
    /// By request-target; a target has one entry per `Accept-Encoding` value seen.
    entries: Targets,
    count: usize,
    bytes: usize,
    /// Filled during a turn (the table itself is only read then), drained between turns.
    captures: RefCell<Vec<Capture>>,
}

impl Rendered {
    pub fn new(serial: u64, date: &[u8; date::LEN]) -> Rendered {
        Rendered {
            serial,
            date: *date,
            entries: Targets::default(),
            count: 0,
            bytes: 0,
            captures: RefCell::new(Vec::new()),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Brings the table up to date between two turns: `serial` is the snapshot of the coming
    /// turn, `date` its `Date`. Costs two comparisons when nothing changed.
    pub fn refresh(&mut self, serial: u64, date: &[u8; date::LEN]) {
        if serial != self.serial {
            self.entries.clear();
            self.captures.get_mut().clear(); // captured from the old snapshot
            (self.serial, self.count, self.bytes) = (serial, 0, 0);
        }
        if *date != self.date {
            self.date = *date;
            self.new_second();
        }
        if !self.captures.get_mut().is_empty() {
            self.adopt();
        }
    }

    /// Drops the entries no request used during the last second; rewrites the others' `Date`.
    fn new_second(&mut self) {
        let date = self.date;
        let (mut count, mut bytes) = (0, 0);
        self.entries.retain(|entries| {
            entries.retain_mut(|entry| {
                if entry.hits.replace(0) == 0 {
                    return false;
                }
                let at = entry.date_at..entry.date_at + date::LEN;
                match &mut entry.form {
                    Form::Heap { bytes, spare } => {
                        match Arc::get_mut(spare) {
                            // Nobody holds the spare: it differs from `bytes` only in its date.
                            Some(buf) => buf[at].copy_from_slice(&date),
                            None => {
                                // A slow client still holds it (output pending since a second
                                // ago): a new buffer.
                                let mut buf = bytes.to_vec();
                                buf[at].copy_from_slice(&date);
                                *spare = buf.into();
                            }
                        }
                        std::mem::swap(bytes, spare);
                    }
                    // Packed anew below: the old stretch may still be in a socket's queue.
                    Form::File { text, .. } => text[at].copy_from_slice(&date),
                }
                count += 1;
                bytes += entry.form.len();
                true
            });
            !entries.is_empty()
        });
        (self.count, self.bytes) = (count, bytes);
        self.repack();
    }

    /// Packs every large entry's response, as it is now, into one new memfd, and points the
    /// entries at their new stretches (the old ones are given back when the last response
    /// queued from them is sent). If the memfd cannot be made, they go back to the heap.
    #[cold]
    fn repack(&mut self) {
        let packed = {
            let texts: Vec<&[u8]> = self
                .entries
                .values()
                .flatten()
                .filter_map(|e| match &e.form {
                    Form::File { text, .. } => Some(&**text),
                    Form::Heap { .. } => None,
                })
                .collect();
            if texts.is_empty() {
                return;
            }
            pack::pack(&texts)
        };
        // The same iteration order: the map did not change in between.
        let mut stretches = packed.unwrap_or_else(log_pack_error).into_iter();
        for entry in self.entries.values_mut().flatten() {
            let fallback = match &mut entry.form {
                Form::File { text, sent } => match stretches.next() {
                    Some(stretch) => {
                        *sent = stretch;
                        None
                    }
                    None => Some(heap(text)),
                },
                Form::Heap { .. } => None,
            };
            if let Some(form) = fallback {
                entry.form = form;
            }
        }
    }

    /// Takes in the captures of the last turn that fit; the large ones packed into one memfd.
    fn adopt(&mut self) {
        let mut captures = std::mem::take(self.captures.get_mut());
        let (mut count, mut bytes) = (self.count, self.bytes);
        captures.retain_mut(|capture| {
            let fits = count < MAX_ENTRIES && bytes + capture.bytes.len() <= BUDGET;
            let known = self
                .entries
                .get(&capture.target)
                .is_some_and(|entries| entries.iter().any(|e| e.accept_encoding == capture.accept_encoding));
            if fits && !known {
                count += 1;
                bytes += capture.bytes.len();
                // Captured during the last turn, maybe in the second before this one.
                capture.bytes[capture.date_at..capture.date_at + date::LEN].copy_from_slice(&self.date);
            }
            fits && !known
        });
        let large: Vec<&[u8]> =
            captures.iter().filter(|c| c.bytes.len() >= FILE_MIN).map(|c| c.bytes.as_slice()).collect();
        let packed =
            if large.is_empty() { Vec::new() } else { pack::pack(&large).unwrap_or_else(log_pack_error) };
        let mut stretches = packed.into_iter();
        for capture in captures.drain(..) {
            let stretch = if capture.bytes.len() >= FILE_MIN { stretches.next() } else { None };
            let form = match stretch {
                Some(sent) => Form::File { text: capture.bytes.into(), sent },
                None => heap(&capture.bytes),
            };
            self.entries.get_or_insert(capture.target).push(Entry {
                accept_encoding: capture.accept_encoding,
                form,
                date_at: capture.date_at,
                outcome: capture.outcome,
                hits: Cell::new(1),
            });
        }
        (self.count, self.bytes) = (count, bytes);
        *self.captures.get_mut() = captures; // empty, its capacity kept
    }

    /// The rendered response to `req`, if there is one. `open` says the response may keep the
    /// connection open (the public listener, not draining).
    #[inline]
    pub fn find(&self, req: &Request<'_>, open: bool) -> Option<(Response<'_>, Outcome)> {
        if self.count == 0 || !open || !answers(req) {
            return None;
        }
        let entries = self.entries.get(req.target)?;
        let entry = entries.iter().find(|e| match (e.accept_encoding.as_deref(), req.accept_encoding) {
            (Some(a), Some(b)) => same_bytes(a, b),
            (a, b) => a.is_none() && b.is_none(),
        })?;
        entry.hits.set(entry.hits.get().saturating_add(1));
        let response = match &entry.form {
            Form::Heap { bytes, .. } => Response::Bytes(bytes),
            Form::File { sent, .. } => Response::File(sent),
        };
        Some((response, entry.outcome))
    }

    /// After the responder answered `req` (which missed the table) with `outcome`, queueing
    /// `len` bytes at the end of `out`: captures those bytes if they can answer it next time.
    /// They carry this turn's `Date`, which [`Rendered::refresh`] gave the table.
    #[inline]
    pub fn offer(&self, req: &Request<'_>, open: bool, outcome: Outcome, out: &OutQueue, len: usize) {
        let cacheable = outcome.status == Status::Ok && outcome.cache == CacheUse::Hit && !outcome.close;
        let room = self.count < MAX_ENTRIES && self.bytes + len <= BUDGET;
        if !cacheable || !open || len > MAX_RESPONSE || !answers(req) || !room {
            return; // a full table copies nothing: a miss costs what it did without the table
        }
        self.capture(req, outcome, out, len);
    }

    #[cold]
    fn capture(&self, req: &Request<'_>, outcome: Outcome, out: &OutQueue, len: usize) {
        let mut captures = self.captures.borrow_mut();
        let same =
            |c: &Capture| &*c.target == req.target && c.accept_encoding.as_deref() == req.accept_encoding;
        if captures.len() >= MAX_CAPTURES || captures.iter().any(same) {
            return;
        }
        // Captures not yet adopted count against the budget too: a turn copies at most that.
        if self.bytes + captures.iter().map(|c| c.bytes.len()).sum::<usize>() + len > BUDGET {
            return;
        }
        let mut bytes = Vec::new();
        if !out.copy_last(len, &mut bytes) {
            return; // a part is a file other than the snapshot's memfd, or its read failed
        }
        let Some(date_at) = date_position(&bytes, &self.date) else {
            return;
        };
        captures.push(Capture {
            target: req.target.into(),
            accept_encoding: req.accept_encoding.map(Into::into),
            bytes,
            date_at,
            outcome: Outcome { cache: CacheUse::Rendered, ..outcome },
        });
    }
}

/// The table's entries by request-target: a hash table whose lookups compare the target with
/// [`same_bytes`], inline. (A `HashMap<Box<[u8]>, _>` compares keys with `memcmp`, a call that
/// cost 5.6–6.7 ns a pipelined request in `perf`, as much as the hash; docs/benchmarks.md.)
#[derive(Default)]
struct Targets {
    table: HashTable<(Box<[u8]>, Vec<Entry>)>,
    hasher: KeyHash,
}

impl Targets {
    #[inline(always)]
    fn get(&self, target: &[u8]) -> Option<&Vec<Entry>> {
        let hash = self.hasher.hash_one(target);
        self.table.find(hash, |(key, _)| same_bytes(key, target)).map(|(_, entries)| entries)
    }

    fn get_or_insert(&mut self, target: Box<[u8]>) -> &mut Vec<Entry> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&*target);
        let slot =
            self.table.entry(hash, |(key, _)| same_bytes(key, &target), |(key, _)| hasher.hash_one(&**key));
        match slot {
            Slot::Occupied(slot) => &mut slot.into_mut().1,
            Slot::Vacant(slot) => &mut slot.insert((target, Vec::new())).into_mut().1,
        }
    }

    /// Keeps the targets whose entries `keep` says to keep (it may change them).
    fn retain(&mut self, mut keep: impl FnMut(&mut Vec<Entry>) -> bool) {
        self.table.retain(|(_, entries)| keep(entries));
    }

    fn values(&self) -> impl Iterator<Item = &Vec<Entry>> {
        self.table.iter().map(|(_, entries)| entries)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Vec<Entry>> {
        self.table.iter_mut().map(|(_, entries)| entries)
    }

    fn clear(&mut self) {
        self.table.clear();
    }
}

/// Whether two byte strings are equal, compared inline eight bytes at a time, the last word
/// overlapping the one before it: a request-target or an `Accept-Encoding` value is a few dozen
/// bytes, for which calling `memcmp` costs more than the comparison.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 4 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    if n < 8 {
        let half = |s: &[u8], at: usize| {
            s.get(at..).and_then(|r| r.first_chunk::<4>()).map(|w| u32::from_ne_bytes(*w))
        };
        return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
    }
    let word =
        |s: &[u8], at: usize| s.get(at..).and_then(|r| r.first_chunk::<8>()).map(|w| u64::from_ne_bytes(*w));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// A small entry's form: the response on the heap, and its spare.
fn heap(response: &[u8]) -> Form {
    Form::Heap { bytes: response.into(), spare: response.into() }
}

/// A memfd for large rendered responses could not be made (a memory limit, a seccomp filter
/// from elsewhere): they are sent from the heap instead. Logged, since it costs CPU.
#[cold]
fn log_pack_error(e: std::io::Error) -> Vec<Arc<DiskFile>> {
    crate::log!("rendered responses stay on the heap: no memfd for them ({e})");
    Vec::new()
}

/// Whether a rendered response can answer `req`: what it depends on besides the target and
/// `Accept-Encoding` is what a plain keep-alive `GET` has.
#[inline]
fn answers(req: &Request<'_>) -> bool {
    req.method == Method::Get
        && req.minor_version == 1
        && req.keep_alive
        && req.range.is_none()
        && req.conditions.is_empty()
        && req.body_len == 0
        && !req.chunked
        && !req.expect_continue
}

/// Where the value of the `Date` field starts in a response head, if it is there and says `date`.
fn date_position(response: &[u8], date: &[u8; date::LEN]) -> Option<usize> {
    const FIELD: &[u8] = b"\r\nDate: ";
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let at = response[..head_end + 2].windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    (response.get(at..at + date::LEN)? == date).then_some(at)
}

#[cfg(test)]
mod tests {
    //! The table on its own, fed the way `Link::process` feeds it: requests parsed from text, the
    //! responder's answers queued into an output queue, a snapshot loaded from a temporary
    //! directory. No socket.
    use super::*;
    use crate::cache::{load, LoadOptions, Snapshot};
    use crate::http::request::{self, Limits, Parsed};
    use crate::serve::respond::{self, PathBufs, Service, Site};
    use std::sync::OnceLock;

    const ONE: &[u8; date::LEN] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    const TWO: &[u8; date::LEN] = b"Sun, 06 Nov 1994 08:49:38 GMT";
    const THREE: &[u8; date::LEN] = b"Sun, 06 Nov 1994 08:49:39 GMT";

    fn snapshot() -> &'static Snapshot {
        static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
        SNAPSHOT.get_or_init(|| {
            let root = std::env::temp_dir().join(format!("atomserve-rendered-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("index.html"), "<!doctype html><title>app</title>\n".repeat(20))
                .unwrap();
            std::fs::write(root.join("big.txt"), "x".repeat(MAX_RESPONSE)).unwrap();
            std::fs::write(root.join("mid.bin"), vec![7u8; 3 * FILE_MIN]).unwrap();
            let chunk: String = (0..20_000).map(|i| format!("f{i}();")).collect();
            std::fs::write(root.join("chunk.js"), &chunk[..150 * 1024]).unwrap();
            std::fs::write(root.join("_headers"), "/*\n  X-Frame-Options: DENY\n").unwrap();
            let snapshot = load(&LoadOptions::for_tests(root.clone(), true)).unwrap();
            std::fs::remove_dir_all(&root).unwrap();
            snapshot
        })
    }

    /// Answers `raw` as `Link::process` does; returns the bytes queued and whether the table
    /// answered.
    fn ask(table: &Rendered, raw: &str, date: &[u8; date::LEN]) -> (Vec<u8>, Outcome, bool) {
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(raw.as_bytes(), &Limits::default(), &mut fields) else {
            panic!("{raw}")
        };
        let site = Site { service: Service::Files(snapshot()), date, draining: false };
        let mut out = OutQueue::default();
        let mut paths = PathBufs::default();
        let (outcome, hit) = out.turn(|out| match table.find(&req, true) {
            Some((response, outcome)) => {
                response.queue(out);
                (outcome, true)
            }
            None => {
                let outcome = respond::respond(&req, site, &mut paths, out);
                table.offer(&req, true, outcome, out, out.pending());
                (outcome, false)
            }
        });
        (out.contents().unwrap(), outcome, hit)
    }

    const GET: &str = "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
    const GET_BR: &str = "GET /index.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br\r\n\r\n";

    #[test]
    fn a_hit_is_byte_for_byte_what_the_responder_queued() {
        let mut table = Rendered::new(snapshot().serial(), ONE);
        let (first, outcome, hit) = ask(&table, GET, ONE);
        assert!(!hit && table.is_empty(), "the first answer is the responder's, captured");
        table.refresh(snapshot().serial(), ONE);
        assert_eq!(table.len(), 1);
        let (again, again_outcome, hit) = ask(&table, GET, ONE);
        assert!(hit);
        assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&first));
        assert_eq!(again_outcome, Outcome { cache: CacheUse::Rendered, ..outcome }, "counted apart");
        assert!(first.windows(15).any(|w| w == b"X-Frame-Options"), "_headers rules are in it");
        // Each Accept-Encoding value has its own entry: the br answer is not the identity one.
        let (br, _, hit) = ask(&table, GET_BR, ONE);
        assert!(!hit && br.windows(20).any(|w| w == b"Content-Encoding: br"));
        table.refresh(snapshot().serial(), ONE);
        assert_eq!(ask(&table, GET_BR, ONE), (br, outcome_of(&table, GET_BR), true));
    }

    fn outcome_of(table: &Rendered, raw: &str) -> Outcome {
        ask(table, raw, ONE).1
    }

    #[test]
    fn only_a_plain_keep_alive_get_is_answered_from_the_table() {
        let mut table = Rendered::new(snapshot().serial(), ONE);
        ask(&table, GET, ONE);
        table.refresh(snapshot().serial(), ONE);
        assert!(ask(&table, GET, ONE).2);
        for raw in [
            "HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\"\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            "GET /index.html?v=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /index.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: identity\r\n\r\n",
        ] {
            let (_, _, hit) = ask(&table, raw, ONE);
            assert!(!hit, "{raw}");
            table.refresh(snapshot().serial(), ONE);
        }
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(GET.as_bytes(), &Limits::default(), &mut fields) else {
            panic!()
        };
        assert!(table.find(&req, false).is_none(), "not when closing (draining, admin listener)");
        // What is not a cached 200 in memory is never captured: a 404, a body too large.
        for raw in
            ["GET /missing.png HTTP/1.1\r\nHost: t\r\n\r\n", "GET /big.txt HTTP/1.1\r\nHost: t\r\n\r\n"]
        {
            let before = table.len();
            ask(&table, raw, ONE);
            table.refresh(snapshot().serial(), ONE);
            assert!(!ask(&table, raw, ONE).2 && table.len() == before, "{raw}");
        }
    }

    #[test]
    fn a_new_second_rewrites_the_date_and_drops_what_went_unused() {
        let mut table = Rendered::new(snapshot().serial(), ONE);
        let (first, ..) = ask(&table, GET, ONE);
        ask(&table, GET_BR, ONE);
        table.refresh(snapshot().serial(), ONE);
        assert_eq!(table.len(), 2);
        ask(&table, GET, ONE); // the identity entry is used this second, the br one not
        table.refresh(snapshot().serial(), TWO);
        assert_eq!(table.len(), 2, "a new entry lives through its first second");
        let (second, _, hit) = ask(&table, GET, TWO);
        assert!(hit);
        let (fresh, ..) = ask(&Rendered::new(snapshot().serial(), TWO), GET, TWO);
        assert_eq!(second, fresh, "the date rewritten, nothing else");
        assert_ne!(second, first);
        // The next second: the br entry went unused for a whole second; the identity one is
        // written into its spare (the buffer of the first second), in place.
        table.refresh(snapshot().serial(), THREE);
        assert_eq!(table.len(), 1);
        let (third, ..) = ask(&Rendered::new(snapshot().serial(), THREE), GET, THREE);
        assert_eq!(ask(&table, GET, THREE).0, third);
    }

    /// A response from `FILE_MIN` up is queued as a memfd stretch; a new second packs a new
    /// one, and output still queued from the old stretch keeps the old bytes.
    #[test]
    fn a_large_response_is_sent_from_a_memfd_repacked_each_second() {
        const MID: &str = "GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut table = Rendered::new(snapshot().serial(), ONE);
        let (first, ..) = ask(&table, MID, ONE);
        assert!(first.len() > 3 * FILE_MIN);
        table.refresh(snapshot().serial(), ONE);
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(MID.as_bytes(), &Limits::default(), &mut fields) else {
            panic!()
        };
        let mut slow = OutQueue::default(); // a client that has not read its response yet
        slow.turn(|out| match table.find(&req, true) {
            Some((Response::File(disk), _)) => out.push_file(disk, 0, disk.len),
            _ => panic!("a large response is a file chunk"),
        });
        assert_eq!(slow.contents().unwrap(), first);
        table.refresh(snapshot().serial(), TWO);
        let (second, _, hit) = ask(&table, MID, TWO);
        let (fresh, ..) = ask(&Rendered::new(snapshot().serial(), TWO), MID, TWO);
        assert!(hit);
        assert_eq!(second, fresh, "the new second's stretch has the new date");
        assert_eq!(slow.contents().unwrap(), first, "the queued stretch still holds the old bytes");
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        // Every length the word loop and its overlapping tail treat apart, and a difference at
        // every position of each.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0x55).collect();
            assert!(same_bytes(&a, &a.clone()), "{n}");
            if n > 0 {
                assert!(!same_bytes(&a, &a[..n - 1]), "{n}: lengths differ");
            }
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "{n} at {at}");
            }
        }
    }

    #[test]
    fn targets_find_what_was_inserted_and_nothing_else() {
        let mut targets = Targets::default();
        let keys = ["/", "/ab", "/abcd", "/index.html", "/assets/index-DiwrgTda.js"];
        for key in keys {
            targets.get_or_insert(key.as_bytes().into());
        }
        assert_eq!(targets.values().count(), keys.len());
        targets.get_or_insert(b"/index.html"[..].into()); // the same target: no second slot
        assert_eq!(targets.values().count(), keys.len());
        for key in keys {
            assert!(targets.get(key.as_bytes()).is_some(), "{key}");
        }
        for other in ["", "/index.htm", "/index.htmm", "/assets/index-DiwrgTdb.js", "/Ab"] {
            assert!(targets.get(other.as_bytes()).is_none(), "{other}");
        }
        targets.clear();
        assert!(targets.get(b"/").is_none());
    }

    /// A body in the snapshot's memfd (a Vite chunk, past `ZERO_COPY_MIN`) is read back once and
    /// rendered with its head: a hit is one stretch, one `sendfile`, not a head and a body.
    #[test]
    fn a_memfd_body_is_rendered_whole_with_its_head() {
        const CHUNK: &str = "GET /chunk.js HTTP/1.1\r\nHost: t\r\n\r\n";
        let (_, entry) = snapshot().entries().find(|(key, _)| *key == b"/chunk.js").unwrap();
        let file = entry.identity.file.as_ref().expect("the body is a file chunk");
        assert!(file.backing == crate::cache::Backing::Memfd, "the body is in the snapshot's memfd");
        let mut table = Rendered::new(snapshot().serial(), ONE);
        let (first, ..) = ask(&table, CHUNK, ONE);
        table.refresh(snapshot().serial(), ONE);
        assert_eq!(table.len(), 1, "captured");
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(CHUNK.as_bytes(), &Limits::default(), &mut fields) else {
            panic!()
        };
        let mut out = OutQueue::default();
        out.turn(|out| table.find(&req, true).expect("a hit").0.queue(out));
        assert_eq!(out.chunks(), 1, "head and body in one chunk");
        assert!(out.front_is_file());
        assert_eq!(String::from_utf8_lossy(&out.contents().unwrap()), String::from_utf8_lossy(&first));
        table.refresh(snapshot().serial(), TWO);
        let (fresh, ..) = ask(&Rendered::new(snapshot().serial(), TWO), CHUNK, TWO);
        assert_eq!(ask(&table, CHUNK, TWO).0, fresh, "the next second's date, the same body");
    }

    #[test]
    fn a_new_snapshot_empties_the_table() {
        let mut table = Rendered::new(snapshot().serial(), ONE);
        ask(&table, GET, ONE);
        table.refresh(snapshot().serial(), ONE);
        assert!(ask(&table, GET, ONE).2);
        table.refresh(snapshot().serial() + 1, ONE);
        assert!(table.is_empty());
        // A capture made during the turn before a new snapshot is not adopted either.
        ask(&table, GET, ONE);
        table.refresh(snapshot().serial() + 2, ONE);
        assert!(table.is_empty());
    }

    #[test]
    fn the_budget_bounds_the_table() {
        let mut table = Rendered::new(snapshot().serial(), ONE);
        // Distinct targets (the query string is part of the key), more than fit.
        for round in 0..MAX_ENTRIES / MAX_CAPTURES + 2 {
            for i in 0..MAX_CAPTURES + 2 {
                ask(&table, &format!("GET /index.html?{round}-{i} HTTP/1.1\r\nHost: t\r\n\r\n"), ONE);
            }
            table.refresh(snapshot().serial(), ONE);
            assert!(table.len() <= (round + 1) * MAX_CAPTURES, "at most {MAX_CAPTURES} captures a turn");
        }
        assert_eq!(table.len(), MAX_ENTRIES);
        assert!(table.bytes <= BUDGET);
        ask(&table, "GET /index.html?one-more HTTP/1.1\r\nHost: t\r\n\r\n", ONE);
        assert!(table.captures.borrow().is_empty(), "a full table captures nothing");
        // Full by bytes before entries: no copy either.
        table.refresh(snapshot().serial() + 1, ONE);
        table.bytes = BUDGET - 100;
        ask(&table, GET, ONE);
        assert!(table.captures.borrow().is_empty(), "no room for it");
    }
}
