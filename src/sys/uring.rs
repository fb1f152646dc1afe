//! `io_uring(7)`: a pair of rings shared with the kernel — submissions in, completions out —
//! through which a worker asks for socket reads and writes without one syscall each.
//!
//! The worker fills *submission queue entries* (SQEs: "receive on fd 7", "send these iovecs on
//! fd 9", each tagged with a 64-bit token) in memory it shares with the kernel, then makes one
//! `io_uring_enter(2)` per loop turn that submits them all and waits for *completion queue
//! entries* (CQEs: the token, a result like a syscall's return value, flags). Built on the
//! `io-uring` crate (tokio-rs), which maps the rings and encodes the SQEs; this module is the
//! only user of it, as the rest of `sys` is of `libc`.
//!
//! What the serving code uses, and why:
//! - `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`: one thread (the worker) owns the
//!   ring, and the kernel finishes its operations' work only when that thread enters the ring to
//!   wait — no interrupting the worker mid-turn, completions arrive in batches.
//! - Multishot receive (`IORING_RECV_MULTISHOT`) into a *provided-buffer ring*
//!   ([`Buffers`]): one SQE per connection, armed once, produces a CQE
//!   for every arrival with `IORING_CQE_F_MORE` set while it stays armed. The kernel picks the
//!   buffer at arrival time from a ring the worker refills, so an idle connection holds no
//!   buffer; consumed incrementally where the kernel can, one buffer holds many receives. When
//!   the ring runs dry the receive ends with `ENOBUFS` and is armed again.
//! - `IORING_OP_SENDMSG` from a [`SendMsg`] (a `msghdr` and its iovecs, kept by the caller until
//!   the CQE arrives): the kernel may read the headers and the iovecs as late as the send runs.
//!   A message of one buffer (a rendered response, a pipelined batch copied together) goes as
//!   `IORING_OP_SEND` instead: a pointer and a length, no `msghdr` for the kernel to copy in.
//! - `IORING_OP_READ` on the worker's eventfd: the bell, completed when the acceptor rings.
//! - `IORING_OP_POLL_ADD` (`POLLOUT`): readiness for the one thing done with a plain syscall, a
//!   `sendfile(2)` of a large body that filled the socket buffer.
//! - `IORING_OP_ASYNC_CANCEL` by fd: ends a closing connection's armed receive. A socket stays
//!   open while an operation holds it, even after `close(2)` — cancel first, then close.
//! - `IORING_FEAT_NODROP`: when the completion ring is full the kernel keeps the overflow and
//!   hands it over at the next enter, instead of dropping completions (required at start).

use std::cell::Cell;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use crate::sync::os_atomic::{AtomicU16, Ordering};

/// The operations the serving code submits: a kernel without one of them gets epoll.
const NEEDED: &[(u8, &str)] = &[
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Read::CODE, "READ"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
];

/// The most iovecs one [`SendMsg`] carries.
pub const MAX_IOV: usize = 64;

/// One completion: the token its submission carried, its result (bytes, or `-errno`), flags.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub token: u64,
    pub result: i32,
    flags: u32,
}

impl Completion {
    /// The provided buffer the kernel filled, if any; give it back once read.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// A multishot operation is still armed and will complete again.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// A `msghdr` and its iovecs, at a stable address (boxed) for as long as a send is in flight.
pub struct SendMsg {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
}

impl SendMsg {
    pub fn new() -> Box<SendMsg> {
        // SAFETY: msghdr and iovec are plain C structs for which all-zero bytes are valid.
        Box::new(unsafe { std::mem::zeroed() })
    }

    /// Points the message at `bufs` (at most [`MAX_IOV`]; more are left for the next send).
    pub fn set(&mut self, bufs: &[IoSlice<'_>]) {
        let n = bufs.len().min(MAX_IOV);
        for (slot, buf) in self.iov.iter_mut().zip(&bufs[..n]) {
            *slot = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        }
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = n;
    }
}

/// A worker's ring, with its provided-buffer group for receives.
pub struct Ring {
    // Field order is drop order: the ring (and with it the buffer registration) goes before the
    // buffer memory it points into.
    ring: IoUring,
    bufs: Buffers,
    /// Sends queued since the last enter (see [`Ring::submit_and_wait`]).
    sends: u32,
}

/// How long a batching wait holds out for more completions once one has arrived.
pub const MIN_WAIT: Duration = Duration::from_micros(20);

/// The buffer group id of a ring's provided buffers (one group per ring).
const GROUP: u16 = 0;

impl Ring {
    /// A ring of `entries` submissions (completions: four times as many), with `buffer_memory`
    /// bytes of provided buffers for receives (see [`Buffers`] for how they are cut).
    pub fn new(entries: u32, buffer_memory: usize) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            // The kernel flags deferred work in the SQ ring (`IORING_SQ_TASKRUN`), so that an
            // enter that does not wait still carries GETEVENTS and runs it (see `submit_and_wait`).
            .setup_taskrun_flag()
            .setup_submit_all()
            .setup_cqsize(entries * 4)
            .build(entries)?;
        if !ring.params().is_feature_nodrop() || !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks IORING_FEAT_NODROP or EXT_ARG",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if let Some((_, name)) = NEEDED.iter().find(|(code, _)| !probe.is_supported(*code)) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, format!("kernel lacks IORING_OP_{name}")));
        }
        // Incremental consumption first (6.12); a kernel that refuses the flag gets small
        // buffers, one per receive.
        let bufs = match Buffers::register(&ring, buffer_memory, true) {
            Ok(bufs) => bufs,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Buffers::register(&ring, buffer_memory, false)?
            }
            Err(e) => return Err(e),
        };
        Ok(Ring { ring, bufs, sends: 0 })
    }

    /// Whether this kernel and its policy let a process use io_uring with everything atomserve
    /// needs: a small ring is set up and dropped. The error says why not (`EPERM`: disabled by
    /// `kernel.io_uring_disabled` or a seccomp profile; `ENOSYS`: no io_uring; `Unsupported`: an
    /// operation or feature is missing).
    pub fn probe() -> io::Result<()> {
        Ring::new(8, 64 * 1024).map(drop)
    }

    /// The submission side and the buffers, borrowed apart: a connection reads a completion's
    /// buffer while it queues its answer.
    pub fn parts(&mut self) -> (Submissions<'_>, &Buffers) {
        (Submissions { ring: &mut self.ring, sends: &mut self.sends }, &self.bufs)
    }

    /// Submits everything queued and waits — one `io_uring_enter(2)` — until a completion is
    /// ready, or `timeout` passes (`None`: no limit; zero: do not wait).
    ///
    /// With `batch > 0` (a busy worker: its last turn brought that many inputs) and a kernel
    /// with `IORING_FEAT_MIN_TIMEOUT` (6.12), the wait holds out for this turn's sends plus
    /// `batch` more completions, but no longer than [`MIN_WAIT`] once one has arrived: under
    /// load one enter then serves dozens of requests instead of a few. A lightly loaded worker
    /// passes 0 and wakes at the first completion: the short timer costs more CPU than the
    /// syscall it saves when requests come one at a time (docs/io_uring.md has the figures).
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>, batch: usize) -> io::Result<()> {
        let sends = std::mem::take(&mut self.sends) as usize;
        let want = if batch > 0 && self.ring.params().is_feature_min_timeout() { batch + sends } else { 1 };
        let min_wait = MIN_WAIT.as_micros() as u32;
        let res = match timeout {
            Some(t) if t.is_zero() => self.ring.submit_and_wait(0),
            None if want == 1 => self.ring.submit_and_wait(1),
            None => self
                .ring
                .submitter()
                .submit_with_args(want, &types::SubmitArgs::new().min_wait_usec(min_wait)),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                let args = if want > 1 { args.min_wait_usec(min_wait) } else { args };
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: completions overflowed and must
            // be reaped first — all mean "look at the completion ring, then come back".
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves every completion ready into `into` (which keeps its capacity between turns).
    /// Returns whether more were waiting in the kernel's overflow list (`IORING_SQ_CQ_OVERFLOW`:
    /// the completion ring was full; the next enter moves them over).
    pub fn completions(&mut self, into: &mut Vec<Completion>) -> bool {
        let bufs = &self.bufs;
        into.extend(self.ring.completion().map(|cqe| {
            let done = Completion { token: cqe.user_data(), result: cqe.result(), flags: cqe.flags() };
            // Counted here, where every completion passes, so that one whose buffer does not
            // come back (a `Received` leaked, a completion never lent) shows in `Buffers::held`
            // (tests/io_backends.rs reads it at rest).
            if bufs.ends_buffer(&done) {
                bufs.held.set(bufs.held.get() + 1);
            }
            done
        }));
        self.ring.submission().cq_overflow()
    }
}

/// Where a worker queues submissions during a turn; they go to the kernel at the next
/// [`Ring::submit_and_wait`].
pub struct Submissions<'r> {
    ring: &'r mut IoUring,
    sends: &'r mut u32,
}

impl Submissions<'_> {
    /// Arms a multishot receive on `fd` into the ring's provided buffers.
    pub fn recv_multishot(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), GROUP).build().user_data(token);
        // SAFETY: a receive into provided buffers passes no memory of ours to the kernel.
        unsafe { self.push(&sqe) }
    }

    /// Sends `msg` on `fd` (`MSG_MORE` if `more`: another part of the response follows).
    ///
    /// # Safety
    /// `msg` and every byte its iovecs point at must stay valid and unchanged until this send's
    /// completion arrives.
    pub unsafe fn send_msg(
        &mut self,
        fd: BorrowedFd<'_>,
        msg: &SendMsg,
        more: bool,
        token: u64,
    ) -> io::Result<()> {
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        let sqe = match msg.iov[..msg.hdr.msg_iovlen] {
            // One buffer (a rendered response, a generated one): `IORING_OP_SEND` takes it as
            // a pointer and a length, where `SENDMSG` has the kernel copy in and check the
            // `msghdr` and its iovecs first (as `sendto(2)` against `sendmsg(2)`).
            [one] if u32::try_from(one.iov_len).is_ok() => opcode::Send::new(
                types::Fd(fd.as_raw_fd()),
                one.iov_base.cast_const().cast(),
                one.iov_len as u32,
            )
            .flags(flags)
            .build(),
            _ => opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), &msg.hdr).flags(flags as u32).build(),
        }
        .user_data(token);
        *self.sends += 1;
        // SAFETY: the caller keeps `msg` and its buffers alive until the completion.
        unsafe { self.push(&sqe) }
    }

    /// Reads 8 bytes from `fd` (an eventfd) into `*into`.
    ///
    /// # Safety
    /// `into` must stay valid until this read's completion arrives.
    pub unsafe fn read_u64(&mut self, fd: BorrowedFd<'_>, into: *mut u64, token: u64) -> io::Result<()> {
        let sqe = opcode::Read::new(types::Fd(fd.as_raw_fd()), into.cast(), 8).build().user_data(token);
        // SAFETY: the caller keeps `into` valid until the completion.
        unsafe { self.push(&sqe) }
    }

    /// Completes once `fd` is writable (one shot).
    pub fn poll_writable(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let sqe =
            opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLOUT as u32).build().user_data(token);
        // SAFETY: a poll passes no memory to the kernel.
        unsafe { self.push(&sqe) }
    }

    /// Cancels every operation in flight on `fd`; each completes with `-ECANCELED` (or its own
    /// result if it finished first).
    pub fn cancel_fd(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
            .build()
            .user_data(token);
        // SAFETY: a cancel passes no memory to the kernel.
        unsafe { self.push(&sqe) }
    }

    /// Cancels the operation submitted with token `target` (a multishot receive, to stop
    /// reading for a while).
    pub fn cancel(&mut self, target: u64, token: u64) -> io::Result<()> {
        let sqe = opcode::AsyncCancel::new(target).build().user_data(token);
        // SAFETY: a cancel passes no memory to the kernel.
        unsafe { self.push(&sqe) }
    }

    /// # Safety
    /// Whatever memory `sqe` points at stays valid until its completion.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: passed on from the caller.
        if unsafe { self.ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        // The submission ring is full: hand it to the kernel now and try again.
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }
}

/// `IOU_PBUF_RING_INC` (linux/io_uring.h): the kernel consumes a buffer a receive at a time.
const PBUF_RING_INC: u16 = 2;
/// `IORING_CQE_F_BUF_MORE`: the kernel keeps using the rest of this completion's buffer.
const CQE_F_BUF_MORE: u32 = 1 << 4;
/// Buffer sizes: large and shared by many receives when consumed incrementally; otherwise one
/// receive each, so small (a request head fits, an idle connection's share stays small).
///
/// Incrementally, a receive ends where a buffer does: one arrival in every `size ÷ its length`
/// is cut in two, and on the ring the second piece waits for the first piece's send to complete
/// — two sends, two segments. At 32 KiB, 2.4% of the pipelined load's 816-byte batches went out
/// in two (`perf stat -e io_uring:io_uring_submit_req`); at 256 KiB (four buffers of the
/// worker's 1 MiB) 0.3%, for 3.8% less server CPU a request (docs/benchmarks.md).
const INCREMENTAL_SIZE: u32 = 256 * 1024;
const CLASSIC_SIZE: u32 = 4096;

/// A provided-buffer ring: `count` entries the kernel takes from its head, and the buffers they
/// point to. The worker writes entries at the tail and publishes them with a release store of
/// the tail index, which the kernel reads with an acquire load (`io_uring_buf_ring`'s protocol,
/// like `io_uring_buf_ring_advance` in liburing).
///
/// *Incremental* (`IOU_PBUF_RING_INC`, 6.12): a receive takes only the bytes it needs from the
/// buffer at the head, and the next receive — of any connection — goes on from there; a
/// completion with `IORING_CQE_F_BUF_MORE` says the kernel still uses the rest. So 4 buffers of
/// 256 KiB hold thousands of small requests between two turns, where one-buffer-per-receive
/// would run dry after 256 (measured at 10,000 connections: most completions of a turn were
/// `ENOBUFS`). A buffer goes back to the ring once the kernel is done with it and its last
/// bytes have been read.
pub struct Buffers {
    /// `count` `io_uring_buf` entries; the tail index lives in the first entry's `resv` field.
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    memory: *mut u8,
    memory_len: usize,
    count: u16,
    size: u32,
    incremental: bool,
    /// Incremental mode: bytes of each buffer already handed out.
    used: Box<[Cell<u32>]>,
    /// The next tail to publish (wrapping; the kernel masks it).
    tail: Cell<u16>,
    /// Buffers that are neither the kernel's nor given back: counted up as completions hand
    /// them over ([`Ring::completions`]), down as [`Buffers::give_back`] returns them.
    held: Cell<u32>,
}

impl Buffers {
    /// Maps `memory` bytes of buffers and registers them with `ring` as group [`GROUP`].
    fn register(ring: &IoUring, memory: usize, incremental: bool) -> io::Result<Buffers> {
        let size = if incremental { INCREMENTAL_SIZE } else { CLASSIC_SIZE };
        let count = (memory / size as usize).clamp(1, 1 << 15).next_power_of_two() as u16;
        let entries_len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let memory_len = usize::from(count) * size as usize;
        let entries = map(entries_len, 0)?.cast::<types::BufRingEntry>();
        // Populated at once: the kernel takes buffers round-robin, so within seconds of load every
        // one has been written; faulting them in up front makes that cost fixed and visible.
        let memory = match map(memory_len, libc::MAP_POPULATE) {
            Ok(m) => m,
            Err(e) => {
                unmap(entries.cast(), entries_len);
                return Err(e);
            }
        };
        let used = (0..count).map(|_| Cell::new(0)).collect();
        let bufs = Buffers {
            entries,
            entries_len,
            memory,
            memory_len,
            count,
            size,
            incremental,
            used,
            tail: Cell::new(0),
            // Every buffer starts on the worker's side; the loop below gives them all to the kernel.
            held: Cell::new(u32::from(count)),
        };
        let flags = if incremental { PBUF_RING_INC } else { 0 };
        // SAFETY: the entries live in the returned `Buffers`, which `Ring` keeps until after the
        // ring (and with it the registration) is gone: its fields drop in declaration order.
        unsafe { ring.submitter().register_buf_ring_with_flags(bufs.entries as u64, count, GROUP, flags)? };
        for id in 0..count {
            bufs.give_back(id);
        }
        Ok(bufs)
    }

    /// Lends the bytes a receive completion brought (empty for any other completion) until the
    /// returned [`Received`] drops, which gives the buffer back. Once per completion, in order:
    /// in incremental mode it moves the buffer's read position on.
    pub fn lend<'a>(&'a self, done: &'a Completion) -> Received<'a> {
        Received { buffers: self, done, bytes: self.data(done) }
    }

    /// The bytes of `done` (see [`Buffers::lend`], which pairs this with [`Buffers::release`]).
    fn data(&self, done: &Completion) -> &[u8] {
        let (Some(id), Ok(len)) = (done.buffer(), u32::try_from(done.result)) else { return &[] };
        let used = &self.used[usize::from(id)];
        let at = if self.incremental { used.replace(used.get() + len) } else { 0 };
        assert!(id < self.count && at + len <= self.size, "buffer {id}: {at}+{len}");
        // SAFETY: buffer `id` is `size` bytes at `memory + id * size`, inside the mapping; the
        // kernel wrote `at..at + len` of it before posting the completion and does not write there
        // again until the buffer is given back (in incremental mode it goes on after `at + len`).
        unsafe {
            let start = self.memory.add(usize::from(id) * self.size as usize + at as usize);
            std::slice::from_raw_parts(start, len as usize)
        }
    }

    /// After a completion's bytes were read: returns its buffer to the kernel, unless the
    /// kernel still uses the rest of it (`IORING_CQE_F_BUF_MORE`). Called by [`Received`]'s drop.
    fn release(&self, done: &Completion) {
        if let Some(id) = done.buffer() {
            if self.ends_buffer(done) {
                self.used[usize::from(id)].set(0);
                self.give_back(id);
            }
        }
    }

    /// Buffers the kernel has handed over whole and the worker has not given back yet: 0
    /// once a turn's completions are all released, unless a buffer leaked (the kernel then has
    /// fewer for receives).
    pub fn held(&self) -> u32 {
        self.held.get()
    }

    /// Whether the kernel is done with the buffer `done` carries (it always is, unless it
    /// consumes buffers incrementally and says it goes on with this one).
    fn ends_buffer(&self, done: &Completion) -> bool {
        done.buffer().is_some() && (!self.incremental || done.flags & CQE_F_BUF_MORE == 0)
    }

    /// Returns buffer `id` (whole) to the kernel, for later receives.
    fn give_back(&self, id: u16) {
        let tail = self.tail.get();
        let slot = usize::from(tail & (self.count - 1));
        // SAFETY: `slot < count`, inside the entries mapping. The kernel only reads entries between
        // its head and the published tail, and this one is past the tail until the store below.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `id < count` (callers pass ids the kernel reported or `0..count`), so the address
        // is inside the buffer mapping.
        entry.set_addr(unsafe { self.memory.add(usize::from(id) * self.size as usize) } as u64);
        entry.set_len(self.size);
        entry.set_bid(id);
        self.tail.set(tail.wrapping_add(1));
        self.held.set(self.held.get().saturating_sub(1));
        // SAFETY: the tail is a naturally aligned u16 inside the mapping, and this thread is its
        // only writer; the kernel only reads it.
        let shared = unsafe { &*types::BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        // Release: the entry written above must be visible to the kernel before the tail that
        // covers it (it reads the tail with smp_load_acquire). Not modelled by loom: the other
        // side is the kernel (docs/io_uring.md).
        shared.store(tail.wrapping_add(1), Ordering::Release);
    }
}

/// What one receive completion brought, lent from the buffer ring ([`Buffers::lend`]): derefs to
/// the bytes, and gives the buffer back to the kernel when dropped (unless the kernel goes on
/// filling it). So a buffer cannot be forgotten, whatever becomes of the connection the bytes were
/// for: a leaked buffer would leave the kernel one fewer for every receive.
pub struct Received<'a> {
    buffers: &'a Buffers,
    done: &'a Completion,
    bytes: &'a [u8],
}

impl std::ops::Deref for Received<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        self.buffers.release(self.done);
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        unmap(self.memory, self.memory_len);
        unmap(self.entries.cast(), self.entries_len);
    }
}

/// Anonymous private memory, page-aligned (the kernel requires it of a buffer ring).
fn map(len: usize, flags: libc::c_int) -> io::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `p..p + len` is a mapping made by `map` and not used after this.
    unsafe { libc::munmap(p.cast(), len) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    /// Receives land in the provided buffers and are read back exactly where the kernel wrote
    /// them — in incremental mode at a moving offset inside a shared buffer — and every buffer
    /// comes back: 1.2 MB through 512 KiB of buffers arrive whole and in order.
    #[test]
    fn receives_are_read_where_the_kernel_wrote_them_and_buffers_come_back() {
        let mut ring = Ring::new(8, 512 * 1024).expect("io_uring");
        let (rx, mut tx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let arm = |ring: &mut Ring| ring.parts().0.recv_multishot(rx.as_fd(), 7).unwrap();
        arm(&mut ring);
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let mut completions = Vec::new();
        for i in 0..1000usize {
            let message: Vec<u8> = (0..700 + i).map(|j| ((i * 7 + j) % 251) as u8).collect();
            tx.write_all(&message).unwrap();
            sent.extend_from_slice(&message);
            while got.len() < sent.len() {
                ring.submit_and_wait(Some(Duration::from_secs(5)), 0).unwrap();
                completions.clear();
                ring.completions(&mut completions);
                assert!(!completions.is_empty(), "no completion in 5 s");
                for done in &completions {
                    assert_eq!(done.token, 7);
                    let (_, buffers) = ring.parts();
                    got.extend_from_slice(&buffers.lend(done));
                    assert!(done.result > 0 || done.result == -libc::ENOBUFS, "{done:?}");
                    if !done.more() {
                        arm(&mut ring);
                    }
                }
            }
        }
        assert!(got == sent, "the bytes read back differ from those sent");
    }

    /// A message of one buffer goes as `IORING_OP_SEND`, one of several as `SENDMSG`: both
    /// complete with their length and the peer reads every byte in order, `MSG_MORE` or not.
    #[test]
    fn sends_of_one_buffer_and_of_several_arrive_whole() {
        let mut ring = Ring::new(8, 64 * 1024).expect("io_uring");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let parts: [&[u8]; 3] = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\n", b"hi"];
        let (mut one, mut several) = (SendMsg::new(), SendMsg::new());
        one.set(&[IoSlice::new(parts[0])]);
        several.set(&parts[1..].iter().map(|p| IoSlice::new(p)).collect::<Vec<_>>());
        // SAFETY: both messages and the bytes they point at outlive the completions awaited below.
        unsafe {
            ring.parts().0.send_msg(client.as_fd(), &one, true, 1).unwrap();
            ring.parts().0.send_msg(client.as_fd(), &several, false, 2).unwrap();
        }
        let mut completions = Vec::new();
        for _ in 0..10 {
            if completions.len() == 2 {
                break;
            }
            ring.submit_and_wait(Some(Duration::from_secs(1)), 0).unwrap();
            ring.completions(&mut completions);
        }
        let mut results: Vec<_> = completions.iter().map(|c| (c.token, c.result)).collect();
        results.sort();
        assert_eq!(results, [(1, parts[0].len() as i32), (2, (parts[1].len() + parts[2].len()) as i32)]);
        let mut got = vec![0; parts.concat().len()];
        std::io::Read::read_exact(&mut server, &mut got).unwrap();
        assert_eq!(got, parts.concat());
    }

    /// A completion that arrives while the worker is busy is deferred work (`DEFER_TASKRUN`): it
    /// reaches the completion ring only when an enter runs it. A worker with connections still
    /// ready enters without waiting (a zero timeout); that enter must run it too, or the
    /// completion waits until the worker next blocks (a 5 MiB download at 16 connections lost
    /// a quarter of its req/s to that, docs/io_uring.md).
    #[test]
    fn an_enter_that_does_not_wait_runs_deferred_completions() {
        let mut ring = Ring::new(8, 64 * 1024).expect("io_uring");
        let (rx, mut tx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        ring.parts().0.recv_multishot(rx.as_fd(), 9).unwrap();
        ring.submit_and_wait(Some(Duration::ZERO), 0).unwrap(); // armed; nothing to read yet
        let mut completions = Vec::new();
        ring.completions(&mut completions);
        assert!(completions.is_empty());
        tx.write_all(b"late").unwrap(); // the wake-up queues the receive's completion as work
        ring.submit_and_wait(Some(Duration::ZERO), 0).unwrap();
        ring.completions(&mut completions);
        assert_eq!(completions.iter().map(|c| (c.token, c.result)).collect::<Vec<_>>(), [(9, 4)]);
    }
}
