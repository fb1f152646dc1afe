//! A connection's input kept between reads: an incomplete request head, or pipelined requests
//! not yet answered because the output high-water mark was reached.

/// Emptied input buffers a worker keeps for its connections' next incomplete request, so that
/// a request split across two reads costs no allocation (the io_uring transport splits them
/// often: its receives share large buffers, and one ends where the buffer does). A new spare is
/// allocated only when more connections hold a split request at once than ever before.
#[derive(Default)]
pub struct Spares(Vec<Vec<u8>>);

impl Spares {
    /// A pool with room for [`SPARES`] and `ready` buffers made up front (start-up, not the first
    /// split requests, pays for them).
    pub fn with_ready(ready: usize) -> Spares {
        let mut pool = Vec::with_capacity(SPARES);
        pool.extend((0..ready.min(SPARES)).map(|_| Vec::with_capacity(SPARE_MIN_CAPACITY)));
        Spares(pool)
    }
}

/// The most spares a worker keeps, and the largest one it keeps (a 64 KiB chunked body's
/// buffer goes back to the allocator).
const SPARES: usize = 256;
const SPARE_MAX_CAPACITY: usize = 16 * 1024;
const SPARE_MIN_CAPACITY: usize = 4096;

/// Input kept between reads: an incomplete request, or pipelined requests not yet answered
/// because the output high-water mark was reached. Consumed from the front by moving `start`,
/// so answering a long pipeline in batches does not copy the rest of it each time; compacted
/// only before new bytes are appended. Its memory is released whenever it empties, so an idle
/// connection holds no input buffer.
#[derive(Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    /// Bytes `spare` added that `commit` has not settled yet.
    spare_len: usize,
}

impl InBuf {
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Bytes kept and not yet consumed.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            self.release();
        }
    }

    pub fn release(&mut self) {
        *self = InBuf::default();
    }

    /// As [`InBuf::consume`], but storage that empties goes to `pool` for another connection
    /// instead of back to the allocator.
    pub fn consume_into(&mut self, n: usize, pool: &mut Spares) {
        self.start += n;
        if self.is_empty() {
            self.release_into(pool);
        }
    }

    /// As [`InBuf::release`], giving the storage to `pool`.
    pub fn release_into(&mut self, pool: &mut Spares) {
        let mut buf = std::mem::take(&mut self.buf);
        *self = InBuf::default();
        if buf.capacity() > 0 && buf.capacity() <= SPARE_MAX_CAPACITY && pool.0.len() < SPARES {
            buf.clear();
            pool.0.push(buf);
        }
    }

    /// As [`InBuf::keep`], taking storage from `pool` when this buffer has none.
    pub fn keep_from(&mut self, bytes: &[u8], pool: &mut Spares) {
        if !bytes.is_empty() && self.buf.capacity() == 0 {
            // A fresh one is made at a size most request heads fit in, so that a spare taken
            // later does not have to grow (which would be an allocation after all).
            self.buf = pool.0.pop().unwrap_or_else(|| Vec::with_capacity(SPARE_MIN_CAPACITY));
            self.start = 0;
        }
        self.keep(bytes);
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends `bytes` (an incomplete tail from the scratch buffer).
    pub fn keep(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.compact();
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Room for `n` more bytes at the end; follow with `commit(bytes actually written)`.
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        self.compact();
        let len = self.buf.len();
        self.buf.resize(len + n, 0);
        self.spare_len = n;
        &mut self.buf[len..]
    }

    pub fn commit(&mut self, written: usize) {
        let len = self.buf.len();
        // `spare` grew the buffer by the room it offered; keep only what was written.
        self.buf.truncate(len - self.spare_len + written);
        self.spare_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_from_the_front_does_not_copy_and_emptying_releases_the_memory() {
        let mut b = InBuf::default();
        b.keep(b"GET / HTTP/1.1\r\n\r\nGET /a");
        let ptr = b.pending().as_ptr();
        b.consume(18);
        assert_eq!(b.pending(), b"GET /a");
        assert_eq!(b.pending().as_ptr(), ptr.wrapping_add(18), "consumed in place");
        b.consume(6);
        assert!(b.is_empty());
        assert_eq!(b.buf.capacity(), 0, "an idle connection holds no input buffer");
    }

    #[test]
    fn spare_then_commit_keeps_only_what_was_written_after_compacting() {
        let mut b = InBuf::default();
        b.keep(b"xxGET /");
        b.consume(2);
        let spare = b.spare(4096);
        assert_eq!(spare.len(), 4096);
        spare[..5].copy_from_slice(b" HTTP");
        b.commit(5);
        assert_eq!(b.pending(), b"GET / HTTP");
        assert_eq!(b.start, 0, "compacted before appending");
        b.spare(100);
        b.commit(0);
        assert_eq!(b.pending(), b"GET / HTTP", "a failed read appends nothing");
    }

    #[test]
    fn keep_appends_after_what_is_pending() {
        let mut b = InBuf::default();
        b.keep(b"GE");
        b.keep(b"");
        b.keep(b"T /");
        assert_eq!(b.pending(), b"GET /");
        b.release();
        assert!(b.is_empty());
    }

    #[test]
    fn storage_emptied_into_the_spares_is_reused_by_the_next_split_request() {
        let mut spares = Spares::default();
        let mut a = InBuf::default();
        a.keep_from(b"GET / HT", &mut spares);
        let storage = a.pending().as_ptr();
        a.consume_into(8, &mut spares);
        assert!(a.is_empty() && a.buf.capacity() == 0, "an emptied buffer holds nothing");
        assert_eq!(spares.0.len(), 1);
        let mut b = InBuf::default();
        b.keep_from(b"GET /a", &mut spares);
        assert_eq!(b.pending().as_ptr(), storage, "the spare's storage, not a new allocation");
        assert!(spares.0.is_empty());
        b.release_into(&mut spares);
        assert_eq!(spares.0.len(), 1);
        let mut big = InBuf::default();
        big.keep(&vec![b'x'; SPARE_MAX_CAPACITY + 1]);
        big.release_into(&mut spares);
        assert_eq!(spares.0.len(), 1, "a large buffer goes back to the allocator");
    }
}
