//! An immutable snapshot of the document root: every file's bytes, MIME type and pre-rendered
//! response head, keyed by URL path.
//!
//! Nothing in a `Snapshot` changes after it is built, so any number of workers read it at once
//! with no synchronisation beyond the one that handed them the pointer. A reload builds a new
//! snapshot and swaps it in whole; readers never see a half-built one.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::content::ContentId;
use crate::http::encoding::Coding;
use crate::http::response::{self, FileMeta};
use crate::http::{date, path};
use crate::site::SiteRules;
use crate::sys::file;

/// One representation of a file: its bytes and pre-rendered heads. The byte buffers are
/// reference-counted so that a response still being sent when a reload retires this snapshot can
/// keep them alive (`OutQueue::turn`); the common path borrows them without touching the count.
/// A clone shares every buffer: that is how a reload keeps an unchanged representation.
#[derive(Clone)]
pub struct Repr {
    /// Status line and fixed fields of the `200 OK`, up to (not including) the per-response tail.
    pub head: Arc<[u8]>,
    /// The same for `304 Not Modified` (validators and caching fields, no body fields).
    pub not_modified: Arc<[u8]>,
    /// The bytes as sent.
    pub body: Arc<[u8]>,
    /// Strong entity tag, quoted: `"<len hex>-<hash hex>"` of the representation's own bytes
    /// ([`ContentId::etag`]), plus `-gzip`/`-br` for a compressed one — the same on every restart
    /// and replica. For a file served from disk: `"<len hex>-m<mtime hex>"` (nginx's choice:
    /// hashing gigabytes at every load would cost more than it is worth).
    pub etag: Box<[u8]>,
    /// A body sent with sendfile(2) from a descriptor (a large cached body in a memfd or in its
    /// source file's page cache, or a file too large for memory); `body` is then empty.
    pub file: Option<Arc<DiskFile>>,
}

impl Repr {
    /// Length of the body in bytes.
    // A representation is not a collection: nothing asks whether one is empty.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(self.body.len() as u64, |f| f.len)
    }

    /// The body's bytes as a [`Body`], for a reload to reuse and phase 2 to compress; none for a
    /// file sent from disk unread (its bytes were never hashed: nothing can vouch for them).
    pub fn body(&self) -> Option<Body> {
        match &self.file {
            Some(f) if f.backing != Backing::Disk => Some(Body::Packed(f.clone())),
            Some(_) => None,
            None => Some(Body::Heap(self.body.clone())),
        }
    }

    /// Renders a representation of a file with `fields`: its heads for `body`, tagged `etag`,
    /// in `coding`.
    pub fn render(fields: &Fields<'_>, body: Body, etag: Box<[u8]>, coding: Coding) -> Repr {
        let last_modified = date::format(fields.modified);
        let m = FileMeta {
            content_type: fields.content_type,
            encoding: coding.token(),
            vary: fields.vary,
            len: body.len(),
            etag: &etag,
            last_modified: &last_modified,
            cache_control: fields.cache_control,
            headers: fields.headers,
        };
        let head = response::render_file_head(&m).into();
        let not_modified = response::render_not_modified_head(&m).into();
        let (body, file) = match body {
            Body::Heap(bytes) => (bytes, None),
            Body::Packed(stretch) => (Arc::from(&[][..]), Some(stretch)),
        };
        Repr { head, not_modified, body, etag, file }
    }
}

/// What every representation of one file shares in its heads.
pub struct Fields<'a> {
    pub content_type: &'a str,
    /// Unix seconds (`Last-Modified`).
    pub modified: u64,
    pub cache_control: &'a str,
    /// `Vary: Accept-Encoding`.
    pub vary: bool,
    /// Custom field lines from `_headers` and `--header` (see `crate::site::headers`).
    pub headers: &'a [u8],
}

/// A body sent with sendfile(2): a stretch of a memfd that holds large cached bodies back to
/// back (see [`super::pack`]), or a file opened beneath the root at load time (see
/// [`Backing`]). Kept for as long as a snapshot or a response still sends from it; for a
/// stretch of a memfd, exactly one `DiskFile` exists (shared through `Arc`), and its drop gives
/// the stretch's memory back.
pub struct DiskFile {
    /// Shared by all the bodies of the memfd.
    pub fd: Arc<OwnedFd>,
    /// Where the body starts in the file (0 for a source file).
    pub offset: u64,
    /// The body's length (for a source file, its size when it was opened: what
    /// `Content-Length` promised).
    pub len: u64,
    /// Where the bytes live: a memfd of ours, the source file read at load, or one not read.
    pub backing: Backing,
}

/// Where a [`DiskFile`]'s bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A stretch of a memfd of atomserve's own: in memory, counted in the snapshot's bytes, at a
    /// page-aligned offset, and immune to changes of the source file.
    Memfd,
    /// The source file itself, read and hashed at load (its tag is its content's) and sent from
    /// the kernel's page cache: the cheaper path for large bodies on a host whose shmem gets no
    /// huge pages (`--large-bodies`, `crate::config::LargeBodies`). Holds no memory of
    /// atomserve's; a file rewritten in place is served as it is now until the reload its
    /// change causes.
    Source,
    /// The source file, not read (over `--max-cached-file` or past the budget): tagged by size
    /// and mtime.
    Disk,
}

impl Drop for DiskFile {
    /// The last snapshot and the last response that sent from this stretch are gone: give its
    /// pages back (the memfd itself closes with its last stretch). Best effort: a failure only
    /// keeps the memory until the memfd closes. Runs on the reload thread when a retired snapshot
    /// is freed, or on a worker when the last response from a retired body ends.
    fn drop(&mut self) {
        if self.backing == Backing::Memfd && self.len > 0 && Arc::strong_count(&self.fd) > 1 {
            let pages = self.len.div_ceil(file::PAGE) * file::PAGE;
            let _ = file::punch_hole(self.fd.as_fd(), self.offset, pages);
        }
    }
}

/// A body's bytes, where they live: on the heap, or a stretch of a memfd.
#[derive(Clone)]
pub enum Body {
    Heap(Arc<[u8]>),
    Packed(Arc<DiskFile>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Heap(b) => b.len() as u64,
            Body::Packed(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Codings of compressed variants (a small set: which ones are wanted, pending, present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Codings {
    pub gzip: bool,
    pub zstd: bool,
    pub br: bool,
}

impl Codings {
    pub const NONE: Codings = Codings { gzip: false, zstd: false, br: false };

    pub fn any(self) -> bool {
        self.gzip || self.zstd || self.br
    }

    /// Whether `coding` is in the set (identity never is).
    pub fn has(self, coding: Coding) -> bool {
        match coding {
            Coding::Gzip => self.gzip,
            Coding::Zstd => self.zstd,
            Coding::Br => self.br,
            Coding::Identity => false,
        }
    }

    /// Puts `coding` in the set or takes it out.
    pub fn set(&mut self, coding: Coding, on: bool) {
        match coding {
            Coding::Gzip => self.gzip = on,
            Coding::Zstd => self.zstd = on,
            Coding::Br => self.br = on,
            Coding::Identity => {}
        }
    }
}

/// One cached file: identity, and gzip/zstd/brotli variants when they were worth building.
#[derive(Clone)]
pub struct Entry {
    pub identity: Repr,
    pub gzip: Option<Repr>,
    pub zstd: Option<Repr>,
    pub br: Option<Repr>,
    /// `Content-Type` value (by extension, or from `_headers`).
    pub content_type: Arc<str>,
    /// Modification time, Unix seconds (`Last-Modified`).
    pub modified: u64,
    /// `Cache-Control` value.
    pub cache_control: Box<str>,
    /// Custom field lines from `_headers` and `--header`, already in `identity`'s heads and
    /// its variants', and written into the heads of 206s and 416s.
    pub headers: Arc<[u8]>,
    /// The identity bytes' [`ContentId`] (none for a file sent from disk, which is not read).
    pub content: Option<ContentId>,
    /// Responses say `Vary: Accept-Encoding`: a variant exists, or may (the file is a candidate
    /// for compression). Fixed at load, so that it does not change when variants arrive.
    pub vary: bool,
    /// Variants not built yet: the background compression will add them (or find them not worth
    /// it) and publish a snapshot with this cleared.
    pub pending: Codings,
}

impl Entry {
    /// The fields its heads are rendered with.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            content_type: &self.content_type,
            modified: self.modified,
            cache_control: &self.cache_control,
            vary: self.vary,
            headers: &self.headers,
        }
    }

    /// The representation for a negotiated coding (identity if that variant does not exist).
    pub fn repr(&self, coding: Coding) -> (&Repr, Coding) {
        match self.variant(coding) {
            Some(repr) => (repr, coding),
            None => (&self.identity, Coding::Identity),
        }
    }

    /// The compressed variant in `coding`, if it exists.
    pub fn variant(&self, coding: Coding) -> Option<&Repr> {
        match coding {
            Coding::Gzip => self.gzip.as_ref(),
            Coding::Zstd => self.zstd.as_ref(),
            Coding::Br => self.br.as_ref(),
            Coding::Identity => None,
        }
    }

    /// The slot of the compressed variant in `coding` (identity has none: `gzip` is returned
    /// for it, which no caller asks).
    pub fn variant_mut(&mut self, coding: Coding) -> &mut Option<Repr> {
        match coding {
            Coding::Zstd => &mut self.zstd,
            Coding::Br => &mut self.br,
            _ => &mut self.gzip,
        }
    }

    /// Whether responses vary with `Accept-Encoding` (a compressed variant exists, or may).
    pub fn varies(&self) -> bool {
        self.vary
    }

    /// Every representation.
    pub fn reprs(&self) -> impl Iterator<Item = &Repr> {
        [Some(&self.identity), self.gzip.as_ref(), self.zstd.as_ref(), self.br.as_ref()].into_iter().flatten()
    }

    /// Descriptors this entry holds open of its own: its source file, when it is sent from there
    /// (the memfds of large bodies are shared, counted once each by [`Snapshot::freeze`]).
    pub fn descriptors(&self) -> u64 {
        [Some(&self.identity), self.gzip.as_ref(), self.zstd.as_ref(), self.br.as_ref()]
            .iter()
            .flatten()
            .filter(|r| r.file.as_ref().is_some_and(|f| f.backing != Backing::Memfd))
            .count() as u64
    }

    /// Bytes held in memory, all representations together (a source file holds none: its pages
    /// are the kernel's page cache).
    pub fn bytes(&self) -> u64 {
        let held = |r: &Repr| match &r.file {
            Some(f) if f.backing == Backing::Memfd => f.len,
            Some(_) => 0,
            None => r.body.len() as u64,
        };
        held(&self.identity)
            + self.gzip.as_ref().map_or(0, held)
            + self.zstd.as_ref().map_or(0, held)
            + self.br.as_ref().map_or(0, held)
    }
}

/// Sizes that describe a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Composition {
    /// Every file's identity length (files sent from disk included).
    pub identity_bytes: u64,
    /// Identity bytes of the files that have a compressed variant…
    pub compressible_bytes: u64,
    /// …and the bytes of their smallest variant: the saving is `1 - compressed / compressible`.
    pub compressed_bytes: u64,
    /// Files sent from disk (over `--max-cached-file` or past the budget).
    pub disk_files: u64,
    /// Identity bodies sent from their own file's page cache (`Backing::Source`): not in
    /// [`Snapshot::bytes`], which counts what the snapshot holds.
    pub page_cache_files: u64,
    pub page_cache_bytes: u64,
}

impl Composition {
    /// `"; N bodies (B bytes) sent from their files' page cache"`, or nothing: for the log lines
    /// that say how many bytes a load holds, which those bodies are not part of.
    pub fn page_cache_note(&self) -> String {
        if self.page_cache_files == 0 {
            return String::new();
        }
        format!(
            "; {} bodies ({} bytes) sent from their files' page cache",
            self.page_cache_files, self.page_cache_bytes
        )
    }
}

/// What a request path resolves to.
pub enum Lookup<'s> {
    /// A file to send.
    File(&'s Entry),
    /// A directory named without its trailing slash: redirect to `key/`.
    AddSlash,
    /// Nothing here.
    NotFound,
}

/// The hash of the snapshot's tables: foldhash, seeded at random per process like std's
/// SipHash, but far cheaper on a short path — about 2.4× fewer instructions for a lookup of
/// `/index.html` under callgrind (`benches/hot_path.rs` `lookup`). Its resistance to crafted collisions is weaker than SipHash's, which matters less here: the keys
/// are the file names under the document root, fixed when the snapshot is built, and a request
/// only probes — it cannot insert.
type KeyHash = foldhash::fast::RandomState;

/// The document root as of one load.
#[derive(Clone)]
pub struct Snapshot {
    files: HashMap<Box<[u8]>, Entry, KeyHash>,
    /// Directories that have an `index.html`, for the `/dir` → `/dir/` redirect.
    dirs: HashSet<Box<[u8]>, KeyHash>,
    /// The built-in SPA fallback is on: `--no-spa-fallback` was not given, and no `_redirects`
    /// rule for `/*` replaces it.
    spa_fallback: bool,
    /// `_headers`, `_redirects` and `--header`, compiled for this load.
    site: Arc<SiteRules>,
    bytes: u64,
    descriptors: u64,
    /// `--cache-control`: for files that are neither HTML nor fingerprinted, and for the 301s
    /// that add a slash to a directory.
    default_cache_control: Box<str>,
    /// Which publication this is (0: the one loaded at start-up), set by the reload thread just
    /// before it publishes. What a worker keeps about a snapshot (`serve::rendered`) is keyed by
    /// it: a new snapshot may be allocated where a freed one was, so its address says nothing.
    serial: u64,
}

impl Snapshot {
    /// An empty snapshot; the loader adds files and then freezes it by handing it out.
    pub(crate) fn new(spa_fallback: bool, default_cache_control: &str, site: Arc<SiteRules>) -> Self {
        Snapshot {
            files: HashMap::default(),
            dirs: HashSet::default(),
            spa_fallback: spa_fallback && !site.redirects.has_catch_all(),
            site,
            bytes: 0,
            descriptors: 0,
            default_cache_control: default_cache_control.into(),
            serial: 0,
        }
    }

    /// Which publication this is: see the field.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub(crate) fn set_serial(&mut self, serial: u64) {
        self.serial = serial;
    }

    /// The `--cache-control` value.
    pub fn default_cache_control(&self) -> &str {
        &self.default_cache_control
    }

    /// The site's rules: `_headers`, `_redirects`, `--header`.
    pub fn site(&self) -> &SiteRules {
        &self.site
    }

    /// The built-in SPA fallback is on (see [`Snapshot::resolve`]).
    pub fn spa_fallback(&self) -> bool {
        self.spa_fallback
    }

    /// Adds a file; [`freeze`](Self::freeze) must follow the last insert.
    pub(crate) fn insert(&mut self, key: Vec<u8>, entry: Entry) {
        if let Some(dir) = key.strip_suffix(b"/index.html") {
            let dir = if dir.is_empty() { b"/".as_slice() } else { dir };
            self.dirs.insert(dir.into());
        }
        self.files.insert(key.into_boxed_slice(), entry);
    }

    /// Replaces the entry of an existing key ([`freeze`](Self::freeze) must follow).
    pub(crate) fn entry_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.files.get_mut(key)
    }

    /// Counts what the snapshot holds, once all entries are in: bytes, and descriptors (files
    /// on disk, plus each distinct memfd of large bodies once).
    pub(crate) fn freeze(&mut self) {
        self.bytes = self.files.values().map(Entry::bytes).sum();
        let disk: u64 = self.files.values().map(Entry::descriptors).sum();
        let memfds: HashSet<*const OwnedFd> = self
            .files
            .values()
            .flat_map(Entry::reprs)
            .filter_map(|r| {
                r.file.as_ref().filter(|f| f.backing == Backing::Memfd).map(|f| Arc::as_ptr(&f.fd))
            })
            .collect();
        self.descriptors = disk + memfds.len() as u64;
    }

    /// Every file, by key (in no particular order).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.files.iter().map(|(k, e)| (&**k, e))
    }

    /// Files whose variants are still being built.
    pub fn pending(&self) -> usize {
        self.files.values().filter(|e| e.pending.any()).count()
    }

    /// Number of files.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Total bytes held, compressed variants included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the snapshot is made of, for the dashboard (computed on demand: at load time).
    pub fn composition(&self) -> Composition {
        let mut c = Composition::default();
        for entry in self.files.values() {
            let identity = entry.identity.len();
            c.identity_bytes += identity;
            match entry.identity.file.as_ref().map(|f| f.backing) {
                Some(Backing::Disk) => c.disk_files += 1,
                Some(Backing::Source) => {
                    c.page_cache_files += 1;
                    c.page_cache_bytes += identity;
                }
                Some(Backing::Memfd) | None => {}
            }
            let smallest = [entry.gzip.as_ref(), entry.zstd.as_ref(), entry.br.as_ref()]
                .into_iter()
                .flatten()
                .map(Repr::len)
                .min();
            if let Some(smallest) = smallest {
                c.compressible_bytes += identity;
                c.compressed_bytes += smallest;
            }
        }
        c
    }

    /// Descriptors held open (files on disk, the memfds of large bodies).
    pub fn descriptors(&self) -> u64 {
        self.descriptors
    }

    /// Exact lookup of a normalised key.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.files.get(key)
    }

    /// Resolves a normalised request path (see [`path::normalize`]), `dir` telling whether the
    /// client named it with a trailing slash.
    ///
    /// 1. `/dir/` → `/dir/index.html`; `/file` → `/file`.
    /// 2. `/dir` (no slash) where `/dir/index.html` exists → redirect to `/dir/`, as nginx does,
    ///    so that relative links in that page resolve against the directory.
    /// 3. SPA fallback (on by default): a path whose last segment has no extension and that names
    ///    nothing gets `/index.html`, so client-side routes like `/users/42` load the app. A missing
    ///    `/assets/app.js` still gets 404 — a broken asset link must not turn into HTML — and so
    ///    does any path with a dot segment (`/.env`, `/.git/config`): no route starts with a dot,
    ///    and a scanner would report a 200 there as an exposed file.
    pub fn resolve(&self, key: &[u8], dir: bool, scratch: &mut Vec<u8>) -> Lookup<'_> {
        match self.find(key, dir, scratch) {
            Lookup::NotFound => match self.fallback(key) {
                Some(entry) => Lookup::File(entry),
                None => Lookup::NotFound,
            },
            found => found,
        }
    }

    /// Steps 1 and 2 of [`Snapshot::resolve`]: what exists at `key`, without the SPA fallback.
    pub fn find(&self, key: &[u8], dir: bool, scratch: &mut Vec<u8>) -> Lookup<'_> {
        if dir {
            scratch.clear();
            scratch.extend_from_slice(key);
            if key != b"/" {
                scratch.push(b'/');
            }
            scratch.extend_from_slice(b"index.html");
            if let Some(entry) = self.files.get(scratch.as_slice()) {
                return Lookup::File(entry);
            }
        } else if let Some(entry) = self.files.get(key) {
            return Lookup::File(entry);
        } else if self.dirs.contains(key) {
            return Lookup::AddSlash;
        }
        Lookup::NotFound
    }

    /// Step 3 of [`Snapshot::resolve`]: the app's `/index.html` for a path that names nothing,
    /// if the fallback is on and the path looks like a client-side route.
    pub fn fallback(&self, key: &[u8]) -> Option<&Entry> {
        if self.spa_fallback && !path::has_extension(key) && !path::has_dot_segment(key) {
            return self.files.get(b"/index.html".as_slice());
        }
        None
    }
}
