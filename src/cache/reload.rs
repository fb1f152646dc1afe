//! The reload thread: publishes each new state of the root in two phases, and builds compressed
//! variants in the background.
//!
//! SIGHUP (via the acceptor) and the file watcher only *ask* for a reload, with a non-blocking
//! send on a channel of capacity one: requests that arrive while one is pending collapse into it,
//! and one that arrives during a load is served by one more load right after it.
//!
//! A reload is phase 1 ([`load_identity`]): read and hash the tree, take every unchanged body and
//! every variant already built from what is served now, publish that snapshot — readiness,
//! `READY=1` and the log line happen here, milliseconds after the request. Phase 2 follows in the
//! background: [`variants::jobs`] lists the contents still to compress, a few compression threads
//! at `SCHED_IDLE` (nice 19 where that is refused; see [`crate::sys::sched`]) build them, and this
//! thread publishes the results in batches (at most one snapshot every [`BATCH`]) through the
//! same [`SnapshotCell`] swap. A request arriving meanwhile starts the next phase 1 at once; the
//! variants already built carry over by content, and work for contents no longer served is
//! dropped. After each publish the thread waits for every worker to pass a quiescent point, so
//! the retired snapshot is freed before the next build.
//!
//! To read the snapshot it replaces, this thread is a reader of the cell itself (the slot after
//! the workers'), online only while it builds: the same QSBR rules that protect the workers
//! protect it.
//!
//! A load that fails (an unreadable file, a root that vanished, a link swapped to point outside)
//! keeps the old snapshot, logs why and counts it. Each reload is announced to systemd
//! (`RELOADING=1`, then `READY=1` whatever the outcome; see [`crate::systemd`]).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::content::ContentId;
use super::loader::{load_identity, LoadOptions, LoadReport, Reuse};
use super::variants::{self, Built, Done, Job};
use super::{Reader, Snapshot, SnapshotCell};
use crate::stats::{ReloadStats, Stats};
use crate::sync::{thread, Arc};
use crate::sys::sched::{self, Background};
use crate::systemd::Notifier;

/// The most often compression results are published while phase 2 runs.
pub const BATCH: Duration = Duration::from_millis(500);

/// How often the thread looks for a reload request while compression threads are busy.
const POLL: Duration = Duration::from_millis(10);

/// The most compression threads (one per allowed CPU up to this).
const MAX_COMPRESSORS: usize = 4;

/// Why a load happened (for the log line and the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Signal,
    Watch,
}

impl Trigger {
    /// Its number in the `last_trigger` gauge.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// The name for a gauge's value.
    pub fn name(code: u64) -> &'static str {
        match code {
            0 => "start",
            1 => "signal",
            _ => "watch",
        }
    }
}

/// Asks the reload thread for a reload.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: SyncSender<Trigger>,
}

impl ReloadHandle {
    /// Requests a reload; never blocks. A request while one is pending is merged into it.
    pub fn request(&self, why: Trigger) {
        match self.tx.try_send(why) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                crate::log!("reload thread is gone; ignoring {why:?}")
            }
        }
    }
}

/// The receiving end of the reload requests, until the thread starts.
pub struct Requests(Receiver<Trigger>);

/// The request channel: a handle can exist (and be used, by `--watch`) before the first load.
pub fn channel() -> (ReloadHandle, Requests) {
    let (tx, rx) = mpsc::sync_channel(1);
    (ReloadHandle { tx }, Requests(rx))
}

/// What the reload thread works with.
pub struct Context {
    pub cache: Arc<SnapshotCell<Snapshot>>,
    /// The cell's reader slot that belongs to this thread.
    pub reader: usize,
    pub opts: LoadOptions,
    pub stats: Arc<Stats>,
    pub notify: Notifier,
    /// When the first phase 1 (at start-up) began and ended.
    pub started: Instant,
    pub phase1: Duration,
}

/// Starts the reload thread; it ends when every [`ReloadHandle`] is dropped.
pub fn spawn(requests: Requests, ctx: Context) -> io::Result<()> {
    thread::Builder::new().name("atomserve-reload".into()).spawn(move || {
        let reader = ctx.cache.reader(ctx.reader);
        match Coordinator::new(&ctx, reader) {
            Ok(mut c) => c.run(requests.0),
            Err(e) => crate::log!("no compression threads ({e}): serving identity bodies only"),
        }
    })?;
    Ok(())
}

/// Messages from the compression threads.
enum Msg {
    Ready(io::Result<Background>),
    Done(usize, ContentId, io::Result<Done>),
}

/// Phase 2 of the latest load, for its log line and gauges.
struct Round {
    trigger: Trigger,
    /// When phase 1 published (phase 2 starts there).
    published: Instant,
    files: usize,
    bytes: u64,
    complete: bool,
}

/// The reload thread's state.
struct Coordinator<'c> {
    ctx: &'c Context,
    reader: Reader<'c, Snapshot>,
    built: Built,
    queue: VecDeque<Job>,
    in_flight: HashSet<ContentId>,
    idle: Vec<usize>,
    compressors: Vec<Sender<Job>>,
    results: Receiver<Msg>,
    batch: Vec<Done>,
    last_publish: Instant,
    round: Round,
    class: Option<Background>,
}

impl<'c> Coordinator<'c> {
    fn new(ctx: &'c Context, reader: Reader<'c, Snapshot>) -> io::Result<Self> {
        let n = thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_COMPRESSORS);
        let (tx, results) = mpsc::channel();
        let mut compressors = Vec::with_capacity(n);
        for id in 0..n {
            let (job_tx, jobs) = mpsc::channel::<Job>();
            let tx = tx.clone();
            thread::Builder::new().name(format!("atomserve-zip{id}")).spawn(move || {
                let _ = tx.send(Msg::Ready(sched::background_current_thread()));
                while let Ok(job) = jobs.recv() {
                    let done = job.run();
                    if tx.send(Msg::Done(id, job.content, done)).is_err() {
                        return;
                    }
                }
            })?;
            compressors.push(job_tx);
        }
        // Each thread says at once which class it got (for the log line).
        let mut class = None;
        for _ in 0..n {
            match results.recv() {
                Ok(Msg::Ready(Ok(got))) => class = Some(got),
                Ok(Msg::Ready(Err(e))) => crate::log!("a compression thread runs at normal priority: {e}"),
                _ => {}
            }
        }
        let mut c = Coordinator {
            ctx,
            reader,
            built: Built::default(),
            queue: VecDeque::new(),
            in_flight: HashSet::new(),
            idle: (0..n).collect(),
            compressors,
            results,
            batch: Vec::new(),
            last_publish: Instant::now(),
            round: Round {
                trigger: Trigger::Start,
                published: ctx.started + ctx.phase1,
                files: 0,
                bytes: 0,
                complete: false,
            },
            class,
        };
        c.requeue(None);
        Ok(c)
    }

    fn run(&mut self, requests: Receiver<Trigger>) {
        loop {
            self.dispatch();
            let request = if self.in_flight.is_empty() {
                self.complete_round();
                match requests.recv() {
                    Ok(t) => Some(t),
                    Err(_) => return, // every handle dropped: the server is stopping
                }
            } else {
                match requests.recv_timeout(POLL) {
                    Ok(t) => Some(t),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            self.collect();
            if let Some(trigger) = request {
                self.publish_batch(); // so that the load can take what is built already
                self.reload(trigger);
            } else if !self.batch.is_empty()
                && (self.in_flight.is_empty() || self.last_publish.elapsed() >= BATCH)
            {
                self.publish_batch();
            }
        }
    }

    /// Hands queued jobs to idle compression threads.
    fn dispatch(&mut self) {
        while let Some(&id) = self.idle.last() {
            let Some(job) = self.queue.pop_front() else { return };
            self.idle.pop();
            self.in_flight.insert(job.content);
            if self.compressors[id].send(job).is_err() {
                crate::log!("compression thread {id} is gone");
            }
        }
    }

    /// Takes every result that has arrived.
    fn collect(&mut self) {
        while let Ok(msg) = self.results.try_recv() {
            match msg {
                Msg::Ready(_) => {} // all received in `new`
                Msg::Done(id, content, done) => {
                    self.idle.push(id);
                    self.in_flight.remove(&content);
                    match done {
                        Ok(done) => self.batch.push(done),
                        // A source file changed in place: its entry stays identity-only and
                        // pending until the reload that change causes (or the next requeue).
                        Err(e) if variants::is_stale(&e) => {
                            crate::log!("not compressing a body of {} bytes: {e}", content.len);
                        }
                        // Give up on this content (identity only) rather than retry forever.
                        Err(e) => {
                            crate::log!("compressing a body of {} bytes failed: {e}", content.len);
                            self.batch.push(Done::nothing(
                                content,
                                super::snapshot::Codings { gzip: true, zstd: true, br: true },
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Phase 1 of a reload: load, reusing what is served now, and publish.
    fn reload(&mut self, trigger: Trigger) {
        let (ctx, started) = (self.ctx, Instant::now());
        ctx.notify.reloading();
        self.reader.online();
        let loaded = {
            let current = self.reader.current();
            load_identity(&ctx.opts, Reuse { previous: Some(&current), built: Some(&self.built) })
        };
        self.reader.offline();
        let stats = &ctx.stats.reload;
        match loaded {
            Ok((snapshot, report)) => {
                let (files, bytes) = (snapshot.files(), snapshot.bytes());
                let page_cache = snapshot.composition().page_cache_note();
                let (generation, freed) = self.publish(snapshot);
                let phase1 = started.elapsed();
                stats.ok.incr();
                record_phase1(&ctx.stats, trigger, phase1, &report);
                crate::log!(
                    "reloaded ({trigger:?}): {files} files, {bytes} bytes, generation {generation}, in {} ms; \
                     {} files ({} bytes) unchanged, {} bytes new, {} files to compress{page_cache}{}",
                    phase1.as_millis(),
                    report.reused_files,
                    report.reused_bytes,
                    report.built_bytes,
                    report.pending_files,
                    if freed { "" } else { " (old snapshot still held by a worker)" }
                );
                ctx.notify.ready(&format!("serving {files} files ({bytes} bytes), generation {generation}"));
                self.round =
                    Round { trigger, published: Instant::now(), files: 0, bytes: 0, complete: false };
            }
            Err(e) => {
                stats.failed.incr();
                let generation = ctx.cache.generation();
                crate::log!("reload ({trigger:?}) failed, keeping generation {generation}: {e}");
                ctx.notify.ready(&format!("reload failed, serving generation {generation}: {e}"));
            }
        }
    }

    /// Phase 2: attaches the variants built since the last publish, and publishes.
    fn publish_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let done = std::mem::take(&mut self.batch);
        let files = done.len();
        let bytes = self.built.add(done);
        self.round.files += files;
        self.round.bytes += bytes;
        self.ctx.stats.reload.compressed_files.add(files as u64);
        self.ctx.stats.reload.built_bytes.add(bytes);
        self.reader.online();
        let next = {
            let current = self.reader.current();
            variants::apply(&current, &self.built)
        };
        self.reader.offline();
        if let Some(next) = next {
            self.publish(next);
        }
        self.last_publish = Instant::now();
    }

    /// Publishes `snapshot`, queues the work it still needs, waits until the one it replaced
    /// is freed. Returns the generation and whether the old snapshot was freed.
    fn publish(&mut self, mut snapshot: Snapshot) -> (u64, bool) {
        // This thread is the only publisher, so the next generation is this one's.
        snapshot.set_serial(self.ctx.cache.generation() + 1);
        let stats = &self.ctx.stats.reload;
        describe(stats, &snapshot);
        stats.pending_files.set(snapshot.pending() as u64);
        stats.last_unix_ms.set(unix_ms());
        self.requeue(Some(&snapshot));
        self.built.retain(&snapshot);
        let generation = self.ctx.cache.publish(snapshot);
        let freed = wait_for_reclamation(&self.ctx.cache);
        crate::sys::mem::release_free_memory();
        (generation, freed)
    }

    /// Rebuilds the queue from what `snapshot` (or the live one) still needs: work for contents
    /// no longer served is dropped, work already under way is not queued twice.
    fn requeue(&mut self, snapshot: Option<&Snapshot>) {
        let jobs = match snapshot {
            Some(s) => variants::jobs(s, &self.in_flight),
            None => {
                self.reader.online();
                let jobs = variants::jobs(&self.reader.current(), &self.in_flight);
                self.reader.offline();
                jobs
            }
        };
        self.queue = jobs.into();
    }

    /// Logs the end of phase 2 once nothing is queued or under way.
    fn complete_round(&mut self) {
        if self.round.complete || !self.queue.is_empty() {
            return;
        }
        self.round.complete = true;
        let took = self.round.published.elapsed();
        self.ctx.stats.reload.variants_us.set(took.as_micros() as u64);
        let class = self.class.map_or("normal priority", Background::describe);
        crate::log!(
            "variants complete ({:?}, generation {}): {} files compressed to {} bytes in {} ms at {class} \
             on {} threads",
            self.round.trigger,
            self.ctx.cache.generation(),
            self.round.files,
            self.round.bytes,
            took.as_millis(),
            self.compressors.len()
        );
    }
}

/// Records what the snapshot just published holds. Only the thread that publishes calls it (the
/// reload thread; `server::run` before that thread exists).
pub fn describe(r: &ReloadStats, snapshot: &Snapshot) {
    let c = snapshot.composition();
    r.files.set(snapshot.files() as u64);
    r.bytes.set(snapshot.bytes());
    r.identity_bytes.set(c.identity_bytes);
    r.compressible_bytes.set(c.compressible_bytes);
    r.compressed_bytes.set(c.compressed_bytes);
    r.disk_files.set(c.disk_files);
    r.page_cache_files.set(c.page_cache_files);
    r.page_cache_bytes.set(c.page_cache_bytes);
}

/// Records phase 1 of a load in the reload gauges and counters.
pub fn record_phase1(stats: &Stats, trigger: Trigger, took: Duration, report: &LoadReport) {
    let r = &stats.reload;
    r.last_trigger.set(trigger.code());
    r.identity_us.set(took.as_micros() as u64);
    r.variants_us.set(0);
    r.reused_files.add(report.reused_files as u64);
    r.reused_bytes.add(report.reused_bytes);
    r.built_bytes.add(report.built_bytes);
    r.pending_files.set(report.pending_files as u64);
}

fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

/// Frees retired snapshots as soon as every worker has passed a quiescent point. Busy workers
/// pass one every loop turn and sleeping ones are offline, so this takes microseconds to a few
/// milliseconds; it gives up after 5 s (a later reload frees what is left).
fn wait_for_reclamation(cache: &SnapshotCell<Snapshot>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.reclaim() > 0 {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_micros(200));
    }
    true
}
