//! CPU affinity: which CPUs this process may run on, and pinning a thread to one of them.
//!
//! `sched_getaffinity(2)` returns the mask the process inherited (from `taskset`, a container's
//! cpuset or systemd's `CPUAffinity=`), so atomserve only ever pins workers to CPUs it was given.
//! `sched_setaffinity(2)` with pid 0 changes the *calling thread* only: each worker pins itself.

use std::io;
use std::mem;

/// The CPUs the calling thread may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: pid 0 means the calling thread; `set` is a valid, writable cpu_set_t of the size passed.
    unsafe { syscall!(sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set))? };
    let cpus = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads `set`; `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "CPU index beyond CPU_SETSIZE"));
    }
    // SAFETY: all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE was checked above, so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    unsafe { syscall!(sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set))? };
    Ok(())
}
