//! Phase 1 of a load: builds an identity-only [`Snapshot`] of the document root, reusing what the
//! snapshot it replaces already holds.
//!
//! The walk is the only place where request-visible content touches the file system, and it
//! decides once, at load time, what is servable:
//! - regular files, keyed by their path below the root (`/assets/app.js`);
//! - dotfiles and dot-directories are skipped (`.git`, `.env`, `.htpasswd` are never served);
//! - a symbolic link is followed only when its fully resolved target stays inside the root, so a
//!   link to `/etc/passwd` is skipped; directory cycles through links are cut;
//! - sockets, FIFOs and devices are skipped.
//!
//! Every file is then opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` by its
//! canonical path under an `O_PATH` descriptor of the root, and must still be a regular file: a
//! tree changed since the walk (a link swapped to point outside, a FIFO or a directory in a
//! file's place) fails the load instead of smuggling anything in or hanging it, and the previous
//! snapshot stays. Files larger than `--max-cached-file`, and the largest files once
//! `--cache-budget` is spent (the smallest are kept in memory first: they are the many), are kept
//! open and sent with sendfile(2); the others are read and identified by their [`ContentId`].
//! From `source_min` up (see below) a file is hashed as it is read, a piece at a time, and not
//! kept in memory at all; it still counts against the budget, which bounds what a load reads.
//!
//! A body whose content the previous snapshot already holds is taken from it (the same heap
//! buffer or memfd stretch, not a copy), and so are compressed variants already built for that
//! content ([`Built`]); new large bodies go into one new memfd ([`super::pack`]) — or, from
//! `source_min` up (hosts without shmem huge pages), stay in their source file, sent from the
//! page cache through the descriptor the read used. What is left to
//! compress is marked `pending` on its entry, for phase 2 ([`super::variants`]). So a reload
//! costs a read and a hash of the tree, plus the work for what changed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compress;
use super::content::ContentId;
use super::pack::{self, ZERO_COPY_MIN};
use super::snapshot::Lookup;
use super::snapshot::{Backing, Body, Codings, DiskFile, Entry, Fields, Repr, Snapshot};
use super::variants::{self, Built};
use crate::http::encoding::Coding;
use crate::http::mime;
use crate::http::path;
use crate::site::{self, SiteRules};
use crate::sys::file;

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    pub spa_fallback: bool,
    /// The most file bytes held in memory; files beyond it are served from disk.
    pub budget: u64,
    /// Files larger than this are served from disk, never held in memory.
    pub max_cached_file: u64,
    /// Identity bodies from this size up (of the files read) are sent from their source file
    /// instead of a memfd (`Backing::Source`; `u64::MAX`: never). See `pack::PAGE_CACHE_MIN`.
    pub source_min: u64,
    /// `Cache-Control` for files that are neither HTML nor fingerprinted assets.
    pub cache_control: String,
    /// Build gzip and brotli variants of compressible files.
    pub compress: bool,
    /// Where the site's rules come from (`_headers`, `_redirects`, `--header`).
    pub site: SiteFiles,
}

impl LoadOptions {
    /// What the serving code's unit tests load a temporary directory with: every file in memory,
    /// the SPA fallback on, `no-cache`, no site files beyond those in `root`.
    #[cfg(test)]
    pub(crate) fn for_tests(root: PathBuf, compress: bool) -> LoadOptions {
        LoadOptions {
            root,
            spa_fallback: true,
            budget: u64::MAX,
            max_cached_file: u64::MAX,
            source_min: u64::MAX,
            cache_control: "no-cache".into(),
            compress,
            site: Default::default(),
        }
    }
}

/// Where a load finds the site's rules. By default `_headers` and `_redirects` at the root
/// (never served themselves); `--headers-file`/`--redirects-file` name files elsewhere instead.
#[derive(Clone, Debug, Default)]
pub struct SiteFiles {
    pub headers_file: Option<PathBuf>,
    pub redirects_file: Option<PathBuf>,
    /// `--header` values, `Name: value` each.
    pub headers: Vec<String>,
}

/// The names of the rule files at the root: read as configuration, never served.
const RULE_FILES: [&[u8]; 2] = [b"/_headers", b"/_redirects"];

/// A load that failed, with the path (and, for a rule file, the line) it failed on.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    /// 1-based line of a rule file (`_headers`, `_redirects`).
    pub line: Option<usize>,
    pub error: io::Error,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.error),
            None => write!(f, "{}: {}", self.path.display(), self.error),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a phase-1 load did, and how much of it the previous snapshot spared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub files: usize,
    /// Bytes read and hashed: into memory, or a piece at a time for bodies sent from their
    /// own file.
    pub read_bytes: u64,
    /// Files whose identity body the previous snapshot already held.
    pub reused_files: usize,
    /// Bytes taken from before instead of being placed or compressed again: identity bodies,
    /// and compressed variants already built for the same content.
    pub reused_bytes: u64,
    /// Bytes placed anew: changed identity bodies and shipped `.gz`/`.br` siblings.
    pub built_bytes: u64,
    /// Files left for phase 2 to compress.
    pub pending_files: usize,
}

/// What a load may take instead of building again.
#[derive(Clone, Copy, Default)]
pub struct Reuse<'a> {
    /// The snapshot being replaced: its identity bodies, by content.
    pub previous: Option<&'a Snapshot>,
    /// Compressed variants built so far, by content.
    pub built: Option<&'a Built>,
}

/// Phase 1: walks `opts.root` and builds an identity-only snapshot (plus the variants `reuse`
/// and shipped siblings already provide), marking what is left to compress as pending.
pub fn load_identity(opts: &LoadOptions, reuse: Reuse<'_>) -> Result<(Snapshot, LoadReport), LoadError> {
    let root = fs::canonicalize(&opts.root).map_err(at(&opts.root))?;
    if !fs::metadata(&root).map_err(at(&root))?.is_dir() {
        return Err(LoadError {
            path: root,
            line: None,
            error: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let mut walk = Walk { root: root.clone(), candidates: Vec::new(), visited: HashSet::new() };
    walk.visited.insert(root.clone());
    walk.dir(&root, Path::new(""), &mut b"".to_vec())?;
    let (rule_files, candidates): (Vec<_>, Vec<_>) =
        walk.candidates.into_iter().partition(|c| RULE_FILES.contains(&c.key.as_slice()));
    let site = Arc::new(site_rules(&root, &rule_files, &opts.site)?);
    let found = read_or_open(&root, candidates, opts)?;
    let (snapshot, report) = build(&found, opts, reuse, site);
    check_targets(&snapshot, &root, &rule_files, &opts.site)?;
    Ok((snapshot, report))
}

/// Reads and compiles the site's rules: each file from `--headers-file`/`--redirects-file` if
/// given, else from the root (opened beneath it like every served file), else none.
fn site_rules(root: &Path, at_root: &[Candidate], files: &SiteFiles) -> Result<SiteRules, LoadError> {
    let limit = site::Limits::default().max_file_bytes;
    let read = |flag: &Option<PathBuf>, key: &[u8]| -> Result<(PathBuf, String), LoadError> {
        let (path, file) = match (flag, at_root.iter().find(|c| c.key == key)) {
            (Some(path), _) => (path.clone(), fs::File::open(path).map_err(at(path))?),
            (None, Some(c)) => {
                let dir = file::open_dir(root).map_err(at(root))?;
                let fd = file::open_beneath(dir.as_fd(), &c.relative).map_err(at(&c.path))?;
                (c.path.clone(), fs::File::from(fd))
            }
            (None, None) => return Ok((PathBuf::new(), String::new())),
        };
        let mut text = String::new();
        let too_big = |path: &Path| LoadError {
            path: path.to_path_buf(),
            line: None,
            error: io::Error::new(io::ErrorKind::InvalidData, format!("larger than {limit} bytes")),
        };
        file.take(limit + 1).read_to_string(&mut text).map_err(at(&path))?;
        if text.len() as u64 > limit {
            return Err(too_big(&path));
        }
        Ok((path, text))
    };
    let (headers_path, headers) = read(&files.headers_file, b"/_headers")?;
    let (redirects_path, redirects) = read(&files.redirects_file, b"/_redirects")?;
    let headers_name = headers_path.display().to_string();
    let redirects_name = redirects_path.display().to_string();
    SiteRules::compile(
        site::Source { name: &headers_name, text: &headers },
        site::Source { name: &redirects_name, text: &redirects },
        &files.headers,
    )
    .map_err(|e| LoadError {
        path: PathBuf::from(&e.file),
        line: (e.line > 0).then_some(e.line),
        error: io::Error::new(io::ErrorKind::InvalidData, e.message),
    })
}

/// A `_redirects` rule that rewrites to a fixed path (`/app/* /app/index.html 200`) must name a
/// file of the root: a typo there would otherwise turn every matching request into a 404.
fn check_targets(
    snapshot: &Snapshot,
    root: &Path,
    at_root: &[Candidate],
    files: &SiteFiles,
) -> Result<(), LoadError> {
    let mut scratch = Vec::new();
    let mut key = Vec::new();
    for (rule, target) in snapshot.site().redirects.fixed_targets() {
        let found = path::normalize(target, &mut key)
            .map(|n| !matches!(snapshot.find(&key, n.dir, &mut scratch), Lookup::NotFound))
            .unwrap_or(false);
        if !found {
            let path = files.redirects_file.clone().unwrap_or_else(|| {
                at_root
                    .iter()
                    .find(|c| c.key == b"/_redirects")
                    .map_or(root.join("_redirects"), |c| c.path.clone())
            });
            return Err(LoadError {
                path,
                line: Some(rule.line),
                error: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("target {} is not a file of the root", String::from_utf8_lossy(target)),
                ),
            });
        }
    }
    Ok(())
}

/// A full load, both phases on the calling thread: every variant is built before it returns.
/// For benches, tests and tools; the server publishes phase 1 first ([`super::reload`]).
pub fn load(opts: &LoadOptions) -> Result<Snapshot, LoadError> {
    let (snapshot, _) = load_identity(opts, Reuse::default())?;
    let jobs = variants::jobs(&snapshot, &HashSet::new());
    let done = jobs.iter().map(variants::Job::run).collect::<io::Result<Vec<_>>>().map_err(at(&opts.root))?;
    let mut built = Built::default();
    built.add(done);
    Ok(variants::apply(&snapshot, &built).unwrap_or(snapshot))
}

/// A servable file the walk found, not opened yet.
struct Candidate {
    key: Vec<u8>,
    /// The path as walked (for messages).
    path: PathBuf,
    /// The canonical path below the root, which `openat2` resolves without following links.
    relative: PathBuf,
    len: u64,
}

/// A file read into memory, or opened to be sent from disk; not yet turned into an entry.
struct Found {
    key: Vec<u8>,
    body: Vec<u8>,
    /// Of `body`; none for a file on disk.
    content: Option<ContentId>,
    modified: u64,
    /// A file not read, sent from disk (`Backing::Disk`).
    disk: Option<Arc<DiskFile>>,
    /// A file read whose identity body will be sent from it (`Backing::Source`).
    source: Option<Arc<DiskFile>>,
}

/// Decides which files stay in memory — none over `max_cached_file`, and the smallest first
/// until the budget is spent — then opens each beneath the root, reads those and keeps the
/// others open.
fn read_or_open(
    root: &Path,
    candidates: Vec<Candidate>,
    opts: &LoadOptions,
) -> Result<Vec<Found>, LoadError> {
    let mut by_size: Vec<usize> = (0..candidates.len()).collect();
    by_size.sort_by_key(|&i| candidates[i].len);
    let mut held = vec![Held::Disk; candidates.len()];
    let mut used = 0u64;
    for i in by_size {
        let c = &candidates[i];
        // The budget bounds the bytes each load reads and hashes, of source files too.
        if c.len <= opts.max_cached_file && used + c.len <= opts.budget {
            let source = c.len >= opts.source_min && !is_shipped_variant(&c.key);
            held[i] = if source { Held::Source } else { Held::Memory };
            used += c.len;
        }
    }
    let on_disk = held.iter().filter(|&&h| h == Held::Disk).count();
    let dir = file::open_dir(root).map_err(at(root))?;
    let mut scratch = Vec::new();
    let found = candidates
        .iter()
        .zip(held)
        .map(|(c, held)| open_one(dir.as_fd(), c, held, &mut scratch).map_err(at(&c.path)))
        .collect::<Result<Vec<_>, _>>()?;
    if on_disk > 0 {
        crate::log!(
            "{on_disk} files over --max-cached-file ({} bytes) or the --cache-budget ({} bytes) are sent from disk",
            opts.max_cached_file,
            opts.budget
        );
    }
    Ok(found)
}

/// How a file's body will be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// Read into memory: on the heap or, when large, packed into a memfd.
    Memory,
    /// In its own file, sent from the page cache through the descriptor that read it: hashed as
    /// it is read, a piece at a time, and not kept (`Backing::Source`).
    Source,
    /// Not read: sent from disk, tagged by length and mtime (`Backing::Disk`).
    Disk,
}

/// The read size for hashing a [`Held::Source`] file.
const HASH_PIECE: usize = 256 * 1024;

/// The suffix of a shipped compressed sibling (`app.js.br`), per coding, in
/// `Coding::COMPRESSED` order (`Plan::variants`).
const SHIPPED: [(Coding, &[u8]); 3] = [(Coding::Gzip, b".gz"), (Coding::Zstd, b".zst"), (Coding::Br, b".br")];

/// Whether `key` names a shipped compressed sibling: its bytes may become another file's
/// variant, which is built from memory, so it is never a [`Held::Source`] body.
fn is_shipped_variant(key: &[u8]) -> bool {
    SHIPPED.iter().any(|(_, ext)| key.ends_with(ext))
}

/// Opens one file beneath the root (the kernel refuses to leave the root or to follow a link, so
/// a tree changed since the walk cannot smuggle an outside file in), checks that it is still a
/// regular file (`O_NONBLOCK` kept a FIFO from blocking the open), and reads it as `held` says,
/// hashing a source file's bytes through `scratch`.
fn open_one(dir: BorrowedFd<'_>, c: &Candidate, held: Held, scratch: &mut Vec<u8>) -> io::Result<Found> {
    let fd = file::open_beneath(dir, &c.relative)?;
    let st = file::stat(fd.as_fd())?;
    if !st.regular {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no longer a regular file"));
    }
    let key = c.key.clone();
    let kept = |backing, fd| Some(Arc::new(DiskFile { fd: Arc::new(fd), offset: 0, len: st.len, backing }));
    let found = |body, content, disk, source| Found { key, body, content, modified: st.mtime, disk, source };
    let mut file = fs::File::from(fd);
    match held {
        Held::Disk => return Ok(found(Vec::new(), None, kept(Backing::Disk, file.into()), None)),
        Held::Source => {
            scratch.resize(HASH_PIECE, 0);
            let id = ContentId::of_reader(&mut file, scratch)?;
            if id.len == st.len {
                return Ok(found(Vec::new(), Some(id), None, kept(Backing::Source, file.into())));
            }
            // Its size changed while it was read: not trusted to match what was hashed. Read
            // again, into memory, like a smaller file.
            io::Seek::rewind(&mut file)?;
        }
        Held::Memory => {}
    }
    let mut body = Vec::with_capacity(st.len as usize);
    file.read_to_end(&mut body)?;
    let content = Some(ContentId::of(&body));
    Ok(found(body, content, None, None))
}

impl Found {
    /// The identity body's length: read, or in its source file.
    fn len(&self) -> u64 {
        self.source.as_ref().map_or(self.body.len() as u64, |s| s.len)
    }
}

/// Where a body comes from, before the new large ones are packed.
enum Place {
    Have(Body),
    /// A large body read now: its index among the bodies to pack.
    ToPack(usize),
}

/// A compressed variant as phase 1 finds it.
enum Variant {
    /// Decided: its body and tag, or `None` when compressing was not worth it.
    Decided(Option<(Place, Box<[u8]>)>),
    /// To be built by phase 2.
    Pending,
    /// Not wanted (not compressible, compression off).
    NotWanted,
}

/// What one entry will be made of.
struct Plan {
    identity: Place,
    /// gzip, zstd, br (`Coding::COMPRESSED` order).
    variants: [Variant; 3],
    content_type: &'static str,
    vary: bool,
}

/// Turns found files into entries: takes what `reuse` holds, packs the new large bodies into one
/// memfd, renders every head.
fn build(
    found: &[Found],
    opts: &LoadOptions,
    reuse: Reuse<'_>,
    site: Arc<SiteRules>,
) -> (Snapshot, LoadReport) {
    let mut report = LoadReport { files: found.len(), ..LoadReport::default() };
    // Bodies in memory only: a source file serves no other file than itself, whatever its
    // bytes were (see the `source` arm below).
    let in_memory = |e: &Entry| e.identity.file.as_ref().map_or(true, |f| f.backing == Backing::Memfd);
    let previous: HashMap<ContentId, Body> = reuse
        .previous
        .map(|s| {
            s.entries()
                .filter(|(_, e)| in_memory(e))
                .filter_map(|(_, e)| Some((e.content?, e.identity.body()?)))
                .collect()
        })
        .unwrap_or_default();
    // Shipped siblings: `app.js.br` next to `app.js`.
    let index: HashMap<&[u8], usize> = found.iter().enumerate().map(|(i, f)| (f.key.as_slice(), i)).collect();
    let sibling = |f: &Found, ext: &[u8]| {
        let key = [f.key.as_slice(), ext].concat();
        // Never a source file (`is_shipped_variant`): its bytes are not in memory.
        index.get(key.as_slice()).map(|&i| &found[i]).filter(|s| s.disk.is_none() && s.source.is_none())
    };
    let mut to_pack: Vec<&[u8]> = Vec::new();
    let mut plans = Vec::with_capacity(found.len());
    for f in found {
        report.read_bytes += if f.disk.is_some() { 0 } else { f.len() };
        let identity = match (&f.disk, &f.source, f.content.and_then(|id| previous.get(&id))) {
            (Some(disk), _, _) => Place::Have(Body::Packed(disk.clone())),
            // Nothing to place: the bytes stay in the page cache of the file just read, through
            // the descriptor that read them. Never a previous snapshot's descriptor of the same
            // content: that may be another file's (two copies of one video), or an old inode,
            // and the file it names may since have been rewritten in place.
            (None, Some(source), _) => Place::Have(Body::Packed(source.clone())),
            (None, None, Some(body)) => {
                report.reused_files += 1;
                report.reused_bytes += body.len();
                Place::Have(body.clone())
            }
            (None, None, None) => {
                report.built_bytes += f.body.len() as u64;
                place_new(&f.body, &mut to_pack)
            }
        };
        let content_type = mime::for_path(&f.key);
        let candidate =
            opts.compress && f.disk.is_none() && compress::worth_trying(content_type, f.len() as usize);
        let mut variant = |coding: Coding, ext: &[u8]| {
            if !candidate {
                return Variant::NotWanted;
            }
            if let Some(s) = sibling(f, ext) {
                if !compress::worth(s.body.len(), f.len() as usize) {
                    return Variant::Decided(None);
                }
                report.built_bytes += s.body.len() as u64;
                let tag = ContentId::of(&s.body).etag(coding.token());
                return Variant::Decided(Some((place_new(&s.body, &mut to_pack), tag)));
            }
            match f.content.and_then(|id| reuse.built?.get(id, coding)) {
                Some(done) => {
                    report.reused_bytes += done.as_ref().map_or(0, |(b, _)| b.len());
                    Variant::Decided(done.clone().map(|(b, tag)| (Place::Have(b), tag)))
                }
                None => Variant::Pending,
            }
        };
        let variants = SHIPPED.map(|(coding, ext)| variant(coding, ext));
        plans.push(Plan { identity, variants, content_type, vary: candidate });
    }
    let packed = pack::pack(&to_pack).unwrap_or_else(|e| {
        // No memfd: the large bodies stay on the heap and go out with sendmsg(2).
        crate::log!("no memfd for {} large bodies, kept on the heap: {e}", to_pack.len());
        Vec::new()
    });
    let resolve = |p: Place| match p {
        Place::Have(b) => b,
        Place::ToPack(i) => match packed.get(i) {
            Some(stretch) => Body::Packed(stretch.clone()),
            None => Body::Heap(Arc::from(to_pack[i])),
        },
    };
    let mut snapshot = Snapshot::new(opts.spa_fallback, &opts.cache_control, site.clone());
    for (f, plan) in found.iter().zip(plans) {
        // `_headers` and `--header`, applied now: the heads carry them, a request pays nothing.
        let custom = site.headers.apply(&f.key);
        let cache_control =
            custom.cache_control.map_or_else(|| cache_control_for(&f.key, &opts.cache_control), String::from);
        let content_type: Arc<str> =
            custom.content_type.map_or_else(|| Arc::from(plan.content_type), Arc::from);
        let headers: Arc<[u8]> = custom.lines.into();
        let fields = Fields {
            content_type: &content_type,
            modified: f.modified,
            cache_control: &cache_control,
            vary: plan.vary,
            headers: &headers,
        };
        let mut pending = Codings::NONE;
        let mut variant = |v: Variant, coding: Coding| match v {
            Variant::Decided(done) => done.map(|(p, tag)| Repr::render(&fields, resolve(p), tag, coding)),
            Variant::Pending => {
                pending.set(coding, true);
                None
            }
            Variant::NotWanted => None,
        };
        let [gzip, zstd, br] = plan.variants;
        let (gzip, zstd, br) =
            (variant(gzip, Coding::Gzip), variant(zstd, Coding::Zstd), variant(br, Coding::Br));
        report.pending_files += usize::from(pending.any());
        let tag = match (&f.disk, f.content) {
            (Some(disk), _) => {
                format!("\"{:x}-m{:x}\"", disk.len, f.modified).into_bytes().into_boxed_slice()
            }
            (None, Some(id)) => id.etag(None),
            (None, None) => unreachable!("a file in memory has a content id"),
        };
        let identity = Repr::render(&fields, resolve(plan.identity), tag, Coding::Identity);
        let entry = Entry {
            identity,
            gzip,
            zstd,
            br,
            content_type: content_type.clone(),
            modified: f.modified,
            cache_control: cache_control.into(),
            headers: headers.clone(),
            content: f.content,
            vary: plan.vary,
            pending,
        };
        snapshot.insert(f.key.clone(), entry);
    }
    snapshot.freeze();
    (snapshot, report)
}

/// Where a new body goes: a large one into the memfd about to be made, a small one on the heap.
fn place_new<'a>(bytes: &'a [u8], to_pack: &mut Vec<&'a [u8]>) -> Place {
    if bytes.len() >= ZERO_COPY_MIN {
        to_pack.push(bytes);
        Place::ToPack(to_pack.len() - 1)
    } else {
        Place::Have(Body::Heap(Arc::from(bytes)))
    }
}

struct Walk {
    root: PathBuf,
    candidates: Vec<Candidate>,
    /// Canonical directories already walked, to cut cycles made with symbolic links.
    visited: HashSet<PathBuf>,
}

impl Walk {
    /// Walks `dir`, whose canonical path below the root is `real`, under URL path `key`.
    fn dir(&mut self, dir: &Path, real: &Path, key: &mut Vec<u8>) -> Result<(), LoadError> {
        let mut names: Vec<_> =
            fs::read_dir(dir).map_err(at(dir))?.collect::<Result<_, _>>().map_err(at(dir))?;
        names.sort_by_key(|e| e.file_name());
        for dirent in names {
            let name = dirent.file_name();
            if name.as_bytes().starts_with(b".") {
                continue; // dotfiles are never served
            }
            let path = dirent.path();
            let mut meta = fs::symlink_metadata(&path).map_err(at(&path))?;
            let mut relative = real.join(&name);
            if meta.file_type().is_symlink() {
                let target = match fs::canonicalize(&path) {
                    Ok(t) if t.starts_with(&self.root) => t,
                    Ok(_) => {
                        crate::log!("skipping {}: symbolic link leads outside the root", path.display());
                        continue;
                    }
                    Err(e) => {
                        crate::log!("skipping {}: {e}", path.display());
                        continue;
                    }
                };
                meta = fs::metadata(&target).map_err(at(&target))?;
                relative = target.strip_prefix(&self.root).map_or_else(|_| relative, Path::to_path_buf);
                if meta.is_dir() && !self.visited.insert(target) {
                    continue; // a cycle, or a second route to a directory already loaded
                }
            }
            let len = key.len();
            key.push(b'/');
            key.extend_from_slice(name.as_bytes());
            if meta.is_dir() {
                self.dir(&path, &relative, key)?;
            } else if meta.is_file() {
                self.candidates.push(Candidate { key: key.clone(), path, relative, len: meta.len() });
            }
            key.truncate(len);
        }
        Ok(())
    }
}

/// Wraps an I/O error with the path it happened on.
fn at(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |error| LoadError { path: path.to_path_buf(), line: None, error }
}

/// `Cache-Control` that fits a Vite build by default:
/// - HTML (`index.html` and friends) must be revalidated on every load — it names the current
///   bundles: `no-cache` (cached, but always checked with `If-None-Match`, cheap with ETags);
/// - fingerprinted assets (`/assets/name-HASH.ext`, HASH ≥ 8 of `[A-Za-z0-9_-]`, as Vite names
///   them) never change under that name: `max-age=31536000, immutable`;
/// - anything else (`favicon.svg`, `robots.txt`): `default` (`--cache-control`).
pub fn cache_control_for(key: &[u8], default: &str) -> String {
    let name = key.rsplit(|&c| c == b'/').next().unwrap_or(key);
    if mime::for_path(key).starts_with("text/html") {
        return "no-cache".into();
    }
    if key.starts_with(b"/assets/") && is_fingerprinted(name) {
        return "max-age=31536000, immutable".into();
    }
    default.into()
}

fn is_fingerprinted(name: &[u8]) -> bool {
    let stem = match name.iter().position(|&c| c == b'.') {
        Some(dot) => &name[..dot],
        None => return false,
    };
    let Some(dash) = stem.iter().rposition(|&c| c == b'-') else { return false };
    let hash = &stem[dash + 1..];
    // Bundlers' hashes are 8+ characters of base64url or hex; a plain word (`datepicker`) is not:
    // require a digit or an upper-case letter as well.
    dash > 0
        && (8..=64).contains(&hash.len())
        && hash.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        && hash.iter().any(|&c| c.is_ascii_digit() || c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `len` bytes at `offset` of a descriptor.
    fn read_at(file: &DiskFile) -> Vec<u8> {
        let mut out = vec![0u8; file.len as usize];
        file::pread_exact(file.fd.as_fd(), &mut out, file.offset).unwrap();
        out
    }

    /// A fresh directory under the temp dir, removed on drop.
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new(name: &str) -> TempRoot {
            let root = std::env::temp_dir().join(format!("atomserve-loader-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            TempRoot(root)
        }

        fn opts(&self) -> LoadOptions {
            LoadOptions {
                root: self.0.clone(),
                spa_fallback: false,
                budget: 1 << 30,
                max_cached_file: 1 << 30,
                source_min: u64::MAX,
                cache_control: "no-cache".into(),
                compress: true,
                site: Default::default(),
            }
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// 4 bits of entropy a byte: compresses about 2×, so its variants are large bodies too.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghijklmnop"[(x >> 60) as usize]
            })
            .collect()
    }

    /// Every large identity body of a load lands in one memfd at its own page-aligned offset
    /// with its exact bytes; large variants in a memfd too; small bodies stay on the heap.
    #[test]
    fn large_bodies_share_one_memfd() {
        let root = TempRoot::new("pack");
        let noise: Vec<u8> = (0..200_000u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let text = text(300_000, 0);
        fs::write(root.0.join("a.bin"), &noise).unwrap();
        fs::write(root.0.join("b.txt"), &text[..]).unwrap();
        fs::write(root.0.join("small.txt"), b"hello").unwrap();
        let snapshot = load(&root.opts()).unwrap();
        let a = snapshot.get(b"/a.bin").unwrap().identity.file.as_ref().unwrap();
        let b = snapshot.get(b"/b.txt").unwrap().identity.file.as_ref().unwrap();
        assert!(Arc::ptr_eq(&a.fd, &b.fd) && a.backing == Backing::Memfd && b.backing == Backing::Memfd);
        assert!(a.offset != b.offset && a.offset % file::PAGE == 0 && b.offset % file::PAGE == 0);
        assert!(read_at(a) == noise && read_at(b) == text);
        let gzip = snapshot.get(b"/b.txt").unwrap().gzip.as_ref().expect("a gzip variant");
        let gz = gzip.file.as_ref().expect("a large variant in a memfd");
        assert!(gz.backing == Backing::Memfd && gz.len >= ZERO_COPY_MIN as u64);
        let mut plain = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&read_at(gz)[..]), &mut plain).unwrap();
        assert!(plain == text);
        assert!(snapshot.get(b"/a.bin").unwrap().identity.body.is_empty());
        let small = &snapshot.get(b"/small.txt").unwrap().identity;
        assert!(small.file.is_none() && &small.body[..] == b"hello");
        // The identity memfd and the variants' memfd.
        assert_eq!(snapshot.descriptors(), 2);
        let entry = snapshot.get(b"/b.txt").unwrap();
        assert_eq!(snapshot.pending(), 0);
        let variants: u64 = entry.reprs().skip(1).map(Repr::len).sum();
        assert_eq!(snapshot.bytes(), (noise.len() + text.len() + 5) as u64 + variants);
    }

    /// Phase 1 serves identity and marks the variants pending; a reload takes every unchanged
    /// body (the same buffer or memfd stretch, not a copy) and every variant already built from
    /// what it replaces, and reads anew only what changed.
    #[test]
    fn a_reload_reuses_unchanged_bodies_and_variants_and_rebuilds_the_rest() {
        let root = TempRoot::new("reuse");
        let (big, small) = (text(100_000, 1), text(1_000, 2));
        fs::write(root.0.join("big.js"), &big).unwrap();
        fs::write(root.0.join("small.css"), &small).unwrap();
        fs::write(root.0.join("changes.json"), text(2_000, 3)).unwrap();
        let (first, report) = load_identity(&root.opts(), Reuse::default()).unwrap();
        assert_eq!((report.files, report.reused_files, report.pending_files), (3, 0, 3));
        assert!(first.get(b"/big.js").unwrap().br.is_none() && first.get(b"/big.js").unwrap().vary);
        // Phase 2, as the reload thread runs it.
        let mut built = Built::default();
        built.add(variants::jobs(&first, &HashSet::new()).iter().map(|j| j.run().unwrap()).collect());
        let second = variants::apply(&first, &built).unwrap();
        assert_eq!(second.pending(), 0);
        assert!(second.get(b"/big.js").unwrap().br.is_some());

        fs::write(root.0.join("changes.json"), text(2_000, 4)).unwrap();
        fs::write(root.0.join("big.js"), &big).unwrap(); // rewritten, same bytes (as Vite does)
        let reuse = Reuse { previous: Some(&second), built: Some(&built) };
        let (third, report) = load_identity(&root.opts(), reuse).unwrap();
        assert_eq!((report.reused_files, report.pending_files), (2, 1));
        let (before, after) = (second.get(b"/big.js").unwrap(), third.get(b"/big.js").unwrap());
        let stretch = |e: &Entry| e.identity.file.clone().unwrap();
        assert!(Arc::ptr_eq(&stretch(before), &stretch(after)), "the memfd stretch is shared, not copied");
        assert!(Arc::ptr_eq(&before.br.as_ref().unwrap().body, &after.br.as_ref().unwrap().body));
        assert_eq!(before.identity.etag, after.identity.etag);
        let small = |s: &Snapshot| s.get(b"/small.css").unwrap().identity.body.clone();
        assert!(Arc::ptr_eq(&small(&second), &small(&third)));
        let changed = third.get(b"/changes.json").unwrap();
        assert!(changed.pending.br && changed.br.is_none());
        assert_ne!(changed.identity.etag, second.get(b"/changes.json").unwrap().identity.etag);
        assert_eq!(report.built_bytes, 2_000);
        assert_eq!(
            report.reused_bytes,
            100_000 + 1_000 + built_bytes(&second, b"/big.js") + built_bytes(&second, b"/small.css")
        );
    }

    /// With `source_min` (a host without shmem huge pages), a large identity body is sent from
    /// the file it was read from — that file's inode, strongly tagged by its content, counted as
    /// a descriptor and not as memory —, its variants are built from it, a reload of the same
    /// bytes keeps it, and bodies under `source_min` still go to the memfd.
    #[test]
    fn from_source_min_up_identity_bodies_are_sent_from_their_source_file() {
        use std::os::unix::fs::MetadataExt;
        let root = TempRoot::new("source");
        let (big, mid) = (text(300_000, 5), text(100_000, 6));
        fs::write(root.0.join("big.js"), &big).unwrap();
        fs::write(root.0.join("mid.js"), &mid).unwrap();
        let opts = LoadOptions { source_min: 200_000, ..root.opts() };
        let snapshot = load(&opts).unwrap();
        let entry = snapshot.get(b"/big.js").unwrap();
        let source = entry.identity.file.clone().expect("sent with sendfile");
        assert_eq!((source.backing, source.offset, source.len), (Backing::Source, 0, 300_000));
        let inode = fs::File::from(source.fd.try_clone().unwrap()).metadata().unwrap().ino();
        assert_eq!(inode, fs::metadata(root.0.join("big.js")).unwrap().ino(), "the source file itself");
        assert_eq!(entry.identity.etag, ContentId::of(&big).etag(None), "tagged by its content");
        assert!(read_at(&source) == big);
        let br = entry.br.as_ref().expect("a brotli variant, built from the source file");
        assert!(br.len() < 300_000 && br.file.as_ref().map_or(true, |f| f.backing == Backing::Memfd));
        let mid_body = snapshot.get(b"/mid.js").unwrap().identity.file.clone().unwrap();
        assert_eq!(mid_body.backing, Backing::Memfd, "under source_min: in the memfd");
        let variants: u64 = snapshot.entries().flat_map(|(_, e)| e.reprs().skip(1)).map(Repr::len).sum();
        assert_eq!(snapshot.bytes(), 100_000 + variants, "the source file holds no memory of ours");
        // The source file, the identity memfd, the variants' memfd.
        assert_eq!(snapshot.descriptors(), 3);

        // A reload sends from the file as this load opened and read it, not from the
        // descriptor of before (nothing is copied either way).
        let (again, report) = load_identity(&opts, Reuse { previous: Some(&snapshot), built: None }).unwrap();
        assert_eq!(report.reused_files, 1, "mid.js's memfd stretch");
        let reopened = again.get(b"/big.js").unwrap().identity.file.clone().unwrap();
        assert!(!Arc::ptr_eq(&source, &reopened) && reopened.backing == Backing::Source);
    }

    /// Bodies sent from their own file are hashed as they are read and not held: the load's
    /// peak memory is one piece, not the bodies (`tests/capacity.rs` measures that). They
    /// still spend the budget, which bounds what each load reads; a shipped `.br` of that size
    /// is read into memory, to be the variant of the file it sits beside.
    #[test]
    fn source_file_bodies_are_hashed_in_pieces_within_the_budget() {
        let root = TempRoot::new("source-budget");
        let bins = [b"/a.bin", b"/b.bin", b"/c.bin"];
        for (i, key) in bins.iter().enumerate() {
            fs::write(root.0.join(std::str::from_utf8(&key[1..]).unwrap()), text(300_000, 10 + i as u64))
                .unwrap();
        }
        fs::write(root.0.join("small.css"), text(50_000, 20)).unwrap();
        let (js, js_br) = (text(290_000, 21), text(210_000, 22));
        fs::write(root.0.join("app.js"), &js).unwrap();
        fs::write(root.0.join("app.js.br"), &js_br).unwrap();
        let opts = LoadOptions { source_min: 200_000, budget: 1_150_000, ..root.opts() };
        let (snapshot, report) = load_identity(&opts, Reuse::default()).unwrap();
        let file = |key: &[u8]| snapshot.get(key).unwrap().identity.file.clone();
        // Smallest first: small.css, app.js.br, app.js, then two of the three bins.
        let backing = |key: &[u8]| file(key).map(|f| f.backing);
        assert_eq!(backing(b"/small.css"), None, "on the heap");
        assert_eq!(backing(b"/app.js.br"), Some(Backing::Memfd), "a shipped variant: in memory");
        let sourced: Vec<&[u8]> = [&b"/a.bin"[..], b"/b.bin", b"/c.bin", b"/app.js"]
            .into_iter()
            .filter(|k| backing(k) == Some(Backing::Source))
            .collect();
        assert_eq!(sourced.len(), 3, "app.js and two bins: the budget is spent");
        assert_eq!(backing(b"/app.js"), Some(Backing::Source));
        for key in sourced {
            let body = file(key).unwrap();
            assert_eq!(snapshot.get(key).unwrap().identity.etag, ContentId::of(&read_at(&body)).etag(None));
        }
        let variant =
            snapshot.get(b"/app.js").unwrap().br.clone().expect("the shipped .br is app.js's variant");
        assert!(read_at(variant.file.as_ref().unwrap()) == js_br);
        assert_eq!(
            report.read_bytes,
            2 * 300_000 + 290_000 + 50_000 + 210_000,
            "what the budget allowed, hashed"
        );
    }

    /// Regression: a reload took a source-file body from the snapshot before by its content, so
    /// of two files with the same bytes, the second was sent through the first one's
    /// descriptor — and once the first was rewritten in place, the second file's URL served the
    /// first file's new bytes, at every reload after.
    #[test]
    fn a_source_file_body_serves_only_its_own_file() {
        use std::io::Write as _;
        let root = TempRoot::new("source-twins");
        let same = text(300_000, 7);
        fs::write(root.0.join("a.bin"), &same).unwrap();
        let opts = LoadOptions { source_min: 200_000, compress: false, ..root.opts() };
        let (first, _) = load_identity(&opts, Reuse::default()).unwrap();
        fs::write(root.0.join("b.bin"), &same).unwrap(); // a copy appears
        let (second, _) = load_identity(&opts, Reuse { previous: Some(&first), built: None }).unwrap();
        let changed = text(300_000, 8);
        fs::OpenOptions::new().write(true).open(root.0.join("a.bin")).unwrap().write_all(&changed).unwrap();
        let (third, _) = load_identity(&opts, Reuse { previous: Some(&second), built: None }).unwrap();
        let body = |key: &[u8]| read_at(third.get(key).unwrap().identity.file.as_ref().unwrap());
        assert!(body(b"/a.bin") == changed);
        assert!(body(b"/b.bin") == same, "b.bin is sent with a.bin's new bytes");
    }

    /// Regression: phase 2 read a source file as it was when the job ran, so a file rewritten
    /// in place after the load got a variant of its new bytes kept under its old content (and
    /// served to every file with those old bytes); a file cut short was recorded as "not worth
    /// compressing". Now the job sees the change and records nothing.
    #[test]
    fn phase_two_refuses_a_source_file_changed_since_the_load() {
        use std::io::Write as _;
        let root = TempRoot::new("source-changed");
        fs::write(root.0.join("big.js"), text(300_000, 9)).unwrap();
        let opts = LoadOptions { source_min: 200_000, ..root.opts() };
        let (snapshot, _) = load_identity(&opts, Reuse::default()).unwrap();
        let jobs = variants::jobs(&snapshot, &HashSet::new());
        assert_eq!(jobs.len(), 1);
        let mut f = fs::OpenOptions::new().write(true).open(root.0.join("big.js")).unwrap();
        f.write_all(&text(300_000, 10)).unwrap();
        let err = jobs[0].run().err().expect("a variant of other bytes");
        assert!(variants::is_stale(&err), "{err}");
        f.set_len(1000).unwrap();
        let err = jobs[0].run().err().expect("a file cut short");
        assert!(variants::is_stale(&err), "{err}");
    }

    fn built_bytes(s: &Snapshot, key: &[u8]) -> u64 {
        s.get(key).unwrap().reprs().skip(1).map(Repr::len).sum()
    }

    /// Walks `root` as a load does, without opening anything yet.
    fn walk(root: &Path) -> Vec<Candidate> {
        let root = fs::canonicalize(root).unwrap();
        let mut walk = Walk { root: root.clone(), candidates: Vec::new(), visited: HashSet::new() };
        walk.dir(&root, Path::new(""), &mut Vec::new()).unwrap();
        walk.candidates
    }

    /// Regression: a file the walk approved was read with a plain open, which follows links, so
    /// a link swapped in after the walk (to a file outside the root) was read and served.
    #[test]
    fn a_link_swapped_in_after_the_walk_fails_the_load_instead_of_reading_outside() {
        let root = TempRoot::new("swap-link");
        fs::write(root.0.join("page.txt"), b"inside").unwrap();
        let candidates = walk(&root.0);
        fs::remove_file(root.0.join("page.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.0.join("page.txt")).unwrap();
        let canonical = fs::canonicalize(&root.0).unwrap();
        let err = read_or_open(&canonical, candidates, &root.opts()).err().expect("the load fails");
        assert_eq!(err.error.raw_os_error(), Some(crate::sys::ELOOP), "{err}");
    }

    /// Regression: a FIFO swapped in for a file after the walk blocked the load in open(2) until
    /// some writer came; now the open does not block and the load fails with a clear reason.
    #[test]
    fn a_fifo_swapped_in_after_the_walk_fails_the_load_without_blocking() {
        let root = TempRoot::new("swap-fifo");
        fs::write(root.0.join("data.json"), b"{}").unwrap();
        let candidates = walk(&root.0);
        fs::remove_file(root.0.join("data.json")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(root.0.join("data.json")).status().unwrap();
        assert!(made.success());
        let canonical = fs::canonicalize(&root.0).unwrap();
        let err = read_or_open(&canonical, candidates, &root.opts()).err().expect("the load fails");
        assert!(err.to_string().contains("no longer a regular file"), "{err}");
        // A directory in its place, or the file gone, fail likewise.
        fs::remove_file(root.0.join("data.json")).unwrap();
        fs::create_dir(root.0.join("data.json")).unwrap();
        let candidates_again = vec![Candidate {
            key: b"/data.json".to_vec(),
            path: root.0.join("data.json"),
            relative: "data.json".into(),
            len: 2,
        }];
        assert!(read_or_open(&canonical, candidates_again, &root.opts()).is_err());
    }

    #[test]
    fn cache_control_fits_vite() {
        let d = "max-age=3600";
        assert_eq!(cache_control_for(b"/index.html", d), "no-cache");
        assert_eq!(cache_control_for(b"/docs/index.html", d), "no-cache");
        assert_eq!(cache_control_for(b"/assets/index-ThlbQ9On.js", d), "max-age=31536000, immutable");
        assert_eq!(cache_control_for(b"/assets/hero-CLDdwZDr.png", d), "max-age=31536000, immutable");
        assert_eq!(cache_control_for(b"/assets/style-Zz9.css", d), d); // too short to be a hash
        assert_eq!(cache_control_for(b"/favicon-ABCDEFGH.svg", d), d); // not under /assets/
        assert_eq!(cache_control_for(b"/assets/logo.svg", d), d);
        assert_eq!(cache_control_for(b"/assets/jquery-ui-datepicker.js", d), d); // a word, not a hash
        assert_eq!(cache_control_for(b"/assets/vendor-3f2a9c1e.js", d), "max-age=31536000, immutable");
    }
}
