//! A connection's pending output: a queue of byte ranges sent with one `sendmsg(2)` per flush
//! (`sendto(2)` when it is one buffer).
//!
//! Bodies and response heads are *not* copied: a chunk may point straight into the snapshot's
//! memory. Only the few dozen bytes that change per response (the tail: `Date`, `Connection`)
//! and generated responses live in the connection's own buffer. A partial send keeps its place
//! and resumes where the kernel stopped. One exception, on epoll: a pipelined batch of small
//! responses is copied into one stretch before it is sent ([`OutQueue::coalesce`]), because the
//! kernel copies one stretch faster than one per iovec. That stretch is a buffer of its own, lent
//! by the worker's [`BatchSpares`] and given back when the connection goes idle, so that a
//! pipelining connection neither allocates per batch nor keeps a batch's memory while idle. (The
//! io_uring transport does not coalesce: see `ring_conn::pump`.)
//!
//! A borrowed chunk is only valid until the worker's next quiescent point (see
//! `cache::swap`): after that, a reload may free the snapshot it points into. The contract lives
//! here, in one place, behind a safe API: snapshot bytes can be queued only through a [`Turn`],
//! which [`OutQueue::turn`] lends for the length of one closure call and whose lifetime `'s` is
//! that of the snapshot borrow. When the closure returns, output still pending is *held* —
//! borrowed chunks become `Arc<[u8]>` clones, a reference count taken only on partial writes —
//! so outside a turn the queue never points into a snapshot.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::cache::{Backing, DiskFile};
use crate::sys::{file, socket};

/// The most buffers one `sendmsg` takes; more wait for the next call. (Linux allows 1024.)
pub const MAX_IOV: usize = 64;

enum Chunk {
    /// Bytes `start..end` of an `Arc<[u8]>` inside the snapshot the worker is reading this turn (or
    /// its rendered responses), borrowed without touching its count; valid until the turn ends.
    Borrowed(*const Arc<[u8]>, usize, usize),
    /// The same bytes, kept alive by this queue's own reference.
    Held(Arc<[u8]>, usize, usize),
    /// `own[start..start + len]`.
    Own { start: usize, len: usize },
    /// `batch[start..start + len]`: responses copied into one stretch by `coalesce`.
    Batch { start: usize, len: usize },
    /// Bytes `start..end` of a file on disk, sent with sendfile(2).
    File(Arc<DiskFile>, u64, u64),
}

impl Chunk {
    /// Length in bytes: every kind of chunk stores it.
    #[inline]
    fn len(&self) -> usize {
        match *self {
            Chunk::Borrowed(_, start, end) | Chunk::Held(_, start, end) => end - start,
            Chunk::Own { len, .. } | Chunk::Batch { len, .. } => len,
            Chunk::File(_, start, end) => (end - start) as usize,
        }
    }

    /// The bytes of a chunk that points into shared memory (borrowed or held); empty for the
    /// connection's own and batch bytes (which need the queue's buffers: `OutQueue::bytes`) and
    /// for files.
    #[inline]
    fn shared(&self) -> &[u8] {
        match self {
            // SAFETY: a borrowed chunk exists only during the `OutQueue::turn` call that queued
            // it, while the Arc it points to is alive (see `turn`); `start..end` was checked.
            Chunk::Borrowed(arc, start, end) => unsafe { &(&**arc)[*start..*end] },
            Chunk::Held(bytes, start, end) => &bytes[*start..*end],
            Chunk::Own { .. } | Chunk::Batch { .. } | Chunk::File(..) => &[],
        }
    }
}

/// An [`OutQueue`] lent for one turn of a worker, during which the snapshot the worker reads
/// is alive for `'s`: bytes of that snapshot can be queued without touching their reference
/// count. Everything else an `OutQueue` does is reached through `Deref`.
pub struct Turn<'q, 's> {
    queue: &'q mut OutQueue,
    borrowed: PhantomData<&'s Arc<[u8]>>,
}

impl<'s> Turn<'_, 's> {
    /// Queues bytes that live for `'s` (in the snapshot, or in the worker's rendered responses,
    /// which change only between turns), without cloning the `Arc`.
    pub fn push_shared(&mut self, bytes: &'s Arc<[u8]>) {
        self.push_shared_range(bytes, 0, bytes.len());
    }

    /// Queues bytes `start..end` of `bytes` (a byte range), without cloning the `Arc`.
    ///
    /// `start <= end <= bytes.len()`, or sending it panics (slicing is checked).
    pub fn push_shared_range(&mut self, bytes: &'s Arc<[u8]>, start: usize, end: usize) {
        debug_assert!(start <= end && end <= bytes.len(), "range {start}..{end} of {}", bytes.len());
        if start < end {
            self.queue.pending += end - start;
            self.queue.chunks.push_back(Chunk::Borrowed(bytes, start, end));
        }
    }
}

impl Deref for Turn<'_, '_> {
    type Target = OutQueue;
    fn deref(&self) -> &OutQueue {
        self.queue
    }
}

impl DerefMut for Turn<'_, '_> {
    fn deref_mut(&mut self) -> &mut OutQueue {
        self.queue
    }
}

/// The result of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was sent.
    Done,
    /// The socket buffer is full: wait for `EPOLLOUT`. Some bytes may have been sent.
    Blocked { progress: bool },
    /// A file chunk sent its share for this turn and the socket still takes more: call again
    /// soon (no `EPOLLOUT` will come), after the worker's other connections had their turn.
    Yield,
}

/// The most bytes of a file sent in one flush, so that a fast client downloading a large file
/// cannot keep its worker from the other connections. Also the size that moves large files
/// fastest here: with 16 clients of a 5 MiB file, 256 KiB per `sendfile` gave 1.3–1.6× the req/s
/// of 1 MiB at 0.7× the server CPU per request (128 KiB was no better than 1 MiB, 512 KiB fell
/// between; lighttpd sends 256 KiB too), docs/benchmarks.md.
pub const FILE_SHARE: u64 = 256 * 1024;

/// The fewest chunks at the front of the queue worth copying into one ([`OutQueue::coalesce`]):
/// more than one response's head, body and tail.
pub const COALESCE_CHUNKS: usize = 4;
/// The most bytes [`OutQueue::coalesce`] copies at once. The batch buffer keeps what it copied
/// until the queue empties, and a batch drained over many partial sends may be coalesced at each:
/// copies stop once the buffer holds twice this (it goes back to the worker's spares when the
/// connection goes idle).
pub const COALESCE_BYTES: usize = 32 * 1024;

/// Emptied batch buffers ([`OutQueue::coalesce`]) a worker keeps for its connections' next
/// pipelined batch: a connection takes one for a batch and gives it back when it goes idle or
/// closes. Once the pool has warmed up, pipelining allocates nothing, as long as no more
/// connections pipeline at once than the pool keeps buffers. At most [`BATCH_SPARES`] buffers of
/// at most [`BATCH_SPARE_MAX`] bytes: 4 MiB per worker at the very most, and only after that many
/// connections pipelined at once (a batch of 16 responses of 1 KiB takes about 17 KiB).
pub struct BatchSpares(Vec<Vec<u8>>);

/// How many batch buffers a worker keeps.
pub const BATCH_SPARES: usize = 64;
/// The largest batch buffer a worker keeps: what one batch may hold at most (`coalesce` grows a
/// buffer no further).
pub const BATCH_SPARE_MAX: usize = 2 * COALESCE_BYTES;

impl Default for BatchSpares {
    fn default() -> Self {
        BatchSpares::new()
    }
}

impl BatchSpares {
    /// An empty pool with room for [`BATCH_SPARES`] (made at start-up: giving one back never
    /// allocates).
    pub fn new() -> BatchSpares {
        BatchSpares(Vec::with_capacity(BATCH_SPARES))
    }

    /// A buffer for a batch: a spare, or an empty `Vec` that allocates when first written.
    fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps `buf` (emptied) for another batch, or frees it if the pool is full or `buf` is
    /// larger than the pool keeps.
    fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= BATCH_SPARE_MAX && self.0.len() < BATCH_SPARES {
            buf.clear();
            self.0.push(buf);
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Pending output of one connection.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    own: Vec<u8>,
    /// Where `coalesce` copies a pipelined batch: from the worker's [`BatchSpares`] while the
    /// connection has output, given back by `shrink` when it goes idle. Only the front chunk
    /// may point into it.
    batch: Vec<u8>,
    /// Bytes of the front chunk already sent.
    sent: usize,
    /// Bytes queued and not yet sent.
    pending: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Number of queued chunks.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Lends the queue to `f` as a [`Turn`], which may queue bytes borrowed from a snapshot for
    /// `'s`. When `f` returns (or unwinds), whatever is still pending is held, so that the queue
    /// no longer depends on anything borrowed for `'s`.
    ///
    /// `'s` is a parameter of this function, so it outlives the whole call: every borrowed
    /// chunk stays valid until `hold` has replaced it.
    #[inline]
    pub fn turn<'s, R>(&mut self, f: impl FnOnce(&mut Turn<'_, 's>) -> R) -> R {
        /// Holds the queue's output when the turn ends, by return or by unwinding.
        struct EndOfTurn<'q>(&'q mut OutQueue);
        impl Drop for EndOfTurn<'_> {
            #[inline]
            fn drop(&mut self) {
                if !self.0.is_empty() {
                    self.0.hold();
                }
            }
        }
        let end = EndOfTurn(self);
        let mut turn = Turn { queue: &mut *end.0, borrowed: PhantomData };
        f(&mut turn)
    }

    /// Takes a reference on every borrowed chunk, so the queue no longer depends on the snapshot
    /// it was filled from.
    fn hold(&mut self) {
        for chunk in self.chunks.iter_mut() {
            if let Chunk::Borrowed(arc, start, end) = *chunk {
                // SAFETY: a borrowed chunk was queued through a `Turn<'_, 's>` whose `'s` outlives
                // the `turn` call this runs in (see `OutQueue::turn`), so the Arc is alive.
                *chunk = Chunk::Held(unsafe { Arc::clone(&*arc) }, start, end);
            }
        }
    }

    /// Queues bytes `start..end` of a file on disk.
    pub fn push_file(&mut self, disk: &Arc<DiskFile>, start: u64, end: u64) {
        debug_assert!(start <= end && end <= disk.len);
        if start < end {
            self.pending += (end - start) as usize;
            self.chunks.push_back(Chunk::File(disk.clone(), start, end));
        }
    }

    /// Appends bytes written by `write` into the connection's own buffer as one chunk.
    pub fn push_own(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.own.len();
        write(&mut self.own);
        let len = self.own.len() - start;
        if len == 0 {
            return;
        }
        self.pending += len;
        // Merge with a directly preceding own chunk so that consecutive small writes cost one iovec.
        if let Some(Chunk::Own { start: s, len: l }) = self.chunks.back_mut() {
            if *s + *l == start {
                *l += len;
                return;
            }
        }
        self.chunks.push_back(Chunk::Own { start, len });
    }

    /// Sends as much as the socket takes (and at most [`FILE_SHARE`] bytes of a file). The epoll
    /// transport calls [`OutQueue::coalesce`] first.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<Flush> {
        self.flush_with_share(fd, FILE_SHARE)
    }

    fn flush_with_share(&mut self, fd: BorrowedFd<'_>, file_share: u64) -> io::Result<Flush> {
        let mut progress = false;
        let mut file_budget = file_share;
        while !self.chunks.is_empty() {
            if self.front_is_file() {
                if file_budget == 0 {
                    return Ok(Flush::Yield);
                }
                match self.send_front_file(fd, file_budget)? {
                    Some(sent) => {
                        progress = true;
                        file_budget -= sent as u64;
                    }
                    None => return Ok(Flush::Blocked { progress }),
                }
                continue;
            }
            // Left uninitialised: filling all 64 entries first cost more than the rest of the
            // flush for a two-chunk response (callgrind).
            let mut iov = [const { MaybeUninit::<IoSlice<'_>>::uninit() }; MAX_IOV];
            let (n, file_follows) = self.gather(&mut iov);
            // SAFETY: `gather` initialised `iov[..n]`, and `MaybeUninit<T>` has `T`'s layout.
            let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), n) };
            match socket::send_vectored(fd, iov, file_follows) {
                Ok(sent) => {
                    progress = true;
                    self.advance(sent);
                }
                Err(e) if e.raw_os_error() == Some(crate::sys::EAGAIN) => {
                    return Ok(Flush::Blocked { progress })
                }
                Err(e) if e.raw_os_error() == Some(crate::sys::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Done)
    }

    /// Copies the chunks at the front of the queue into one chunk of the batch buffer (taken
    /// from `spares` if the queue has none), when at least [`COALESCE_CHUNKS`] of them come
    /// before any file and within [`COALESCE_BYTES`]: the kernel then copies one stretch instead
    /// of one per iovec. This is for pipelined batches, where each response is a chunk of its
    /// own; a single response (at most a head, a body and a tail) is left alone. Call it only
    /// when no send reads the queue (it may reallocate `batch`): the epoll transport calls it
    /// before its synchronous flush; the io_uring transport, whose sends complete a turn later,
    /// does not call it (`ring_conn::pump` says why).
    #[inline]
    pub fn coalesce(&mut self, spares: &mut BatchSpares) {
        if self.chunks.len() < COALESCE_CHUNKS {
            return;
        }
        self.coalesce_front(spares);
    }

    #[cold]
    #[inline(never)]
    fn coalesce_front(&mut self, spares: &mut BatchSpares) {
        // A batch chunk is only ever at the front (made there, and copied again whenever
        // coalescing starts from it), so without one at the front nothing reads `batch`: it is
        // emptied here rather than each time the queue empties (which is on every request's
        // path). With one, `batch` keeps what was sent until the queue empties, and a queue
        // drained over many partial sends is coalesced afresh at each: copies stop at twice
        // the share.
        if !matches!(self.chunks.front(), Some(Chunk::Batch { .. })) {
            self.batch.clear();
        }
        debug_assert!(self.chunks.iter().skip(1).all(|c| !matches!(c, Chunk::Batch { .. })));
        let cap = (2 * COALESCE_BYTES).saturating_sub(self.batch.len()).min(COALESCE_BYTES);
        // Worth it only if the first `COALESCE_CHUNKS` chunks fit: decided on those alone, so
        // that a queue left as it is is neither copied nor walked to its end in vain.
        let mut bytes = 0;
        for (i, chunk) in self.chunks.iter().take(COALESCE_CHUNKS).enumerate() {
            if matches!(chunk, Chunk::File(..)) {
                return;
            }
            bytes += chunk.len() - if i == 0 { self.sent } else { 0 };
            if bytes > cap {
                return;
            }
        }
        if self.batch.capacity() == 0 {
            self.batch = spares.take();
        }
        let OutQueue { chunks, own, batch, sent, pending } = self;
        let start = batch.len();
        // At most `cap` bytes are copied, and at most what is pending. `pending` may count bytes
        // that are not copied (a file, what lies past `cap`), so this may reserve more than the
        // copy takes, up to 32 KiB: never past `BATCH_SPARE_MAX`, which bounds the spares anyway.
        let most = (*pending).min(cap);
        if batch.capacity() - start < most {
            // Doubling, but never past what the spares keep (`start + most` is at most twice
            // `COALESCE_BYTES`, which is `BATCH_SPARE_MAX`): a buffer that grew past it would be
            // freed when given back, and the next batch would allocate again.
            let want = (2 * batch.capacity()).min(BATCH_SPARE_MAX).max(start + most);
            batch.reserve_exact(want - start);
        }
        // One pass from here: each chunk that fits is measured and copied.
        let mut count = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let skip = if i == 0 { *sent } else { 0 };
            let len = chunk.len() - skip;
            if matches!(chunk, Chunk::File(..)) || batch.len() - start + len > cap {
                break;
            }
            match *chunk {
                Chunk::Own { start, len } => batch.extend_from_slice(&own[start + skip..start + len]),
                Chunk::Batch { start, len } => batch.extend_from_within(start + skip..start + len),
                ref other => batch.extend_from_slice(&other.shared()[skip..]),
            }
            count += 1;
        }
        let bytes = batch.len() - start;
        debug_assert!(count >= COALESCE_CHUNKS);
        chunks.drain(..count);
        chunks.push_front(Chunk::Batch { start, len: bytes });
        *sent = 0;
    }

    /// Whether the next bytes to send are a file's (sent with `sendfile(2)`, not `sendmsg`).
    #[inline]
    pub fn front_is_file(&self) -> bool {
        matches!(self.chunks.front(), Some(Chunk::File(..)))
    }

    /// Sends up to `budget` bytes of the file chunk at the front with `sendfile(2)`; `None`: the
    /// socket is full (`EAGAIN`). The queue advances by what was sent.
    pub fn send_front_file(&mut self, fd: BorrowedFd<'_>, budget: u64) -> io::Result<Option<usize>> {
        let Some(Chunk::File(disk, start, end)) = self.chunks.front() else {
            return Ok(Some(0));
        };
        let at = start + self.sent as u64;
        let count = (end - at).min(budget) as usize;
        let mut offset = disk.offset + at;
        loop {
            return match file::sendfile(fd, disk.fd.as_fd(), &mut offset, count) {
                // The file is shorter than when it was opened: the promised Content-Length
                // cannot be kept, and only closing tells the client the body is truncated.
                Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank")),
                Ok(sent) => {
                    self.advance(sent);
                    Ok(Some(sent))
                }
                Err(e) if e.raw_os_error() == Some(crate::sys::EAGAIN) => Ok(None),
                Err(e) if e.raw_os_error() == Some(crate::sys::EINTR) => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Points `iov` at the queued bytes up to the first file chunk (at most [`MAX_IOV`] chunks)
    /// and returns how many entries it filled, and whether a file chunk follows them (the
    /// send should carry `MSG_MORE`). Nothing is consumed: [`OutQueue::advance`] does that once
    /// the kernel says how much it took.
    // Always inlined: out of line it cost the epoll flush ~45 instructions a request (callgrind).
    #[inline(always)]
    pub fn gather<'a>(&'a self, iov: &mut [MaybeUninit<IoSlice<'a>>; MAX_IOV]) -> (usize, bool) {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
            if matches!(chunk, Chunk::File(..)) {
                return (n, true); // sent with sendfile once the bytes before it are out
            }
            let bytes = self.bytes(chunk);
            iov[i].write(IoSlice::new(if i == 0 { &bytes[self.sent..] } else { bytes }));
            n += 1;
        }
        (n, false)
    }

    /// A copy of every byte queued and not yet sent, files read with `pread(2)`: what the
    /// client would receive. For tests and debugging; the send path copies only in `coalesce`.
    pub fn contents(&self) -> io::Result<Vec<u8>> {
        let mut all = Vec::with_capacity(self.pending);
        for (i, chunk) in self.chunks.iter().enumerate() {
            let skip = if i == 0 { self.sent } else { 0 };
            match chunk {
                Chunk::File(disk, start, end) => {
                    let at = start + skip as u64;
                    let mut buf = vec![0; (end - at) as usize];
                    file::pread_exact(disk.fd.as_fd(), &mut buf, disk.offset + at)?;
                    all.extend_from_slice(&buf);
                }
                other => all.extend_from_slice(&self.bytes(other)[skip..]),
            }
        }
        Ok(all)
    }

    /// Appends the last `len` bytes queued to `to`; `false` (and `to` unchanged, nothing
    /// allocated) if a file chunk other than a stretch of atomserve's own memfd is among them,
    /// or its read fails. For capturing a response just queued (`serve::rendered`): a memfd
    /// stretch is immutable and in memory, so its bytes are read with `pread(2)`, which does not
    /// wait for a disk (short of swap) and cannot see a source file rewritten since the load.
    pub fn copy_last(&self, len: usize, to: &mut Vec<u8>) -> bool {
        debug_assert!(len <= self.pending);
        let start = to.len();
        // The chunks from the back that hold the last `len` bytes, and how many they hold.
        let (mut parts, mut covered) = (0, 0);
        for chunk in self.chunks.iter().rev() {
            if covered >= len {
                break;
            }
            if let Chunk::File(disk, ..) = chunk {
                if disk.backing != Backing::Memfd {
                    return false;
                }
            }
            covered += chunk.len();
            parts += 1;
        }
        let first = self.chunks.len() - parts;
        let mut skip = covered - len; // the front of the first of them belongs to earlier output
        to.reserve(len); // only now: a refused capture costs no allocation
        for chunk in self.chunks.range(first..) {
            let n = chunk.len();
            let from = skip.min(n);
            match chunk {
                Chunk::File(disk, s, _) => {
                    let at = to.len();
                    to.resize(at + n - from, 0);
                    if file::pread_exact(disk.fd.as_fd(), &mut to[at..], disk.offset + s + from as u64)
                        .is_err()
                    {
                        to.truncate(start);
                        return false;
                    }
                }
                other => to.extend_from_slice(&self.bytes(other)[from..]),
            }
            skip = skip.saturating_sub(n);
        }
        debug_assert_eq!(to.len() - start, len);
        true
    }

    /// Drops everything queued (the connection is closing).
    pub fn clear(&mut self) {
        // One by one from the back: for the two or three chunks of a response, cheaper than
        // `VecDeque::clear`'s drop of both halves of its ring (callgrind).
        while self.chunks.pop_back().is_some() {}
        self.own.clear();
        self.sent = 0;
        self.pending = 0;
    }

    /// Releases the buffers' memory: an idle keep-alive connection should cost next to nothing.
    /// The batch buffer goes back to `spares` for the next pipelined batch, of this connection or
    /// another (`None` from a transport that never coalesces, the ring's: there is none).
    // Inlined, with the release apart: most connections go idle holding nothing to release, and
    // out of line the check cost ~20 instructions a keep-alive request (callgrind).
    #[inline(always)]
    pub fn shrink(&mut self, spares: Option<&mut BatchSpares>) {
        debug_assert!(self.is_empty());
        // `|`, not `||`: three loads and one branch.
        if (self.own.capacity() > 4096) | (self.batch.capacity() > 0) | (self.chunks.capacity() > 64) {
            self.release(spares);
        }
    }

    #[cold]
    #[inline(never)]
    fn release(&mut self, spares: Option<&mut BatchSpares>) {
        if self.own.capacity() > 4096 {
            self.own = Vec::new();
        }
        if self.batch.capacity() > 0 {
            let batch = std::mem::take(&mut self.batch);
            debug_assert!(spares.is_some(), "only a transport that coalesces has a batch buffer");
            if let Some(spares) = spares {
                spares.give(batch);
            }
        }
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
    }

    // Always inlined: `gather` calls it once per chunk, and out of line (as the inliner chose
    // in the ring's `pump`) it was 4.1 ns a pipelined request in `perf`.
    #[inline(always)]
    fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        // Shared bytes first: a rendered response is one such chunk.
        match chunk {
            Chunk::Borrowed(..) | Chunk::Held(..) | Chunk::File(..) => chunk.shared(),
            Chunk::Own { start, len } => &self.own[*start..*start + *len],
            Chunk::Batch { start, len } => &self.batch[*start..*start + *len],
        }
    }

    /// Drops the first `n` bytes queued: the kernel sent them.
    #[inline(always)]
    pub fn advance(&mut self, mut n: usize) {
        if n == self.pending {
            // Everything went (the usual case): drop the chunks at once, not one by one.
            self.clear();
            return;
        }
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let len = front.len();
            let left = len - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            self.own.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Backing;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    fn disk_file(bytes: &[u8]) -> Arc<DiskFile> {
        let path =
            std::env::temp_dir().join(format!("atomserve-outq-{}-{}", std::process::id(), bytes.len()));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        Arc::new(DiskFile {
            fd: Arc::new(OwnedFd::from(file)),
            offset: 0,
            len: bytes.len() as u64,
            backing: Backing::Disk,
        })
    }

    /// A pipelined batch (a chunk per response, some of them the connection's own bytes, the
    /// front one partly sent) becomes one chunk with the same bytes; what follows a file, or
    /// passes `COALESCE_BYTES`, stays as it was; fewer than `COALESCE_CHUNKS` are left alone.
    #[test]
    fn coalesce_copies_a_batch_into_one_chunk_with_the_same_bytes() {
        let response: Arc<[u8]> = (0..1000u32).map(|i| (i % 241) as u8).collect::<Vec<_>>().into();
        let mut q = OutQueue::default();
        q.turn(|out| {
            for i in 0..16u8 {
                out.push_shared(&response);
                out.push_own(|b| b.extend_from_slice(&[b'a' + i; 7]));
            }
        });
        q.advance(5);
        let before = q.contents().unwrap();
        q.coalesce(&mut BatchSpares::new());
        assert_eq!(q.chunks(), 1, "one chunk for the whole batch");
        assert_eq!((q.contents().unwrap(), q.pending()), (before.clone(), before.len()));
        let (tx, mut rx) = UnixStream::pair().unwrap();
        assert_eq!(q.flush(tx.as_fd()).unwrap(), Flush::Done);
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert!(got == before, "the batch as queued");

        // Up to a file: what precedes it is copied, the file and what follows it stay.
        let disk = disk_file(&[7u8; 100]);
        let mut q = OutQueue::default();
        q.turn(|out| {
            for _ in 0..4 {
                out.push_shared(&response);
            }
            out.push_file(&disk, 0, 100);
            out.push_shared(&response);
        });
        let before = q.contents().unwrap();
        q.coalesce(&mut BatchSpares::new());
        assert_eq!((q.chunks(), q.contents().unwrap()), (3, before));

        // Past `COALESCE_BYTES`: only the chunks within it.
        let big: Arc<[u8]> = vec![1u8; COALESCE_BYTES / 2].into();
        let mut q = OutQueue::default();
        q.turn(|out| (0..5).for_each(|_| out.push_shared(&big)));
        q.coalesce(&mut BatchSpares::new());
        assert_eq!(q.chunks(), 5, "two halves fill the share: fewer than COALESCE_CHUNKS, left alone");
        let mut q = OutQueue::default();
        q.turn(|out| (0..3).for_each(|_| out.push_shared(&response)));
        q.coalesce(&mut BatchSpares::new());
        assert_eq!(q.chunks(), 3, "one response's head, body and tail are left alone");
    }

    /// A queue drained over many partial sends keeps what it sent in `batch` until it empties, and
    /// each flush may coalesce its front again: coalescing stops at twice `COALESCE_BYTES`.
    #[test]
    fn coalescing_over_many_partial_sends_stays_bounded() {
        let response: Arc<[u8]> = vec![3u8; 1000].into();
        let mut q = OutQueue::default();
        for _ in 0..100 {
            q.turn(|out| (0..8).for_each(|_| out.push_shared(&response)));
            q.coalesce(&mut BatchSpares::new());
            q.advance(q.pending() - 10); // all but the last few bytes sent
        }
        assert!(q.batch.len() <= 2 * COALESCE_BYTES, "batch holds {} bytes", q.batch.len());
        // Grown no further than the spares keep, or giving it back would free it.
        assert!(q.batch.capacity() <= BATCH_SPARE_MAX, "batch capacity {}", q.batch.capacity());
        assert_eq!(q.contents().unwrap().len(), q.pending());
    }

    /// A batch is copied into a buffer lent by the worker's spares, which goes back when the
    /// connection idles, and is lent again to the next batch (of any connection) without an
    /// allocation; the connection's own buffer stays small. The pool keeps at most
    /// `BATCH_SPARES` buffers of at most `BATCH_SPARE_MAX` bytes.
    #[test]
    fn batch_buffers_go_back_to_the_spares_when_a_connection_idles() {
        let response: Arc<[u8]> = vec![5u8; 1000].into();
        let mut spares = BatchSpares::new();
        let (mut a, mut b) = (OutQueue::default(), OutQueue::default());
        a.turn(|out| (0..16).for_each(|_| out.push_shared(&response)));
        a.coalesce(&mut spares);
        assert_eq!((a.chunks(), a.own.capacity()), (1, 0), "copied into the batch buffer, not `own`");
        let (lent, capacity) = (a.batch.as_ptr(), a.batch.capacity());
        a.advance(a.pending());
        a.shrink(Some(&mut spares));
        assert_eq!((spares.len(), a.batch.capacity()), (1, 0), "given back when idle");
        b.turn(|out| (0..16).for_each(|_| out.push_shared(&response)));
        b.coalesce(&mut spares);
        assert_eq!((b.batch.as_ptr(), b.batch.capacity()), (lent, capacity), "the same buffer, lent again");
        assert_eq!(spares.len(), 0);
        assert_eq!(b.contents().unwrap(), vec![5u8; 16_000]);

        for _ in 0..BATCH_SPARES + 1 {
            spares.give(Vec::with_capacity(100));
        }
        spares.give(Vec::with_capacity(BATCH_SPARE_MAX + 1));
        assert_eq!(spares.len(), BATCH_SPARES);
        spares.take();
        spares.give(Vec::with_capacity(BATCH_SPARE_MAX + 1));
        assert_eq!(spares.len(), BATCH_SPARES - 1, "a buffer larger than the pool keeps is freed");
    }

    /// Random pushes (own bytes, shared bytes), coalescing, partial sends and idle spells,
    /// checked against a plain byte queue: what the client would receive never changes by how it is held.
    #[test]
    fn queue_operations_keep_the_bytes_in_order() {
        let shared: Vec<Arc<[u8]>> =
            (0..4u8).map(|k| (0..(700 * usize::from(k) + 50)).map(|i| (i as u8) ^ k).collect()).collect();
        let file_bytes: Vec<u8> = (0..3001u32).map(|i| (i % 239) as u8).collect();
        let file = disk_file(&file_bytes);
        let mut q = OutQueue::default();
        // One pool for the run: batch buffers go back to it whenever the queue empties, and
        // come out of it (with what they held before) for the next batch.
        let mut spares = BatchSpares::new();
        let mut model = std::collections::VecDeque::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..30_000 {
            match next(10) {
                0..=2 => {
                    let len = next(400) as usize + 1;
                    let byte = (step % 251) as u8;
                    q.push_own(|b| b.extend(std::iter::repeat_n(byte, len)));
                    model.extend(std::iter::repeat_n(byte, len));
                }
                3..=4 => {
                    // Borrowed within the turn, coalesced there at times (as a send made in the
                    // turn does), held after it.
                    let (bytes, now) = (&shared[next(4) as usize], next(2) == 0);
                    q.turn(|out| {
                        out.push_shared(bytes);
                        if now {
                            out.coalesce(&mut spares);
                        }
                    });
                    model.extend(bytes.iter());
                }
                5 => q.coalesce(&mut spares),
                7 => {
                    // Everything sent, then a batch borrowed in a turn, partly sent, coalesced:
                    // the front chunk is a borrowed one partly sent.
                    q.advance(q.pending());
                    model.clear();
                    q.shrink(Some(&mut spares)); // idle: the batch buffer goes back
                    let batch: Vec<&Arc<[u8]>> =
                        (0..4 + next(4)).map(|_| &shared[next(4) as usize]).collect();
                    let sent = next(batch[0].len() as u64) as usize;
                    q.turn(|out| {
                        batch.iter().for_each(|bytes| out.push_shared(bytes));
                        out.advance(sent);
                        out.coalesce(&mut spares);
                    });
                    batch.iter().for_each(|bytes| model.extend(bytes.iter()));
                    model.drain(..sent);
                }
                6 => {
                    let start = next(3000);
                    q.push_file(&file, start, 3001);
                    model.extend(&file_bytes[start as usize..]);
                }
                _ => {
                    let n = next(q.pending() as u64 + 1) as usize;
                    q.advance(n);
                    model.drain(..n);
                }
            }
            assert_eq!(q.pending(), model.len(), "step {step}");
            if step % 97 == 0 {
                assert!(q.contents().unwrap() == model.iter().copied().collect::<Vec<_>>(), "step {step}");
            }
        }
    }

    /// `copy_last` copies the last bytes queued, a memfd stretch's read back at its offset, and
    /// refuses (leaving `to` as it was) when they include a file that is not atomserve's memfd.
    #[test]
    fn copy_last_reads_memfd_stretches_and_refuses_other_files() {
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let packed = crate::cache::pack::pack(&[&[9u8; 5000][..], &body]).unwrap();
        let stretch = &packed[1];
        assert!(stretch.backing == Backing::Memfd && stretch.offset > 0, "the second body, past the first");
        let mut q = OutQueue::default();
        q.turn(|out| {
            out.push_own(|b| b.extend_from_slice(b"earlier response;HEAD "));
            out.push_file(stretch, 10, body.len() as u64);
            out.push_own(|b| b.extend_from_slice(b" tail"));
        });
        q.advance(3); // the front chunk partly sent
        let len = 5 + (body.len() - 10) + 5;
        let mut to = b"kept".to_vec();
        assert!(q.copy_last(len, &mut to));
        assert_eq!(&to[..4], b"kept");
        assert_eq!(&to[4..9], b"HEAD ");
        assert!(to[9..9 + body.len() - 10] == body[10..], "the stretch's bytes, from its offset");
        assert_eq!(&to[to.len() - 5..], b" tail");
        // A file sent from its own descriptor (disk, or a source file's page cache) is refused.
        let disk = disk_file(&body);
        let mut q = OutQueue::default();
        q.turn(|out| {
            out.push_own(|b| b.extend_from_slice(b"HEAD "));
            out.push_file(&disk, 0, body.len() as u64);
        });
        let mut to = b"kept".to_vec();
        assert!(!q.copy_last(5 + body.len(), &mut to));
        assert_eq!((to.as_slice(), to.capacity()), (&b"kept"[..], 4), "unchanged, nothing allocated");
    }

    /// A file chunk sends at most its share per flush and says `Yield` (not `Blocked`: the
    /// socket still has room), then resumes exactly where it stopped, after the head.
    #[test]
    fn a_file_is_sent_a_share_at_a_time_and_resumes_in_place() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let disk = disk_file(&body);
        let (tx, mut rx) = UnixStream::pair().unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut q = OutQueue::default();
        q.push_own(|b| b.extend_from_slice(b"HEAD"));
        q.push_file(&disk, 100, 250_100);
        q.push_own(|b| b.extend_from_slice(b"TAIL"));
        assert_eq!(q.pending(), 4 + 250_000 + 4);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut yields = 0;
        loop {
            match q.flush_with_share(tx.as_fd(), 16 * 1024).unwrap() {
                Flush::Done => break,
                Flush::Yield => yields += 1,
                Flush::Blocked { .. } => {}
            }
            let n = rx.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        drop(tx);
        rx.read_to_end(&mut got).unwrap();
        assert!(yields >= 250_000 / (16 * 1024), "{yields} yields");
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..got.len() - 4] == body[100..250_100]);
        assert_eq!(&got[got.len() - 4..], b"TAIL");
        assert_eq!(q.pending(), 0);
    }

    /// The contract `Turn` enforces: after the turn, nothing in the queue borrows — it holds
    /// its own reference to each snapshot buffer still pending, and the bytes are unchanged.
    #[test]
    fn output_pending_after_a_turn_holds_its_own_reference() {
        let body: Arc<[u8]> = Arc::from(&b"hello, world"[..]);
        let mut q = OutQueue::default();
        q.turn(|out| {
            out.push_shared(&body);
            out.push_own(|b| b.extend_from_slice(b"!"));
            out.push_shared_range(&body, 0, 5);
            assert_eq!(Arc::strong_count(&body), 1, "borrowed during the turn: no count taken");
        });
        assert_eq!(Arc::strong_count(&body), 3, "held once the turn is over");
        assert_eq!(q.contents().unwrap(), b"hello, world!hello");
        drop(body);
        assert_eq!(q.contents().unwrap(), b"hello, world!hello", "the queue keeps the bytes alive");
        q.clear();
        // An empty queue is left as it is: nothing to hold.
        let body: Arc<[u8]> = Arc::from(&b"x"[..]);
        q.turn(|out| {
            out.push_shared(&body);
            let (tx, _rx) = UnixStream::pair().unwrap();
            assert_eq!(out.flush(tx.as_fd()).unwrap(), Flush::Done);
        });
        assert_eq!(Arc::strong_count(&body), 1);
    }

    /// The file shrank after it was opened: sendfile returns 0 before the promised end, which
    /// is an error (the connection must close), never a busy loop.
    #[test]
    fn a_file_shorter_than_promised_is_an_error() {
        let disk = disk_file(b"short");
        let lying = Arc::new(DiskFile { fd: disk.fd.clone(), offset: 0, len: 1000, backing: Backing::Disk });
        let (tx, _rx) = UnixStream::pair().unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut q = OutQueue::default();
        q.push_file(&lying, 0, 1000);
        assert_eq!(q.flush(tx.as_fd()).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
