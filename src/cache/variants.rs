//! Phase 2 of a load: the compressed variants, built after the identity snapshot is served.
//!
//! Phase 1 ([`super::loader`]) marks every entry whose gzip or brotli variant is still to be
//! built as `pending`. [`jobs`] lists that work once per distinct content (two paths with the
//! same bytes are compressed once), largest first so that the background threads finish
//! together; [`Job::run`] compresses one body (on a background thread, see [`super::reload`]);
//! [`Built::add`] keeps the results by content — a batch's large variants packed into one new
//! memfd — and [`apply`] makes the next snapshot: the current one with those variants attached.
//!
//! `Built` outlives snapshots: a reload finds every variant already built for an unchanged
//! content there, so it compresses only what changed. It holds only contents the live snapshot
//! still serves ([`Built::retain`]), so it never holds memory that no snapshot uses.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use super::compress;
use super::content::ContentId;
use super::pack::{self, ZERO_COPY_MIN};
use super::snapshot::{Backing, Body, Codings, Repr, Snapshot};
use crate::http::encoding::Coding;
use crate::sys::file;

/// One content to compress.
pub struct Job {
    pub content: ContentId,
    /// The identity bytes.
    source: Body,
    /// The codings still wanted.
    pub codings: Codings,
}

impl Job {
    /// Compresses the body into every coding still wanted (seconds of CPU for a large bundle at
    /// brotli 11: only ever called off the serving path).
    pub fn run(&self) -> io::Result<Done> {
        let copy;
        let bytes: &[u8] = match &self.source {
            Body::Heap(bytes) => bytes,
            Body::Packed(stretch) => {
                let mut buf = vec![0u8; stretch.len as usize];
                file::pread_exact(std::os::fd::AsFd::as_fd(&*stretch.fd), &mut buf, stretch.offset)?;
                // A source file (`Backing::Source`) may have been rewritten in place since the
                // load hashed it: a variant of other bytes must not be kept under this content.
                if stretch.backing == Backing::Source && ContentId::of(&buf) != self.content {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "changed since it was loaded"));
                }
                copy = buf;
                &copy
            }
        };
        let made = Coding::COMPRESSED
            .into_iter()
            .filter(|&c| self.codings.has(c))
            .map(|c| {
                let variant = match c {
                    Coding::Gzip => compress::gzip_variant(bytes),
                    Coding::Zstd => compress::zstd_variant(bytes),
                    _ => compress::brotli_variant(bytes),
                };
                (c, variant)
            })
            .collect();
        Ok(Done { content: self.content, made })
    }
}

/// A finished job: per coding asked, the variant's bytes, or `None` when it was not worth it.
pub struct Done {
    pub content: ContentId,
    /// Each coding asked, with its variant (`None`: not worth keeping).
    pub made: Vec<(Coding, Option<Vec<u8>>)>,
}

impl Done {
    /// A job given up on: every coding of `codings` recorded as not worth it.
    pub fn nothing(content: ContentId, codings: Codings) -> Done {
        Done {
            content,
            made: Coding::COMPRESSED.into_iter().filter(|&c| codings.has(c)).map(|c| (c, None)).collect(),
        }
    }

    /// Bytes of the variants made.
    pub fn bytes(&self) -> u64 {
        self.made.iter().filter_map(|(_, v)| v.as_ref()).map(|v| v.len() as u64).sum()
    }
}

/// The work pending in `snapshot`, one job per content not in `skip` (already queued or under
/// way), largest first.
pub fn jobs(snapshot: &Snapshot, skip: &HashSet<ContentId>) -> Vec<Job> {
    let mut by_content: HashMap<ContentId, Job> = HashMap::new();
    for (_, e) in snapshot.entries() {
        let (Some(content), Some(source)) = (e.content, e.identity.body()) else { continue };
        if !e.pending.any() || skip.contains(&content) {
            continue;
        }
        let job = by_content.entry(content).or_insert(Job { content, source, codings: Codings::NONE });
        for coding in Coding::COMPRESSED {
            let wanted = job.codings.has(coding) || e.pending.has(coding);
            job.codings.set(coding, wanted);
        }
    }
    let mut jobs: Vec<Job> = by_content.into_values().collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.content.len));
    jobs
}

/// Whether a [`Job::run`] error means its source file changed since the load (rewritten or
/// shortened in place): nothing is to be recorded for the content — the reload the change
/// causes brings the new content — rather than "not worth compressing".
pub fn is_stale(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof)
}

/// A built variant: its body and entity tag; `None` when it was not worth keeping.
pub type Variant = Option<(Body, Box<[u8]>)>;

/// Variants built so far, by content and coding.
#[derive(Default)]
pub struct Built {
    map: HashMap<(ContentId, Coding), Variant>,
}

impl Built {
    /// What was built for `content` in `coding`: `None` if nothing yet.
    pub fn get(&self, content: ContentId, coding: Coding) -> Option<&Variant> {
        self.map.get(&(content, coding))
    }

    /// Keeps a batch of results: large variants go into one new memfd (or stay on the heap if
    /// none can be made), small ones on the heap. Returns the variant bytes added.
    pub fn add(&mut self, done: Vec<Done>) -> u64 {
        let mut results = Vec::new();
        for d in done {
            for (coding, variant) in d.made {
                results.push((d.content, coding, variant));
            }
        }
        let large: Vec<&[u8]> = results
            .iter()
            .filter_map(|(_, _, v)| v.as_deref().filter(|v| v.len() >= ZERO_COPY_MIN))
            .collect();
        let mut packed = pack::pack(&large)
            .unwrap_or_else(|e| {
                crate::log!("no memfd for {} large variants, kept on the heap: {e}", large.len());
                Vec::new()
            })
            .into_iter();
        let mut added = 0;
        for (content, coding, variant) in results {
            let variant = variant.map(|bytes| {
                added += bytes.len() as u64;
                let tag = ContentId::of(&bytes).etag(coding.token());
                let body = match (bytes.len() >= ZERO_COPY_MIN).then(|| packed.next()).flatten() {
                    Some(stretch) => Body::Packed(stretch),
                    None => Body::Heap(Arc::from(bytes)),
                };
                (body, tag)
            });
            self.map.insert((content, coding), variant);
        }
        added
    }

    /// Forgets every content `snapshot` no longer serves (its memory goes with the last snapshot
    /// that used it).
    pub fn retain(&mut self, snapshot: &Snapshot) {
        let live: HashSet<ContentId> = snapshot.entries().filter_map(|(_, e)| e.content).collect();
        self.map.retain(|(content, _), _| live.contains(content));
    }

    /// Variants held (built or found not worth building).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The next snapshot: `snapshot` with every pending variant that `built` now has attached.
/// `None` when there is nothing to attach.
pub fn apply(snapshot: &Snapshot, built: &Built) -> Option<Snapshot> {
    let ready: Vec<Vec<u8>> = snapshot
        .entries()
        .filter(|(_, e)| {
            let has = |c: Coding| e.content.is_some_and(|id| built.get(id, c).is_some());
            Coding::COMPRESSED.into_iter().any(|c| e.pending.has(c) && has(c))
        })
        .map(|(key, _)| key.to_vec())
        .collect();
    if ready.is_empty() {
        return None;
    }
    let mut next = snapshot.clone();
    for key in ready {
        let Some(entry) = next.entry_mut(&key) else { continue };
        let Some(content) = entry.content else { continue };
        for coding in Coding::COMPRESSED {
            let Some(variant) = built.get(content, coding).filter(|_| entry.pending.has(coding)) else {
                continue;
            };
            entry.pending.set(coding, false);
            let repr = variant.clone().map(|(body, tag)| Repr::render(&entry.fields(), body, tag, coding));
            *entry.variant_mut(coding) = repr;
        }
    }
    next.freeze();
    Some(next)
}
