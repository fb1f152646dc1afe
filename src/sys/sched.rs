//! Scheduling class: `sched_setscheduler(2)` with `SCHED_IDLE`, or `setpriority(2)` to nice 19
//! where that is refused, for the threads that build compressed variants in the background.
//!
//! The pinned workers run in the default class (`SCHED_OTHER`, CFS/EEVDF). A `SCHED_IDLE` thread
//! gets a CPU only when nothing of a normal class wants it, so background compression takes no
//! time from a worker that has requests to serve; nice 19 is the weaker fallback (a weight of 15
//! against a worker's 1024: about 1.5% of a contended CPU). Both calls with pid 0 change the
//! *calling thread* only, like `sched_setaffinity`.

use std::io;

/// Which of the two the calling thread got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// `SCHED_IDLE`: runs only on an otherwise idle CPU.
    Idle,
    /// `SCHED_IDLE` was refused (a seccomp profile, an RLIMIT_RTPRIO policy): nice 19.
    Nice19,
}

impl Background {
    pub fn describe(self) -> &'static str {
        match self {
            Background::Idle => "SCHED_IDLE",
            Background::Nice19 => "nice 19 (SCHED_IDLE refused)",
        }
    }
}

/// Moves the calling thread to the background: `SCHED_IDLE`, else nice 19.
pub fn background_current_thread() -> io::Result<Background> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param (priority 0 is the
    // only one SCHED_IDLE takes).
    if unsafe { syscall!(sched_setscheduler(0, libc::SCHED_IDLE, &param)) }.is_ok() {
        return Ok(Background::Idle);
    }
    // SAFETY: PRIO_PROCESS with who = 0 is the calling thread on Linux (priorities are per
    // thread); 19 is the lowest priority, which any process may ask for.
    unsafe { syscall!(setpriority(libc::PRIO_PROCESS, 0, 19))? };
    Ok(Background::Nice19)
}

/// The calling thread's scheduling policy (tests: `libc::SCHED_IDLE` after the call above).
pub fn current_policy() -> io::Result<i32> {
    // SAFETY: pid 0 is the calling thread; no pointers.
    unsafe { syscall!(sched_getscheduler(0)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_runs_at_sched_idle_or_nice_19() {
        let got = std::thread::spawn(|| (background_current_thread().unwrap(), current_policy().unwrap()))
            .join()
            .unwrap();
        match got {
            (Background::Idle, policy) => assert_eq!(policy, libc::SCHED_IDLE),
            (Background::Nice19, policy) => assert_eq!(policy, libc::SCHED_OTHER),
        }
        // Only the thread that asked moved.
        assert_eq!(current_policy().unwrap(), libc::SCHED_OTHER);
    }
}
