//! Signals through `sigaction(2)`, turned into something a normal loop can wait on.
//!
//! A signal handler runs on whatever thread the kernel picks, between any two instructions, so it
//! may only do async-signal-safe work (signal-safety(7)). Ours does two things: it records which
//! signal arrived in an atomic bitmask, and it `write(2)`s to an eventfd that the acceptor polls —
//! the "self-pipe trick" with an eventfd instead of a pipe. Everything else (draining, reloading)
//! happens later on the acceptor thread, outside the handler.
//!
//! SIGPIPE is ignored: a peer that closes while we write must produce `EPIPE`, not kill the
//! process. (atomserve also sends with `MSG_NOSIGNAL`, so this is belt and braces for any code
//! path that might not.)

use std::io;
use std::mem;
use std::sync::OnceLock;

use super::eventfd::{ring_raw, EventFd};
use crate::sync::os_atomic::{AtomicI32, AtomicU32, Ordering};

/// Signals that arrived and were not yet taken, one bit per signal number.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// The eventfd to ring when a signal arrives; -1 before [`install`]. It is [`WAKE`]'s number,
/// and `WAKE` is never closed: a descriptor the handler may write to at any moment must not be
/// closed and its number reused by another file (`tests/signals.rs` pins this for a failed
/// start-up).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The wake-up eventfd, created by the first [`install`] and kept for the life of the process.
static WAKE: OnceLock<EventFd> = OnceLock::new();

/// The signals atomserve acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: drain and exit.
    Terminate,
    /// SIGHUP: reload the file cache.
    Reload,
}

extern "C" fn on_signal(signo: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's lifetime.
    // The handler interrupts arbitrary code, so errno must be preserved across our write(2).
    let errno = unsafe { *libc::__errno_location() };
    // Relaxed: the eventfd write below is what the acceptor waits on, and the acceptor's swap is
    // on the same atomic, so it reads this bit (coherence) once it looks; no other data hangs on it.
    PENDING.fetch_or(1 << (signo as u32 & 31), Ordering::Relaxed);
    // Relaxed: the fd was stored before the handler was installed (sigaction is a full barrier
    // for the thread that installed it, and other threads started after it).
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        ring_raw(fd);
    }
    // SAFETY: as above; restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs handlers for SIGINT, SIGTERM and SIGHUP, and ignores SIGPIPE. Returns the eventfd
/// they ring, which lives as long as the process (a second call returns the same one).
pub fn install() -> io::Result<&'static EventFd> {
    let wake = match WAKE.get() {
        Some(wake) => wake,
        None => {
            let fd = EventFd::new()?;
            // Called from the main thread at start-up: nobody else sets it. Should a second
            // thread race here, its EventFd is dropped (closed) before any handler saw its number.
            let _ = WAKE.set(fd);
            WAKE.get().ok_or_else(|| io::Error::other("the signal eventfd is not set"))?
        }
    };
    // Relaxed: published to the handler by the sigaction calls below (see on_signal).
    // Not an ordering site a loom model can cover: signal handlers are not loom threads.
    WAKE_FD.store(wake.as_raw(), Ordering::Relaxed);
    for signo in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        set_action(signo, on_signal as *const () as libc::sighandler_t)?;
    }
    set_action(libc::SIGPIPE, libc::SIG_IGN)?;
    Ok(wake)
}

fn set_action(signo: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags) before we fill it in.
    let mut act: libc::sigaction = unsafe { mem::zeroed() };
    act.sa_sigaction = handler;
    // SA_RESTART: interrupted blocking calls elsewhere (e.g. a read of a file at reload) resume
    // instead of failing with EINTR. poll/epoll_wait still return EINTR, which the loops handle.
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is a valid sigset_t to fill.
    unsafe { syscall!(sigemptyset(&mut act.sa_mask))? };
    // SAFETY: `act` is fully initialised; a null old-action pointer is allowed.
    unsafe { syscall!(sigaction(signo, &act, std::ptr::null_mut()))? };
    Ok(())
}

/// Takes the signals that arrived since the last call (in priority order: terminate first).
pub fn take_pending() -> Vec<Signal> {
    // Relaxed: see on_signal; the swap reads the latest value of PENDING by coherence.
    let bits = PENDING.swap(0, Ordering::Relaxed);
    let mut out = Vec::new();
    if bits & (1 << libc::SIGINT | 1 << libc::SIGTERM) != 0 {
        out.push(Signal::Terminate);
    }
    if bits & (1 << libc::SIGHUP) != 0 {
        out.push(Signal::Reload);
    }
    out
}
