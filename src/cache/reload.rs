//! The reload thread: builds a new snapshot off the serving path and swaps it in.
//!
//! SIGHUP (via the acceptor) and the file watcher only *ask* for a reload, with a non-blocking
//! send on a channel of capacity one: requests that arrive while one is pending collapse into it.
//! The thread loads the root (never on a worker), publishes the result through the
//! [`SnapshotCell`], then waits for every worker to pass a quiescent point so that the old
//! snapshot is freed before the next reload starts — memory returns to one snapshot's worth.
//! A load that fails (an unreadable file, a root over `--cache-budget`) keeps the old snapshot,
//! logs why and counts it. Each reload is announced to systemd (`RELOADING=1`, then `READY=1`
//! whatever the outcome; see [`crate::systemd`]).

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::{load, LoadOptions, Snapshot, SnapshotCell};
use crate::stats::Stats;
use crate::sync::{thread, Arc};
use crate::systemd::Notifier;

/// Why a reload was asked for (for the log line).
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    Signal,
    Watch,
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

/// Starts the reload thread. It ends when every [`ReloadHandle`] is dropped.
pub fn spawn(
    cache: Arc<SnapshotCell<Snapshot>>,
    opts: LoadOptions,
    stats: Arc<Stats>,
    notify: Notifier,
) -> std::io::Result<ReloadHandle> {
    let (tx, rx) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("atomserve-reload".into())
        .spawn(move || run(&cache, &opts, &stats, &notify, rx))?;
    Ok(ReloadHandle { tx })
}

fn run(
    cache: &SnapshotCell<Snapshot>,
    opts: &LoadOptions,
    stats: &Stats,
    notify: &Notifier,
    rx: Receiver<Trigger>,
) {
    while let Ok(why) = rx.recv() {
        let started = Instant::now();
        notify.reloading();
        match load(opts) {
            Ok(snapshot) => {
                let (files, bytes) = (snapshot.files(), snapshot.bytes());
                let composition = snapshot.composition();
                let generation = cache.publish(snapshot);
                stats.reload.ok.incr();
                stats.reload.describe(files, bytes, composition);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                stats.reload.last_unix_ms.set(now.map_or(0, |d| d.as_millis() as u64));
                let freed = wait_for_reclamation(cache);
                crate::log!(
                    "reloaded ({why:?}): {files} files, {bytes} bytes, generation {generation}, \
                     in {} ms{}",
                    started.elapsed().as_millis(),
                    if freed { "" } else { " (old snapshot still held by a worker)" }
                );
                notify.ready(&format!("serving {files} files ({bytes} bytes), generation {generation}"));
            }
            Err(e) => {
                stats.reload.failed.incr();
                crate::log!("reload ({why:?}) failed, keeping generation {}: {e}", cache.generation());
                notify.ready(&format!("reload failed, serving generation {}: {e}", cache.generation()));
            }
        }
    }
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
