//! Log lines on stderr, one `write(2)` each, that never panic.
//!
//! `eprintln!` panics when stderr cannot be written (a closed pipe, a full disk behind a
//! redirect); with `panic = "abort"` that would take the server down over a log line.
//! [`log!`](crate::log!) writes the whole line at once and ignores the error: losing a log line
//! beats losing the server.

/// Writes `atomserve: <message>` and a newline to stderr, ignoring errors.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("atomserve: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}
