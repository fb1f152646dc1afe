//! Start-up and shutdown: load the snapshot, bind the listeners (or take systemd's), start the
//! pinned workers, tell systemd it is ready, run the acceptor on the main thread, and drain on
//! SIGTERM/SIGINT: stop accepting first, then finish in-flight work.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::pack;
use crate::cache::reload::{self, Trigger};
use crate::cache::watch::Watcher;
use crate::cache::{self, LoadError, LoadOptions, Reuse, SiteFiles, SnapshotCell};
use crate::config::{AdminListen, Config, IoBackend, LargeBodies};
use crate::endpoint::{Endpoint, Role};
use crate::observe::access::{AccessSink, LogWriter, TextLog};
use crate::observe::scrape::Sources;
use crate::observe::telemetry::Telemetry;
use crate::serve::acceptor::Acceptor;
use crate::serve::handoff::Handoff;
use crate::serve::ring_worker;
use crate::serve::worker::{self, WorkerSetup};
use crate::serve::FdHandoff;
use crate::stats::Stats;
use crate::sync::{thread, Arc};
use crate::sys::eventfd::EventFd;
use crate::sys::poll::{self, PollFd};
use crate::sys::signal::{self, Signal};
use crate::sys::socket::{self, ListenOptions};
use crate::sys::uring::Ring;
use crate::sys::{affinity, creds, limits};
use crate::systemd;

/// A failure to start; `main` prints it on one line and exits with status 2.
#[derive(Debug)]
pub enum StartError {
    Load(LoadError),
    Bind { addr: SocketAddr, error: io::Error },
    Os { what: &'static str, error: io::Error },
    Telemetry(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Load(e) => write!(f, "cannot load the document root: {e}"),
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Os { what, error } => write!(f, "{what}: {error}"),
            StartError::Telemetry(e) => write!(f, "OpenTelemetry: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
    move |error| StartError::Os { what, error }
}

/// With `--user`, gives up root now that the listeners are bound (before any thread starts).
fn drop_privileges(config: &Config) -> Result<(), StartError> {
    let Some(user) = &config.user else { return Ok(()) };
    let mut ids = creds::lookup_user(user).map_err(os("--user"))?;
    if let Some(group) = &config.group {
        ids.gid = creds::lookup_group(group).map_err(os("--group"))?;
    }
    creds::drop_to(ids).map_err(os("dropping privileges (setgroups/setgid/setuid)"))?;
    crate::log!("running as uid {} gid {} (no new privileges)", ids.uid, ids.gid);
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT and a drain: [`bind`], load, [`spawn_workers`],
/// [`banner`], then the acceptor on this thread, then [`drain`].
pub fn run(config: &Config) -> Result<(), StartError> {
    // systemd first: passed sockets are taken over before the process opens a descriptor of its
    // own, and the environment is changed while this is the only thread.
    let passed = systemd::listen_fds().map_err(os("LISTEN_FDS (systemd socket activation)"))?;
    let notify = systemd::Notifier::from_env();
    let nofile = limits::raise_nofile_limit().map_err(os("getrlimit"))?;
    // Huge pages only where asked for (the memfd packs): on a host whose mode is `always`,
    // khugepaged would grow the small, scattered heap 2 MiB at a time. Before Linux 6.18 the
    // kernel refuses, and the host's mode stands (`sys::mem`).
    let _ = crate::sys::mem::huge_pages_only_where_advised();

    let process_started = SystemTime::now();
    // Signals first: a SIGHUP or SIGTERM during a slow start-up (compression) must not kill the
    // process with the default action; it is acted on once the acceptor runs.
    let signals = signal::install().map_err(os("sigaction"))?;
    let bound = bind(config, passed)?;

    // Bind as root (port 80), then drop root, then read the root as the user that will also
    // read it on every reload: a file only root can read must fail now, not at the first reload.
    drop_privileges(config)?;

    let (source_min, large_bodies) = source_min(config.large_bodies);
    let opts = LoadOptions {
        root: config.root.clone(),
        spa_fallback: !config.no_spa_fallback,
        budget: config.cache_budget,
        max_cached_file: config.max_cached_file,
        source_min,
        cache_control: config.cache_control.clone(),
        compress: !config.no_compress,
        site: SiteFiles {
            headers_file: config.headers_file.clone(),
            redirects_file: config.redirects_file.clone(),
            headers: config.headers.clone(),
        },
    };
    // --watch: the watches go in before the first walk, so that a file changed while this load
    // runs is seen (and reloaded once the reload thread runs).
    let (reload, requests) = reload::channel();
    if config.watch {
        let watcher = Watcher::new(opts.root.clone()).map_err(os("--watch (inotify)"))?;
        watcher.spawn(reload.clone()).map_err(os("spawning the --watch thread"))?;
    }
    // Phase 1: identity bodies only; compression follows in the background once we serve.
    let started = Instant::now();
    let (snapshot, report) = cache::load_identity(&opts, Reuse::default()).map_err(StartError::Load)?;
    let load_time = started.elapsed();
    let loaded = Loaded {
        files: snapshot.files(),
        bytes: snapshot.bytes(),
        page_cache: snapshot.composition().page_cache_note(),
        descriptors: snapshot.descriptors(),
        time: load_time,
        pending: report.pending_files,
    };

    let allowed = affinity::allowed_cpus().map_err(os("sched_getaffinity"))?;
    let workers = config.workers.map_or(allowed.len().max(1), |n| n as usize);
    let cpus: Vec<Option<usize>> = (0..workers)
        .map(|i| (!config.no_pin && !allowed.is_empty()).then(|| allowed[i % allowed.len()]))
        .collect();

    let bells =
        (0..workers).map(|_| EventFd::new()).collect::<io::Result<Vec<_>>>().map_err(os("eventfd"))?;
    let handoff = Arc::new(Handoff::new(config.queue_capacity as usize, bells));
    let stats = Arc::new(Stats::new(workers));
    reload::describe(&stats.reload, &snapshot);
    // One reader slot per worker, and one for the reload thread (it reads the snapshot it
    // replaces to reuse what did not change).
    let cache = Arc::new(SnapshotCell::new(snapshot, workers + 1));
    reload::record_phase1(&stats, Trigger::Start, load_time, &report);
    let sources = Arc::new(Sources {
        stats: stats.clone(),
        queue: handoff.clone(),
        cache: cache.clone(),
        cpus: cpus.clone(),
        started: process_started,
    });
    // Before any worker pins itself: the SDK's threads inherit the CPU set of this thread.
    let telemetry = Telemetry::start(&sources).map_err(StartError::Telemetry)?;
    let log_writer = match config.access_log.as_str() {
        "stdout" => Some(LogWriter::spawn(stats.clone()).map_err(os("spawning the access-log thread"))?),
        _ => None,
    };
    let context = reload::Context {
        cache,
        reader: workers,
        opts,
        stats: stats.clone(),
        notify: notify.clone(),
        started,
        phase1: load_time,
    };
    reload::spawn(requests, context).map_err(os("spawning the reload thread"))?;
    let access = || AccessSink {
        text: log_writer.as_ref().map(|w| std::cell::RefCell::new(TextLog::new(w.sender()))),
        otlp: telemetry.as_ref().and_then(|t| t.queue.clone()),
    };
    let io = choose_io(config.io)?;
    let handles = spawn_workers(config, io, &cpus, &handoff, &sources, access)?;

    if bound.reuse_port {
        // Serving from here on: listen, and take every new connection of the address from the
        // process that was there before (see steer_reuseport_group_to_second).
        for l in &bound.listeners {
            socket::start_listening(l.fd.as_fd(), config.backlog).map_err(os("listen"))?;
            socket::steer_reuseport_group_to_second(l.fd.as_fd())
                .map_err(os("setsockopt(SO_ATTACH_REUSEPORT_CBPF)"))?;
        }
    }
    // Keep descriptors for listeners, epoll/eventfd per worker, inotify, reloads, the admin
    // listener's own connections and twice the snapshot's files (during a reload two snapshots
    // are open): a connection refused with 503 beats an accept4 that fails.
    let reserve = 64 + 4 * workers as u64 + 2 * loaded.descriptors;
    let max_connections = config.max_connections.unwrap_or_else(|| nofile.saturating_sub(reserve).max(1));
    banner(config, io, &loaded, &bound, &cpus, nofile, max_connections, telemetry.as_ref());
    if let Some(line) = large_bodies {
        crate::log!("{line}");
    }
    if config.seccomp {
        // Start-up is done: every thread runs, the listeners are bound, root is dropped.
        let allowed = crate::sys::seccomp::install(io == IoBackend::Uring).map_err(os("--seccomp"))?;
        crate::log!("seccomp: {allowed} syscalls allowed, any other kills the process");
    }
    let mut acceptor = Acceptor::new(bound.listeners, signals, handoff.clone(), stats);
    acceptor.max_connections = max_connections;
    notify.ready(&format!("serving {} files ({} bytes) with {workers} workers", loaded.files, loaded.bytes));
    // Returns on SIGINT/SIGTERM.
    acceptor.run(|| reload.request(Trigger::Signal)).map_err(os("poll"))?;

    notify.stopping("draining");
    drain(config, acceptor, &handoff, handles);
    if let Some(w) = log_writer {
        w.finish(Duration::from_secs(1));
    }
    if let Some(t) = telemetry {
        t.shutdown(config.shutdown_grace);
    }
    crate::log!("stopped");
    Ok(())
}

/// The listening sockets, bound (or taken from systemd) and what the banner says of them.
struct Bound {
    listeners: Vec<Endpoint>,
    public: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    from_systemd: bool,
    /// The sockets are bound but not listening yet (`--reuse-port`, see [`bind`]).
    reuse_port: bool,
}

/// What the first load found, for the banner and the descriptor reserve.
struct Loaded {
    files: usize,
    bytes: u64,
    /// Bodies left in their files' page cache, for the banner (`Composition::page_cache_note`).
    page_cache: String,
    descriptors: u64,
    time: Duration,
    /// Files whose compressed variants are still to be built.
    pending: usize,
}

/// Binds the public and admin listeners, or takes over the sockets systemd passed.
fn bind(config: &Config, passed: Option<Vec<Endpoint>>) -> Result<Bound, StartError> {
    // --reuse-port: the sockets are bound now (as root, for port 80) but listen only once this
    // process serves, so that a start-up that fails has taken no connection from the old
    // process. No TCP_DEFER_ACCEPT then: a connection it holds back is invisible to accept(2),
    // so the drain could not take it over, and closing the listener would reset it.
    let reuse_port = config.reuse_port && passed.is_none();
    let listen_opts = ListenOptions {
        backlog: config.backlog,
        defer_accept_secs: if reuse_port { 0 } else { 1 },
        reuse_port,
    };
    let open = |addr: SocketAddr, opts: ListenOptions| {
        if reuse_port { socket::bind(addr, opts) } else { socket::listen(addr, opts) }
            .map_err(|error| StartError::Bind { addr, error })
    };
    let mut bound = Bound {
        listeners: Vec::new(),
        public: Vec::new(),
        admin: None,
        from_systemd: passed.is_some(),
        reuse_port,
    };
    for Endpoint { fd, role } in passed.unwrap_or_default() {
        let addr = socket::local_addr(fd.as_fd()).map_err(os("getsockname"))?;
        if role == Role::Public {
            socket::set_nodelay(fd.as_fd()).map_err(os("setsockopt(TCP_NODELAY)"))?;
            socket::set_defer_accept(fd.as_fd(), 1).map_err(os("setsockopt(TCP_DEFER_ACCEPT)"))?;
            bound.public.push(addr);
        } else {
            bound.admin = Some(addr);
        }
        bound.listeners.push(Endpoint { fd, role });
    }
    for &addr in if bound.from_systemd { &[][..] } else { &config.listen[..] } {
        let fd = open(addr, listen_opts)?;
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux: no syscall per accept.
        socket::set_nodelay(fd.as_fd()).map_err(os("setsockopt(TCP_NODELAY)"))?;
        bound.public.push(socket::local_addr(fd.as_fd()).map_err(os("getsockname"))?);
        bound.listeners.push(Endpoint { fd, role: Role::Public });
    }
    if let (None, AdminListen::On(addr)) = (bound.admin, config.admin_listen) {
        let fd = open(addr, ListenOptions { defer_accept_secs: 0, ..listen_opts })?;
        bound.admin = Some(socket::local_addr(fd.as_fd()).map_err(os("getsockname"))?);
        bound.listeners.push(Endpoint { fd, role: Role::Admin });
    }
    Ok(bound)
}

/// Starts one worker thread per entry of `cpus` (pinned to it, if `Some`).
fn spawn_workers(
    config: &Config,
    io: IoBackend,
    cpus: &[Option<usize>],
    handoff: &Arc<FdHandoff>,
    sources: &Arc<Sources>,
    access: impl Fn() -> AccessSink,
) -> Result<Vec<thread::JoinHandle<()>>, StartError> {
    let mut handles = Vec::with_capacity(cpus.len());
    for (id, &cpu) in cpus.iter().enumerate() {
        let setup = WorkerSetup {
            id,
            cpu,
            handoff: handoff.clone(),
            sources: sources.clone(),
            limits: config.limits(),
            timeouts: config.timeouts(),
            grace: config.shutdown_grace,
            access: access(),
        };
        let handle = thread::Builder::new()
            .name(format!("atomserve-w{id}"))
            .spawn(move || {
                let served = match io {
                    IoBackend::Uring => ring_worker::run(setup),
                    IoBackend::Epoll | IoBackend::Auto => worker::run(setup),
                };
                if let Err(e) = served {
                    // A worker that is gone serves nothing, and the acceptor may already have
                    // claimed its idle bit and rung it for a queued connection: carrying on would
                    // mean lost wake-ups, or 503s forever if every worker failed. End the process
                    // so that its supervisor (systemd, Kubernetes) restarts it.
                    crate::log!(
                        "worker {id} failed: {e}; exiting so that a supervisor can restart atomserve"
                    );
                    std::process::exit(1);
                }
            })
            .map_err(os("spawning a worker thread"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Resolves `--io`: `uring` must work (or start-up fails), `auto` falls back to epoll with one
/// log line saying why — `io_uring_setup` refused (`EPERM`: `kernel.io_uring_disabled`, or a
/// container's seccomp profile), absent (`ENOSYS`), or an operation missing from the probe.
fn choose_io(asked: IoBackend) -> Result<IoBackend, StartError> {
    match asked {
        IoBackend::Epoll => Ok(IoBackend::Epoll),
        IoBackend::Uring => Ring::probe().map(|()| IoBackend::Uring).map_err(os("--io uring: io_uring")),
        IoBackend::Auto => Ok(match Ring::probe() {
            Ok(()) => IoBackend::Uring,
            Err(e) => {
                crate::log!("--io auto: io_uring is not available ({e}); serving with epoll");
                IoBackend::Epoll
            }
        }),
    }
}

/// `--large-bodies` as a size: cached identity bodies from it up are sent from their source
/// file (`cache::Backing::Source`), smaller ones and every body under `memfd` from memory.
/// `auto` decides by the host's shmem huge pages, once at start, and returns the line that says
/// so when it chose the page cache (logged with the banner: a start-up that fails prints only
/// its error).
fn source_min(asked: LargeBodies) -> (u64, Option<String>) {
    match asked {
        LargeBodies::Memfd => (u64::MAX, None),
        LargeBodies::PageCache => (pack::PAGE_CACHE_MIN, None),
        LargeBodies::Auto => {
            let mode = pack::shmem_huge_pages();
            if !pack::small_pages(mode.as_deref()) {
                return (u64::MAX, None);
            }
            let line = format!(
                "--large-bodies auto: bodies of {} KiB and more are sent from their files' page cache \
                 (shmem huge pages are \"{}\" on this host; docs/deploy.md)",
                pack::PAGE_CACHE_MIN / 1024,
                mode.as_deref().unwrap_or("absent")
            );
            (pack::PAGE_CACHE_MIN, Some(line))
        }
    }
}

/// Logs what was started: the version, the root, the addresses, the workers and limits.
#[allow(clippy::too_many_arguments)]
fn banner(
    config: &Config,
    io: IoBackend,
    loaded: &Loaded,
    bound: &Bound,
    cpus: &[Option<usize>],
    nofile: u64,
    max_connections: u64,
    telemetry: Option<&Telemetry>,
) {
    crate::log!(
        "version {}, serving {} ({} files, {} bytes, loaded in {} ms; {} files to compress in the background{})",
        env!("CARGO_PKG_VERSION"),
        config.root.display(),
        loaded.files,
        loaded.bytes,
        loaded.time.as_millis(),
        loaded.pending,
        loaded.page_cache
    );
    let origin = if bound.from_systemd { " (socket from systemd)" } else { "" };
    for addr in &bound.public {
        crate::log!("listening on http://{addr}{origin}");
    }
    if let Some(addr) = bound.admin {
        crate::log!("admin on http://{addr}/healthz (also /metrics, /stats)");
    }
    let pinning = if config.no_pin {
        "unpinned".to_string()
    } else {
        format!("pinned to CPUs {cpus:?}").replace("Some(", "").replace(')', "")
    };
    let workers = cpus.len();
    let io = if io == IoBackend::Uring { "io_uring" } else { "epoll" };
    crate::log!(
        "{workers} workers, {pinning}, {io}; open-file limit {nofile}, max connections {max_connections}"
    );
    if let Some(t) = telemetry {
        let on = [("metrics", t.enabled.metrics), ("traces", t.enabled.traces), ("logs", t.enabled.logs)];
        let names: Vec<&str> = on.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
        crate::log!("OpenTelemetry export on: {}", names.join(", "));
    }
    if config.user.is_none() && creds::effective_uid() == 0 {
        crate::log!("warning: running as root; --user NAME drops privileges after binding");
    }
}

/// Drain: stop accepting first — take what the kernel already queued on each listener, then
/// close them all (acceptor.rs says why) — then tell the workers, and wait for them until the
/// grace period ends or a second SIGTERM comes.
fn drain(config: &Config, mut acceptor: Acceptor, handoff: &FdHandoff, handles: Vec<thread::JoinHandle<()>>) {
    acceptor.close_listeners();
    handoff.stop();
    crate::log!("draining (grace {:?})", config.shutdown_grace);
    let deadline = Instant::now() + config.shutdown_grace + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        let mut fds = [PollFd::readable(acceptor.signals.as_fd())];
        let _ = poll::poll(&mut fds, Some(Duration::from_millis(20)));
        acceptor.signals.drain();
        if signal::take_pending().contains(&Signal::Terminate) || Instant::now() > deadline {
            crate::log!("stopping now, cutting the connections left");
            std::process::exit(1);
        }
    }
    for handle in handles {
        let _ = handle.join();
    }
}
