//! The syscall layer: the only code in atomserve that names `libc`.
//!
//! Every wrapper goes through `syscall!` (below), which turns the C convention (`-1` and
//! `errno`) into `io::Result` in one place. A file descriptor becomes an
//! [`OwnedFd`](std::os::fd::OwnedFd) the moment the kernel hands it out, so dropping it closes it
//! and no error path can leak one.
//!
//! | module | syscalls |
//! |---|---|
//! | [`socket`] | socket, setsockopt, getsockopt, bind, listen, accept4, getpeername, recv, sendto and sendmsg (writev with flags; all through `syscall(2)`: not cancellation points), shutdown |
//! | [`poll`] | poll |
//! | [`epoll`] | epoll_create1, epoll_ctl, epoll_wait |
//! | [`uring`] | io_uring_setup, io_uring_enter, io_uring_register (through the `io-uring` crate), mmap, munmap |
//! | [`eventfd`] | eventfd, read, write |
//! | [`file`](mod@file) | write, open(O_PATH), openat2(RESOLVE_BENEATH), fstat, sendfile, memfd_create, ftruncate, mmap, madvise, munmap, pwrite, pread, fcntl(F_ADD_SEALS), fallocate(PUNCH_HOLE) |
//! | [`inotify`] | inotify_init1, inotify_add_watch, read |
//! | [`signal`] | sigaction |
//! | [`affinity`] | sched_getaffinity, sched_setaffinity |
//! | [`sched`] | sched_setscheduler(SCHED_IDLE), setpriority, sched_getscheduler |
//! | [`creds`] | getpwnam_r, getgrnam_r, setgroups, setgid, setuid, prctl(PR_SET_NO_NEW_PRIVS) |
//! | [`limits`] | getrlimit, setrlimit |
//! | [`mem`] | malloc_trim (glibc; madvise inside), prctl(PR_SET_THP_DISABLE) |
//! | [`seccomp`] | prctl(PR_SET_NO_NEW_PRIVS), seccomp(SECCOMP_SET_MODE_FILTER, TSYNC) |
//! | [`fd`] | fcntl (taking over inherited descriptors: systemd's passed sockets) |
//! | [`clock`] | clock_gettime (CLOCK_MONOTONIC, for systemd's notifications) |

/// Calls a `libc` function and turns a `-1` return into `Err(io::Error::last_os_error())`.
///
/// Must be used inside an `unsafe` block whose `// SAFETY:` comment justifies the arguments.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub mod affinity;
pub mod clock;
pub mod creds;
pub mod epoll;
pub mod eventfd;
pub mod fd;
pub mod file;
pub mod inotify;
pub mod limits;
pub mod mem;
pub mod poll;
pub mod sched;
pub mod seccomp;
pub mod signal;
pub mod socket;
pub mod uring;

pub use libc::{EAGAIN, ECANCELED, ECONNABORTED, EINTR, ELOOP, EMFILE, ENFILE, ENOBUFS, ENOMEM};
