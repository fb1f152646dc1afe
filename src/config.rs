//! Command-line flags, each also readable from an `ATOMSERVE_*` environment variable (the flag
//! wins when both are given).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::http::request::Limits;
use crate::http::request::MAX_HEADERS;
use crate::serve::link::Timeouts;

/// atomserve: a static-file HTTP/1.1 server for single-page apps, on raw Linux syscalls and
/// lock-free atomics. It loads the whole document root into memory at start-up and serves it
/// from there; SIGHUP reloads it, SIGTERM/SIGINT drain and exit.
#[derive(Parser, Debug, Clone)]
#[command(version, about, long_about = None, max_term_width = 100, after_help = AFTER_HELP)]
pub struct Config {
    /// Directory to serve (loaded into memory at start-up).
    #[arg(long, env = "ATOMSERVE_ROOT", default_value = "frontend/dist")]
    pub root: PathBuf,

    /// Address to serve on; repeat (or comma-separate) for several, e.g. `[::1]:8080`.
    #[arg(long, env = "ATOMSERVE_LISTEN", default_value = "127.0.0.1:8080", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,

    /// Address of the admin endpoints (/healthz), or `none`.
    #[arg(long, env = "ATOMSERVE_ADMIN_LISTEN", default_value = "127.0.0.1:9464", value_parser = parse_admin)]
    pub admin_listen: AdminListen,

    /// After binding, drop root and run as this user (name or uid).
    #[arg(long, env = "ATOMSERVE_USER")]
    pub user: Option<String>,

    /// With --user: the group to run as [default: the user's primary group].
    #[arg(long, env = "ATOMSERVE_GROUP", requires = "user")]
    pub group: Option<String>,

    /// Worker threads [default: one per CPU this process may run on].
    #[arg(long, env = "ATOMSERVE_WORKERS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,

    /// How workers move their connections' bytes: `epoll` (readiness, then recv/send),
    /// `uring` (io_uring completions: no syscall per request), or `auto` (io_uring where the
    /// kernel and its policy allow it, else epoll with a log line saying why).
    #[arg(long = "io", env = "ATOMSERVE_IO", value_enum, default_value_t = IoBackend::Epoll)]
    pub io: IoBackend,

    /// Do not pin workers to CPUs.
    #[arg(long, env = "ATOMSERVE_NO_PIN")]
    pub no_pin: bool,

    /// Accepted connections that may wait for a worker; beyond it new ones get 503.
    #[arg(long, env = "ATOMSERVE_QUEUE_CAPACITY", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_capacity: u32,

    /// Most public connections open at once; beyond it new ones get 503
    /// [default: the open-file limit minus a reserve for the server's own descriptors].
    #[arg(long, env = "ATOMSERVE_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,

    /// listen(2) backlog.
    #[arg(long, env = "ATOMSERVE_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,

    /// Bind with SO_REUSEPORT, for upgrades without a dropped connection: start the new process
    /// with this flag on the same addresses, and once it serves, every new connection goes to it;
    /// then SIGTERM the old one (started with this flag too), which finishes what it has.
    #[arg(long, env = "ATOMSERVE_REUSE_PORT")]
    pub reuse_port: bool,

    /// Longest request line in bytes (longer: 414).
    #[arg(long, env = "ATOMSERVE_MAX_REQUEST_LINE", default_value_t = 8 * 1024)]
    pub max_request_line: usize,

    /// Largest request head in bytes (larger: 431).
    #[arg(long, env = "ATOMSERVE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most header fields in a request (more: 431); at most 256.
    #[arg(long, env = "ATOMSERVE_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=MAX_HEADERS as i64))]
    pub max_headers: u16,

    /// A field for every public response, `'Name: value'`; repeat for several
    /// (ATOMSERVE_HEADER: one per line). `_headers` rules add to them and may detach them.
    #[arg(long = "header", env = "ATOMSERVE_HEADER", value_delimiter = '\n', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Read `_headers` rules from this file instead of the root's `_headers` (read on every load).
    #[arg(long, env = "ATOMSERVE_HEADERS_FILE")]
    pub headers_file: Option<PathBuf>,

    /// Read `_redirects` rules from this file instead of the root's `_redirects`.
    #[arg(long, env = "ATOMSERVE_REDIRECTS_FILE")]
    pub redirects_file: Option<PathBuf>,

    /// Largest request body in bytes, read and discarded (larger: 413).
    #[arg(long, env = "ATOMSERVE_MAX_BODY", default_value_t = 1024 * 1024)]
    pub max_body: u64,

    /// Time allowed to send a request head, from its first byte (e.g. 10s, 500ms).
    #[arg(long, env = "ATOMSERVE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long an idle keep-alive connection stays open.
    #[arg(long, env = "ATOMSERVE_KEEPALIVE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// How long a client may stop reading a response before it is dropped.
    #[arg(long, env = "ATOMSERVE_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// On SIGTERM/SIGINT, how long in-flight responses may take before connections are cut.
    #[arg(long, env = "ATOMSERVE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Most bytes of file content held in memory (e.g. 256M, 1G); the smallest files are kept
    /// first, the rest are sent from disk with sendfile(2).
    #[arg(long, env = "ATOMSERVE_CACHE_BUDGET", default_value = "256M", value_parser = parse_size)]
    pub cache_budget: u64,

    /// Files larger than this are never held in memory: they are sent from disk with sendfile(2).
    #[arg(long, env = "ATOMSERVE_MAX_CACHED_FILE", default_value = "8M", value_parser = parse_size)]
    pub max_cached_file: u64,

    /// Where large bodies (512 KiB and up) are sent from: `memfd` (a copy in memory, immune to
    /// files changed in place), `page-cache` (the file itself: cheaper where shmem has no huge
    /// pages), or `auto` (`page-cache` on such hosts, else `memfd`).
    #[arg(long, env = "ATOMSERVE_LARGE_BODIES", value_enum, default_value_t = LargeBodies::Auto)]
    pub large_bodies: LargeBodies,

    /// Cache-Control for files that are neither HTML (`no-cache`) nor fingerprinted Vite assets
    /// under /assets/ (`max-age=31536000, immutable`).
    #[arg(long, env = "ATOMSERVE_CACHE_CONTROL", default_value = "max-age=3600", value_parser = parse_header_value)]
    pub cache_control: String,

    /// Do not build gzip/brotli variants at load time (faster start, larger responses).
    #[arg(long, env = "ATOMSERVE_NO_COMPRESS")]
    pub no_compress: bool,

    /// Once started, allow only the syscalls serving needs (seccomp; x86-64): any other kills
    /// the process with SIGSYS. Off by default: see src/sys/seccomp.rs.
    #[arg(long, env = "ATOMSERVE_SECCOMP")]
    pub seccomp: bool,

    /// Reload automatically when files under the root change (inotify, debounced 100 ms).
    #[arg(long, env = "ATOMSERVE_WATCH")]
    pub watch: bool,

    /// Answer unknown extension-less paths with 404 instead of /index.html.
    #[arg(long, env = "ATOMSERVE_NO_SPA_FALLBACK")]
    pub no_spa_fallback: bool,

    /// Do not serve: GET this http:// URL and exit 0 on a 200, 1 otherwise — a container
    /// HEALTHCHECK for images without curl (no environment variable: it would turn a server into
    /// a probe).
    #[arg(long, value_name = "URL")]
    pub healthcheck: Option<String>,

    /// Access log: `stdout` (Combined Log Format, buffered per worker) or `off`.
    #[arg(long, env = "ATOMSERVE_ACCESS_LOG", default_value = "off", value_parser = ["off", "stdout"])]
    pub access_log: String,
}

const AFTER_HELP: &str = "\
Signals:
  SIGTERM, SIGINT  stop accepting, finish in-flight responses, exit 0 (a second signal: exit now)
  SIGHUP           reload the document root into a new snapshot, swapped in atomically

systemd: serves on the sockets of LISTEN_FDS instead of binding (one named `admin` by
  LISTEN_FDNAMES serves the admin endpoints) and reports readiness to NOTIFY_SOCKET.

OpenTelemetry (off unless an endpoint is set; see docs/observability.md):
  OTEL_EXPORTER_OTLP_ENDPOINT (and _TRACES_/_METRICS_/_LOGS_ENDPOINT), OTEL_EXPORTER_OTLP_PROTOCOL
  (http/protobuf), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_METRIC_EXPORT_INTERVAL,
  OTEL_TRACES_SAMPLER (traces are off unless it is set), OTEL_TRACES_SAMPLER_ARG, OTEL_SDK_DISABLED

Examples:
  atomserve --root dist
  atomserve --root dist --listen 0.0.0.0:8080 --listen [::]:8080 --workers 4
  ATOMSERVE_ROOT=dist ATOMSERVE_ADMIN_LISTEN=none atomserve";

/// `--io`: the workers' I/O backend.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    Epoll,
    Uring,
    Auto,
}

/// `--large-bodies`: where cached bodies of `cache::pack::PAGE_CACHE_MIN` and more are sent from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeBodies {
    Auto,
    Memfd,
    PageCache,
}

/// The admin listener's address, or none.
#[derive(Clone, Copy, Debug)]
pub enum AdminListen {
    Off,
    On(SocketAddr),
}

fn parse_admin(s: &str) -> Result<AdminListen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(AdminListen::Off);
    }
    s.parse().map(AdminListen::On).map_err(|e| format!("{e} (expected host:port or `none`)"))
}

/// A header field value: visible ASCII and spaces only, so it cannot inject a header.
fn parse_header_value(s: &str) -> Result<String, String> {
    if s.bytes().all(|c| c == b' ' || c == b'\t' || c.is_ascii_graphic()) && !s.trim().is_empty() {
        Ok(s.trim().to_string())
    } else {
        Err("must be non-empty visible ASCII (no line breaks)".into())
    }
}

/// `4096`, `64K`, `256M`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size like 256M"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit (use K, M or G)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}` is too large"))
}

/// `10s`, `500ms`, `2m`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let value: f64 = digits.parse().map_err(|_| format!("`{s}` is not a duration like 10s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s or m)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to 24 hours)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers as usize,
            max_body: self.max_body,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            header_ms: self.header_timeout.as_millis() as u64,
            keep_alive_ms: self.keepalive_timeout.as_millis() as u64,
            send_ms: self.send_timeout.as_millis() as u64,
            ..Timeouts::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12T").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn defaults_parse() {
        let c = Config::try_parse_from(["atomserve"]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.limits().max_headers, 100);
        assert!(matches!(c.admin_listen, AdminListen::On(_)));
        let c = Config::try_parse_from([
            "atomserve",
            "--listen",
            "[::1]:0",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "none",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert!(matches!(c.admin_listen, AdminListen::Off));
        assert!(Config::try_parse_from(["atomserve", "--workers", "0"]).is_err());
    }
}
