//! Resource limits and system constants: raising the soft `RLIMIT_NOFILE` to the hard limit at
//! start-up, as nginx's `worker_rlimit_nofile` does, so that the fd budget is what the
//! administrator allowed; and the figures the process metrics need (`sysconf(3)`).

use std::io;

/// Raises the soft open-file limit to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe { syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))? };
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `want` is a valid rlimit that only raises the soft limit up to the hard one.
        if unsafe { syscall!(setrlimit(libc::RLIMIT_NOFILE, &want)) }.is_ok() {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// The current soft open-file limit.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe { syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))? };
    Ok(lim.rlim_cur)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of CPU times in `/proc` (100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes no pointers; -1 (unknown) falls back to Linux's USER_HZ.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// `sysconf(_SC_PAGESIZE)`: the unit of `/proc/self/statm`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}
