//! Clock readings other than `std::time`'s: `CLOCK_MONOTONIC` as a number, the clock
//! systemd's notifications carry (`clock_gettime(2)`).

/// `CLOCK_MONOTONIC` in microseconds, the clock of `MONOTONIC_USEC=` in sd_notify(3); 0 if the
/// clock cannot be read (it always can on Linux).
pub fn monotonic_usec() -> u64 {
    monotonic_ns() / 1_000
}

/// `CLOCK_MONOTONIC` in nanoseconds (`std::time::Instant`'s clock, as a plain number: a
/// difference of two is a subtraction, where `Instant::elapsed` normalises a `timespec` and
/// builds a `Duration`, ~50 instructions a request on the serving path by callgrind); 0 if the
/// clock cannot be read (it always can on Linux). A `clock_gettime(2)` through the vDSO: no
/// system call.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is valid and writable for the call.
    match unsafe { syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts)) } {
        Ok(_) => ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        Err(_) => 0,
    }
}
