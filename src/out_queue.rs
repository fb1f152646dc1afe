//! A connection's pending output: a queue of byte ranges sent with one `sendmsg(2)` per flush.
//!
//! Bodies and response heads are *not* copied: a chunk may point straight into the snapshot's
//! memory. Only the few dozen bytes that change per response (the tail: `Date`, `Connection`)
//! and generated responses live in the connection's own buffer. A partial send keeps its place
//! and resumes where the kernel stopped.
//!
//! A borrowed chunk is only valid until the worker's next quiescent point (see
//! `cache::swap`): after that, a reload may free the snapshot it points into. So when output is
//! still pending at the end of a worker's turn, [`OutQueue::hold`] turns borrowed chunks into
//! held ones by cloning their `Arc<[u8]>` — a reference count taken only on partial writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::sys::socket;

/// The most buffers one `sendmsg` takes; more wait for the next call. (Linux allows 1024.)
const MAX_IOV: usize = 64;

enum Chunk {
    /// Bytes `start..end` of an `Arc<[u8]>` inside the snapshot the worker is reading this turn,
    /// borrowed without touching its count; valid until the worker's next quiescent point.
    Borrowed(*const Arc<[u8]>, usize, usize),
    /// The same bytes, kept alive by this queue's own reference.
    Held(Arc<[u8]>, usize, usize),
    /// `own[start..start + len]`.
    Own { start: usize, len: usize },
}

/// The result of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was sent.
    Done,
    /// The socket buffer is full: wait for `EPOLLOUT`. Some bytes may have been sent.
    Blocked { progress: bool },
}

/// Pending output of one connection.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    own: Vec<u8>,
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

    /// Queues bytes that live in a snapshot, without cloning the `Arc`.
    ///
    /// # Safety
    /// `bytes` must stay alive until [`OutQueue::hold`] is called or the queue is emptied or
    /// dropped. The worker guarantees it: snapshots are freed only after its quiescent point, and it
    /// calls `hold` on every connection with pending output before reaching one.
    pub unsafe fn push_shared(&mut self, bytes: &Arc<[u8]>) {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.push_shared_range(bytes, 0, bytes.len()) }
    }

    /// Queues bytes `start..end` of a snapshot buffer (a byte range), without cloning the `Arc`.
    ///
    /// # Safety
    /// As [`OutQueue::push_shared`]; also `start <= end <= bytes.len()`.
    pub unsafe fn push_shared_range(&mut self, bytes: &Arc<[u8]>, start: usize, end: usize) {
        debug_assert!(start <= end && end <= bytes.len());
        if start < end {
            self.pending += end - start;
            self.chunks.push_back(Chunk::Borrowed(bytes, start, end));
        }
    }

    /// Takes a reference on every borrowed chunk, so the queue no longer depends on the snapshot
    /// it was filled from. Called only when output stays pending after a turn (a partial write).
    pub fn hold(&mut self) {
        for chunk in self.chunks.iter_mut() {
            if let Chunk::Borrowed(arc, start, end) = *chunk {
                // SAFETY: a borrowed chunk is valid until this call (push_shared's contract).
                *chunk = Chunk::Held(unsafe { Arc::clone(&*arc) }, start, end);
            }
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

    /// Sends as much as the socket takes.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<Flush> {
        let mut progress = false;
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let bytes = self.bytes(chunk);
                iov[i] = IoSlice::new(if i == 0 { &bytes[self.sent..] } else { bytes });
                n += 1;
            }
            match socket::send_vectored(fd, &iov[..n]) {
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

    /// Drops everything queued (the connection is closing).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.own.clear();
        self.sent = 0;
        self.pending = 0;
    }

    /// Releases the buffers' memory: an idle keep-alive connection should cost next to nothing.
    pub fn shrink(&mut self) {
        debug_assert!(self.is_empty());
        if self.own.capacity() > 4096 {
            self.own = Vec::new();
        }
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
    }

    fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        match chunk {
            // SAFETY: push_shared's contract keeps a borrowed Arc alive while it is queued.
            Chunk::Borrowed(arc, start, end) => unsafe { &(&**arc)[*start..*end] },
            Chunk::Held(bytes, start, end) => &bytes[*start..*end],
            Chunk::Own { start, len } => &self.own[*start..*start + *len],
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let len = self.bytes(front).len();
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

// SAFETY: the raw pointers in `Chunk::Borrowed` point into an immutable snapshot that is itself
// Send + Sync; a queue moves between threads only with its connection, inside its worker.
unsafe impl Send for OutQueue {}
