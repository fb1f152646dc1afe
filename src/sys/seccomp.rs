//! `--seccomp`: an allow-list of the syscalls the serving phase makes, enforced by the kernel
//! with `seccomp(2)` (`SECCOMP_SET_MODE_FILTER`), so that an exploited bug in atomserve cannot
//! `execve` a shell, `ptrace` a neighbour or open a socket to somewhere new.
//!
//! The filter is a small classic-BPF program the kernel runs at every syscall entry: it checks
//! the architecture (a 32-bit or x32 syscall has other numbers and is refused), loads the
//! syscall number from `struct seccomp_data` and compares it with each entry of [`ALLOWED`];
//! no match ends the process with `SECCOMP_RET_KILL_PROCESS` — it dies of `SIGSYS`, and the
//! kernel's audit log (`dmesg`, `journalctl -k`: `type=1326 … syscall=N`) names the call. It
//! is installed once start-up is done (listeners bound, privileges dropped, the snapshot loaded,
//! every thread started) with `SECCOMP_FILTER_FLAG_TSYNC`, which puts it on every thread of the
//! process at once. It needs `no_new_privs` (set here; `--user` sets it too).
//!
//! Off by default: the list is derived from this code and from `strace -f -c` of the test suite
//! on x86-64 with glibc; a libc, allocator or kernel that reaches the same features through
//! another syscall would kill a correct server. Turn it on where the binary and its libc are the
//! ones tested (the shipped container image, the systemd unit). io_uring operations are not
//! syscalls and are invisible to it (docs/linux.md).

use std::io;

/// The syscalls atomserve's serving phase makes, and who makes them.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED: &[(libc::c_long, &str)] = &[
    // Serving (workers, acceptor).
    (libc::SYS_accept4, "acceptor: new connections"),
    (libc::SYS_poll, "acceptor, --watch: waiting"),
    (libc::SYS_ppoll, "poll's libc form"),
    (libc::SYS_epoll_wait, "workers: waiting"),
    (libc::SYS_epoll_pwait, "epoll_wait's libc form"),
    (libc::SYS_epoll_ctl, "workers: adding and re-arming connections"),
    (libc::SYS_epoll_create1, "workers: their epoll, made on their own thread as it starts"),
    (libc::SYS_sched_setaffinity, "workers: pinning themselves as they start"),
    (libc::SYS_recvfrom, "connections: reading requests"),
    (libc::SYS_sendmsg, "connections: responses (sendmsg with iovecs); sd_notify"),
    (libc::SYS_sendto, "connections: responses of one buffer; the 503 (send); sd_notify"),
    (libc::SYS_sendfile, "connections: large and on-disk bodies"),
    (libc::SYS_shutdown, "connections: lingering close"),
    (libc::SYS_close, "everything that ends"),
    (libc::SYS_getpeername, "access records: the client's address"),
    (libc::SYS_setsockopt, "large downloads: TCP_NOTSENT_LOWAT; OTLP exporter's connections"),
    (libc::SYS_getsockopt, "OTLP exporter's connections"),
    (libc::SYS_getsockname, "OTLP exporter's connections"),
    (libc::SYS_socket, "sd_notify's datagram, the OTLP exporter"),
    (libc::SYS_connect, "sd_notify, the OTLP exporter"),
    (libc::SYS_read, "eventfds, inotify, files at reload"),
    (libc::SYS_write, "eventfds (bells, signals), stderr, --access-log stdout"),
    (libc::SYS_writev, "std's buffered writers"),
    (libc::SYS_readv, "std's readers"),
    (
        libc::SYS_pread64,
        "phase 2 reads large bodies back; a worker's rendered table, a memfd body it captures",
    ),
    (libc::SYS_pwrite64, "memfd fill without MADV_POPULATE_WRITE"),
    (libc::SYS_lseek, "std's file reads"),
    // Reloads (the reload thread, --watch).
    (libc::SYS_openat, "read_dir, canonicalize"),
    (libc::SYS_openat2, "every file, beneath the root"),
    (libc::SYS_newfstatat, "the walk's metadata"),
    (libc::SYS_statx, "std's metadata"),
    (libc::SYS_fstat, "loader: size, mtime, type"),
    (libc::SYS_readlink, "canonicalize (realpath)"),
    (libc::SYS_getcwd, "canonicalize of a relative --root at each reload (regression: SIGSYS)"),
    (libc::SYS_getdents64, "read_dir"),
    (libc::SYS_fcntl, "F_ADD_SEALS on memfds"),
    (libc::SYS_memfd_create, "large bodies"),
    (libc::SYS_ftruncate, "sizing a memfd"),
    (libc::SYS_fallocate, "punching a dead body's pages out"),
    (libc::SYS_inotify_add_watch, "--watch: new directories"),
    (libc::SYS_sched_setscheduler, "compression threads: SCHED_IDLE"),
    (libc::SYS_setpriority, "compression threads: nice 19"),
    // Memory, threads, time, signals (std, glibc, the allocator).
    (libc::SYS_mmap, "allocator, memfd fill, thread stacks"),
    (libc::SYS_munmap, "allocator, memfd fill"),
    (libc::SYS_mremap, "allocator (realloc)"),
    (libc::SYS_mprotect, "thread stack guards"),
    (libc::SYS_madvise, "allocator, malloc_trim, MADV_HUGEPAGE/POPULATE_WRITE"),
    (libc::SYS_brk, "allocator"),
    (libc::SYS_futex, "mutexes, channels, thread join"),
    (libc::SYS_clone, "threads (OTLP exporter, compression)"),
    (libc::SYS_clone3, "threads"),
    (libc::SYS_set_robust_list, "new threads"),
    (libc::SYS_rseq, "new threads"),
    (libc::SYS_prctl, "thread names"),
    (libc::SYS_sigaltstack, "std's stack-overflow handler per thread"),
    (libc::SYS_sched_getaffinity, "available_parallelism"),
    (libc::SYS_prlimit64, "/metrics: the open-file limit (getrlimit)"),
    (libc::SYS_sched_yield, "spin loops in std and crossbeam"),
    (libc::SYS_gettid, "std's thread ids"),
    (libc::SYS_getpid, "std, glibc"),
    (libc::SYS_getrandom, "hash seeds"),
    (libc::SYS_clock_gettime, "time (when the vDSO is not used)"),
    (libc::SYS_clock_nanosleep, "thread::sleep"),
    (libc::SYS_nanosleep, "thread::sleep"),
    (libc::SYS_rt_sigreturn, "returning from the signal handler"),
    (libc::SYS_rt_sigprocmask, "glibc around thread creation, abort"),
    (libc::SYS_restart_syscall, "a syscall interrupted by a signal"),
    (libc::SYS_tgkill, "abort() on a panic (panic = abort)"),
    (libc::SYS_exit, "a thread ends"),
    (libc::SYS_exit_group, "the process ends"),
];

/// Added with `--io uring`: the ring's own syscalls. Its operations are not syscalls, so the
/// filter cannot see them — which is why these stay off the list unless the backend needs them.
#[cfg(target_arch = "x86_64")]
pub const URING: &[(libc::c_long, &str)] = &[
    (libc::SYS_io_uring_setup, "workers: their ring, made on their own thread as it starts"),
    (libc::SYS_io_uring_enter, "workers: submitting and waiting"),
    (libc::SYS_io_uring_register, "workers: the probe and the provided-buffer ring"),
];

/// Other architectures: no list was derived for them (`install` refuses).
#[cfg(not(target_arch = "x86_64"))]
pub const ALLOWED: &[(libc::c_long, &str)] = &[];

/// Audit architecture of this build (`seccomp_data.arch`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64 = EM_X86_64 | 64BIT | LE
/// x32 syscalls set this bit in the number on x86-64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
const RET_KILL_PROCESS: u32 = 0x8000_0000; // SECCOMP_RET_KILL_PROCESS
const SET_MODE_FILTER: libc::c_ulong = 1; // SECCOMP_SET_MODE_FILTER
const FILTER_FLAG_TSYNC: libc::c_ulong = 1; // SECCOMP_FILTER_FLAG_TSYNC

/// BPF instructions (linux/filter.h): load a word at an absolute offset, jump if equal / greater
/// or equal to a constant, return a constant.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program for `allowed` syscall numbers.
#[cfg(target_arch = "x86_64")]
fn program(allowed: &[libc::c_long]) -> Vec<libc::sock_filter> {
    assert!(allowed.len() < 250, "jump offsets are one byte");
    let mut p = vec![
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, AUDIT_ARCH),
        op(RET_K, 0, 0, RET_KILL_PROCESS),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, RET_KILL_PROCESS),
    ];
    let n = allowed.len();
    for (i, &nr) in allowed.iter().enumerate() {
        // On a match jump over the remaining comparisons and the kill, to the allow.
        let to_allow = (n - i) as u8; // (n - i - 1) comparisons left, then the kill
        p.push(op(JEQ_K, to_allow, 0, nr as u32));
    }
    p.push(op(RET_K, 0, 0, RET_KILL_PROCESS));
    p.push(op(RET_K, 0, 0, RET_ALLOW));
    p
}

/// Installs the filter on every thread of the process (with the io_uring calls if `uring`);
/// returns how many syscalls it allows. Irreversible.
#[cfg(target_arch = "x86_64")]
pub fn install(uring: bool) -> io::Result<usize> {
    let extra = if uring { URING } else { &[] };
    let allowed: Vec<libc::c_long> = ALLOWED.iter().chain(extra).map(|&(nr, _)| nr).collect();
    install_allowing(&allowed)?;
    Ok(allowed.len())
}

#[cfg(target_arch = "x86_64")]
fn install_allowing(allowed: &[libc::c_long]) -> io::Result<()> {
    load(&program(allowed))
}

/// Loads a built program (no allocation: a forked child may call it).
#[cfg(target_arch = "x86_64")]
fn load(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog =
        libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    super::creds::set_no_new_privs()?;
    // SAFETY: `prog` points at `filter`, which outlives the call (the kernel copies it).
    unsafe {
        syscall!(syscall(
            libc::SYS_seccomp,
            SET_MODE_FILTER,
            FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog
        ))?
    };
    Ok(())
}

/// Other architectures: no list was derived for them.
#[cfg(not(target_arch = "x86_64"))]
pub fn install(_uring: bool) -> io::Result<usize> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "--seccomp has an allow-list for x86-64 only"))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Forks a child that installs the filter and runs `f`; returns how the child ended.
    fn in_filtered_child(f: fn()) -> libc::c_int {
        // Built before the fork: the child must not allocate (another thread may hold malloc's lock).
        let filter = program(&ALLOWED.iter().map(|&(nr, _)| nr).collect::<Vec<_>>());
        // SAFETY: the child only makes syscalls (prctl, seccomp, the one under test, _exit):
        // nothing that needs the parent's other threads or locks.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = if load(&filter).is_ok() {
                f();
                0
            } else {
                3
            };
            // SAFETY: ends the forked child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid int.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    #[test]
    fn an_allowed_call_runs_and_a_forbidden_one_kills_with_sigsys() {
        let ok = in_filtered_child(|| {
            // SAFETY: getpid takes no arguments.
            unsafe { libc::getpid() };
        });
        assert!(libc::WIFEXITED(ok) && libc::WEXITSTATUS(ok) == 0, "status {ok:#x}");
        let killed = in_filtered_child(|| {
            // SAFETY: utsname is plain C chars, for which all-zero bytes are valid.
            let mut u: libc::utsname = unsafe { std::mem::zeroed() };
            // SAFETY: uname(2) into a valid buffer: a call the serving phase never makes.
            unsafe { libc::uname(&mut u) };
        });
        assert!(libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == libc::SIGSYS, "status {killed:#x}");
    }

    #[test]
    fn the_list_has_no_duplicates_and_fits_the_jumps() {
        let mut nrs: Vec<_> = ALLOWED.iter().chain(URING).map(|&(nr, _)| nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), ALLOWED.len() + URING.len());
        assert!(program(&nrs).len() < 256);
    }
}
