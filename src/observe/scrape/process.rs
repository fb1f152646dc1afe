//! The standard `process_*` metrics, read from `/proc/self` at scrape time.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys::limits;

/// One reading.
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

/// Reads the process's figures; a figure that cannot be read is 0.
pub fn read(started: SystemTime) -> Process {
    let ticks = limits::clock_ticks_per_second().max(1) as f64;
    // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks, counted after the
    // parenthesised command name, which may itself contain spaces.
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_seconds = (field(14) + field(15)) as f64 / ticks;
    // /proc/self/statm: the second field is the resident set in pages.
    let statm = fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let resident_pages = statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Process {
        cpu_seconds,
        resident_bytes: resident_pages * limits::page_size(),
        open_fds: fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds: limits::nofile_limit().unwrap_or(0),
        start_time_seconds: started.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
    }
}
