//! The responder: what to answer one parsed request, and nothing about how bytes move.
//!
//! [`respond`] takes a [`Request`], what the listener serves ([`Service`]: the snapshot of the
//! document root, or the admin endpoints) and the time, queues the whole response into a
//! [`Turn`] of the connection's output queue, and returns an [`Outcome`] — the status, the body
//! bytes, whether the connection must close, whether the cache answered. It makes no syscall
//! and reads no clock: the unit tests below call it directly, without a socket.
//!
//! The transport counts and records each request from its `Outcome`, in one place
//! (`crate::serve::transport`), and frames the connection from `Outcome::close`.

use crate::cache::{Entry, Lookup, Repr, Snapshot};
use crate::http::conditional::{self, Conditions};
use crate::http::date;
use crate::http::encoding::{AcceptEncoding, Coding};
use crate::http::path;
use crate::http::range::{self, Range};
use crate::http::request::{Method, Request};
use crate::http::response::{self, Extra, FileMeta, Frame, Persistence, Status};
use crate::observe::admin::{self, Answer};
use crate::observe::scrape::Sources;
use crate::serve::out_queue::{OutQueue, Turn};
use crate::site::pattern::Captures;
use crate::site::redirects::{Action, Redirect};

/// What a listener serves.
#[derive(Clone, Copy)]
pub enum Service<'s> {
    /// The public listener: files of this snapshot.
    Files(&'s Snapshot),
    /// The admin listener: health, metrics and stats read from these sources.
    Admin(&'s Sources),
}

impl<'s> Service<'s> {
    /// The `--header` lines every response of this listener carries (none on the admin one).
    fn global_lines(self) -> &'s [u8] {
        match self {
            Service::Files(snapshot) => snapshot.site().headers.global_lines(),
            Service::Admin(_) => &[],
        }
    }
}

/// Everything besides the request that decides an answer, fixed for one worker turn.
#[derive(Clone, Copy)]
pub struct Site<'s> {
    pub service: Service<'s>,
    /// `Date` of this second.
    pub date: &'s [u8; date::LEN],
    /// The server is shutting down: every response says `Connection: close`, `/healthz` 503.
    pub draining: bool,
}

/// Buffers a worker lends each request, so that answering allocates nothing once warm.
#[derive(Default)]
pub struct PathBufs {
    /// The normalised path.
    path: Vec<u8>,
    /// The key a lookup tries (`/dir/index.html`), or a redirect's target.
    lookup: Vec<u8>,
    /// A `_redirects` rewrite's target, normalised.
    target: Vec<u8>,
    /// Custom field lines matched at request time (`_headers` for a 404 or a redirect).
    headers: Vec<u8>,
}

impl PathBufs {
    pub fn with_capacity(n: usize) -> Self {
        PathBufs {
            path: Vec::with_capacity(n),
            lookup: Vec::with_capacity(n),
            target: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
        }
    }
}

/// What the cache said to a request for a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// The request never reached the cache (an error, a redirect, the admin listener).
    None,
    /// Answered by the responder from the snapshot.
    Hit,
    /// Answered whole from the worker's rendered responses (`serve::rendered`), which only
    /// ever hold hits: counted apart, a hit all the same.
    Rendered,
    Miss,
}

/// What was answered: the transport counts it, records it, and closes if told to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// Body bytes queued (0 for HEAD, 304, 204).
    pub body_bytes: u64,
    /// This is the connection's last response: close once it is sent.
    pub close: bool,
    pub cache: CacheUse,
}

/// Queues the response to `req` and says what it was.
#[inline]
pub fn respond<'s>(
    req: &Request<'_>,
    site: Site<'s>,
    bufs: &mut PathBufs,
    out: &mut Turn<'_, 's>,
) -> Outcome {
    // A client that sent `Expect: 100-continue` may never send the body we would wait to
    // discard (we never say 100): answer and close instead of guessing where the next request
    // starts. The lingering close swallows a body that does come.
    let body_in_doubt = req.expect_continue && (req.body_len > 0 || req.chunked);
    let persistence = if !req.keep_alive || site.draining || body_in_doubt {
        Persistence::Close
    } else if req.minor_version == 0 {
        Persistence::KeepAlive10
    } else {
        Persistence::KeepAlive11
    };
    let frame = Frame { date: site.date, persistence, head_only: req.method == Method::Head };
    // `--header`s go on every public response; `_headers` rules too once there is a path.
    let global = site.service.global_lines();
    let plain = Extra { headers: global, ..Extra::default() };
    let allow = Extra { allow: true, ..plain };
    match req.method {
        Method::Get | Method::Head => {}
        Method::Options => return generated(out, frame, Status::NoContent, allow),
        Method::NotAllowed => return generated(out, frame, Status::MethodNotAllowed, allow),
        Method::Unknown => return generated(out, frame, Status::NotImplemented, plain),
    }
    let normalized = match path::normalize(req.target, &mut bufs.path) {
        Ok(n) => n,
        Err(_) => return reject(out, Status::BadRequest, frame, global),
    };
    match site.service {
        Service::Admin(sources) => match admin::answer(&bufs.path, req.accept, site.draining, sources) {
            Some(answer) => admin_answer(out, frame, &answer),
            None => generated(out, frame, Status::NotFound, Extra::default()),
        },
        Service::Files(snapshot) => files(req, frame, snapshot, normalized.dir, bufs, out),
    }
}

/// Answers from the snapshot, in this order (docs/http.md, "Which rule answers"):
/// 1. a forced `_redirects` rule (`!`), even where a file exists;
/// 2. the file (or directory index) at the path, or the 301 that adds a directory's slash;
/// 3. any other `_redirects` rule;
/// 4. the SPA fallback (`/index.html` for a path with no extension and no dot segment);
/// 5. `/404.html` with status 404, or a plain 404.
#[inline]
fn files<'s>(
    req: &Request<'_>,
    frame: Frame<'_>,
    snapshot: &'s Snapshot,
    dir: bool,
    bufs: &mut PathBufs,
    out: &mut Turn<'_, 's>,
) -> Outcome {
    let found = snapshot.find(&bufs.path, dir, &mut bufs.lookup);
    let redirects = &snapshot.site().redirects;
    if !redirects.is_empty() {
        let mut caps = Captures::default();
        let exists = !matches!(found, Lookup::NotFound);
        if let Some(rule) = redirects.find(&bufs.path, exists, &mut caps) {
            return redirect(req, frame, snapshot, rule, &caps, bufs, out);
        }
    }
    match found {
        Lookup::File(entry) => Outcome { cache: CacheUse::Hit, ..file(out, frame, entry, req) },
        Lookup::AddSlash => {
            let location = &mut bufs.lookup;
            location.clear();
            path::encode_into(&bufs.path, location);
            location.push(b'/');
            location.extend_from_slice(path::query(req.target));
            let extra = Extra {
                location: Some(location),
                cache_control: Some(snapshot.default_cache_control()),
                headers: matched(snapshot, &bufs.path, &mut bufs.headers),
                ..Extra::default()
            };
            generated(out, frame, Status::MovedPermanently, extra)
        }
        Lookup::NotFound => not_found(req, frame, snapshot, bufs, out),
    }
}

/// Nothing at the path: the SPA fallback, else `/404.html`, else a plain 404.
#[cold]
fn not_found<'s>(
    req: &Request<'_>,
    frame: Frame<'_>,
    snapshot: &'s Snapshot,
    bufs: &mut PathBufs,
    out: &mut Turn<'_, 's>,
) -> Outcome {
    if let Some(app) = snapshot.fallback(&bufs.path) {
        return Outcome { cache: CacheUse::Hit, ..file(out, frame, app, req) };
    }
    let headers = matched(snapshot, &bufs.path, &mut bufs.headers);
    let answer = match snapshot.get(b"/404.html") {
        Some(page) => page_with_status(out, frame, Status::NotFound, page, headers),
        None => generated(out, frame, Status::NotFound, Extra { headers, ..Extra::default() }),
    };
    Outcome { cache: CacheUse::Miss, ..answer }
}

/// Applies a `_redirects` rule: a redirect, a rewrite (the target's file, status 200, with
/// conditionals and ranges as for the file itself), or the target's content with status 404.
#[cold]
fn redirect<'s>(
    req: &Request<'_>,
    frame: Frame<'_>,
    snapshot: &'s Snapshot,
    rule: &Redirect,
    caps: &Captures,
    bufs: &mut PathBufs,
    out: &mut Turn<'_, 's>,
) -> Outcome {
    rule.expand(&bufs.path, caps, path::query(req.target), &mut bufs.lookup);
    let headers = matched(snapshot, &bufs.path, &mut bufs.headers);
    if let Action::Redirect(code) = rule.action {
        // A permanent redirect without a lifetime is kept by browsers for good.
        let permanent = code == 301 || code == 308;
        let extra = Extra {
            location: Some(&bufs.lookup),
            cache_control: permanent.then(|| snapshot.default_cache_control()),
            headers,
            ..Extra::default()
        };
        return generated(out, frame, Status::redirect(code), extra);
    }
    let target = match path::normalize(&bufs.lookup, &mut bufs.target) {
        // A rewrite to a directory named without its slash serves its index: the address bar
        // shows the rule's path, so there is no relative link to fix with a 301.
        Ok(target) => match snapshot.find(&bufs.target, target.dir, &mut bufs.lookup) {
            Lookup::AddSlash => snapshot.find(&bufs.target, true, &mut bufs.lookup),
            found => found,
        },
        Err(_) => Lookup::NotFound,
    };
    match (target, rule.action) {
        (Lookup::File(entry), Action::Rewrite) => {
            Outcome { cache: CacheUse::Hit, ..file(out, frame, entry, req) }
        }
        (Lookup::File(entry), _) => Outcome {
            cache: CacheUse::Miss,
            ..page_with_status(out, frame, Status::NotFound, entry, headers)
        },
        _ => Outcome {
            cache: CacheUse::Miss,
            ..generated(out, frame, Status::NotFound, Extra { headers, ..Extra::default() })
        },
    }
}

/// The `_headers` fields for a response at `path` that is not a cached file, written into `buf`.
fn matched<'b>(snapshot: &Snapshot, path: &[u8], buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    snapshot.site().headers.write_matching(path, buf);
    buf
}

/// Queues `entry`'s identity body with `status` (a 404 page): no validators, no ranges.
fn page_with_status<'s>(
    out: &mut Turn<'_, 's>,
    frame: Frame<'_>,
    status: Status,
    entry: &'s Entry,
    headers: &[u8],
) -> Outcome {
    let repr = &entry.identity;
    let len = repr.len();
    out.push_own(|buf| response::write_page_head(buf, status, &entry.content_type, len, headers, frame));
    if frame.head_only {
        return outcome(frame, status, 0);
    }
    match &repr.file {
        Some(disk) => out.push_file(disk, 0, len),
        None => out.push_shared(&repr.body),
    }
    outcome(frame, status, len)
}

/// Queues an error that ends the connection — a request that could not be parsed, or did not
/// arrive in time: the framing of whatever follows is in doubt. `head_only`: the request was
/// seen to be a `HEAD`, whose response never has a body.
pub fn invalid(out: &mut OutQueue, status: Status, site: Site<'_>, head_only: bool) -> Outcome {
    let frame = Frame { date: site.date, persistence: Persistence::Close, head_only };
    reject(out, status, frame, site.service.global_lines())
}

fn reject(out: &mut OutQueue, status: Status, frame: Frame<'_>, headers: &[u8]) -> Outcome {
    let extra = Extra { headers, ..Extra::default() };
    generated(out, Frame { persistence: Persistence::Close, ..frame }, status, extra)
}

/// Queues a generated response (errors, redirects, `204`).
fn generated(out: &mut OutQueue, frame: Frame<'_>, status: Status, extra: Extra<'_>) -> Outcome {
    let mut body = 0;
    out.push_own(|buf| body = response::write_generated(buf, status, extra, frame));
    outcome(frame, status, body as u64)
}

fn admin_answer(out: &mut OutQueue, frame: Frame<'_>, answer: &Answer) -> Outcome {
    let extra =
        Extra { no_store: true, content_type: answer.content_type, cors: answer.cors, ..Extra::default() };
    let mut body = 0;
    out.push_own(|buf| body = response::write_text(buf, answer.status, extra, answer.body.as_bytes(), frame));
    outcome(frame, answer.status, body as u64)
}

#[inline]
fn outcome(frame: Frame<'_>, status: Status, body_bytes: u64) -> Outcome {
    Outcome { status, body_bytes, close: frame.persistence == Persistence::Close, cache: CacheUse::None }
}

/// Answers a request for a cached file: pick the representation `Accept-Encoding` prefers,
/// then preconditions (304/412), then `Range` on that representation (206/416, GET only, and
/// only if `If-Range` allows), else the whole representation (200). Heads and bodies are queued
/// straight from the snapshot, borrowed for the turn.
fn file<'s>(out: &mut Turn<'_, 's>, frame: Frame<'_>, entry: &'s Entry, req: &Request<'_>) -> Outcome {
    let wants = AcceptEncoding::parse(req.accept_encoding);
    let (mut repr, mut coding) = entry.repr(wants.choose(|c| entry.variant(c).is_some()));
    if req.conditions.if_none_match.is_some() && !conditional::names(&req.conditions, &repr.etag) {
        (repr, coding) = held(entry, wants, &req.conditions).unwrap_or((repr, coding));
    }
    match conditional::evaluate(&req.conditions, &repr.etag, entry.modified) {
        conditional::Outcome::Proceed => {}
        conditional::Outcome::NotModified => {
            out.push_shared(&repr.not_modified);
            out.push_own(|buf| response::write_tail(buf, frame));
            return outcome(frame, Status::NotModified, 0);
        }
        conditional::Outcome::PreconditionFailed => {
            let extra = Extra { headers: &entry.headers, ..Extra::default() };
            return generated(out, frame, Status::PreconditionFailed, extra);
        }
    }
    let len = repr.len();
    let wanted = match req.range {
        Some(header)
            if req.method == Method::Get
                && conditional::range_applies(&req.conditions, &repr.etag, entry.modified) =>
        {
            range::parse(header, len)
        }
        _ => Range::Full,
    };
    match wanted {
        Range::Full => {
            out.push_shared(&repr.head);
            out.push_own(|buf| response::write_tail(buf, frame));
            if frame.head_only {
                return outcome(frame, Status::Ok, 0);
            }
            match &repr.file {
                Some(disk) => out.push_file(disk, 0, len),
                None => out.push_shared(&repr.body),
            }
            outcome(frame, Status::Ok, len)
        }
        Range::Part { start, end } => {
            let last_modified = date::format(entry.modified);
            let m = file_meta(entry, repr, coding, &last_modified);
            out.push_own(|buf| {
                response::write_partial_head(buf, &m, start, end);
                response::write_tail(buf, frame);
            });
            // `start <= end < len` by `range::parse`.
            match &repr.file {
                Some(disk) => out.push_file(disk, start, end + 1),
                None => out.push_shared_range(&repr.body, start as usize, end as usize + 1),
            }
            outcome(frame, Status::PartialContent, end - start + 1)
        }
        Range::Unsatisfiable => {
            let last_modified = date::format(entry.modified);
            let m = file_meta(entry, repr, coding, &last_modified);
            out.push_own(|buf| response::write_unsatisfiable(buf, &m, frame));
            outcome(frame, Status::RangeNotSatisfiable, 0)
        }
    }
}

/// The representation of `entry` that the client says it holds (its `If-None-Match` names
/// that one's tag) and accepts, if it is not the one negotiation picked: select it, so that the
/// answer is a `304` with its own `ETag`, not a `200` of the same content in another coding.
///
/// This happens when the variants changed between two requests: a page loaded while the
/// compressed variants were still being built (phase 2 of a load, `cache::variants`) got
/// identity, and revalidates once brotli exists. RFC 9110 §12.1 leaves the choice of
/// representation to the server; choosing the one the client already has saves a download
/// and keeps the client's stored `ETag` and body in step.
#[cold]
fn held<'s>(
    entry: &'s Entry,
    wants: AcceptEncoding,
    conditions: &Conditions<'_>,
) -> Option<(&'s Repr, Coding)> {
    [Coding::Identity, Coding::Gzip, Coding::Zstd, Coding::Br]
        .into_iter()
        .filter(|&c| wants.accepts(c))
        .filter_map(|c| Some((if c == Coding::Identity { &entry.identity } else { entry.variant(c)? }, c)))
        .find(|(repr, _)| conditional::names(conditions, &repr.etag))
}

/// The fields that describe one representation of `entry` in a generated (206/416) head.
fn file_meta<'a>(
    entry: &'a Entry,
    repr: &'a Repr,
    coding: Coding,
    last_modified: &'a [u8; date::LEN],
) -> FileMeta<'a> {
    FileMeta {
        content_type: &entry.content_type,
        encoding: coding.token(),
        vary: entry.varies(),
        len: repr.len(),
        etag: &repr.etag,
        last_modified,
        cache_control: &entry.cache_control,
        headers: &entry.headers,
    }
}

#[cfg(test)]
mod tests {
    //! The responder on its own: requests parsed from text, a snapshot loaded from a temporary
    //! directory, the answer read back from the output queue. No socket anywhere.
    use super::*;
    use crate::cache::{load, LoadOptions};
    use crate::http::request::{self, Limits, Parsed};
    use std::sync::OnceLock;

    const APP_JS: &str = "export function app() { return 'hello, world'; }\n";

    fn snapshot() -> &'static Snapshot {
        static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
        SNAPSHOT.get_or_init(|| {
            let root = std::env::temp_dir().join(format!("atomserve-respond-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("assets")).unwrap();
            std::fs::create_dir_all(root.join("docs")).unwrap();
            std::fs::write(root.join("index.html"), "<!doctype html><title>app</title>\n").unwrap();
            std::fs::write(root.join("docs/index.html"), "docs\n").unwrap();
            std::fs::write(root.join("assets/app-Bx81kQz2.js"), APP_JS.repeat(20)).unwrap();
            let rules =
                "/docs-again /docs 200\n/old/:page /docs/?p=:page 302\n/hidden/* /docs/index.html 404!\n";
            std::fs::write(root.join("_redirects"), rules).unwrap();
            std::fs::write(root.join("_headers"), "/docs/*\n  X-Docs: 1\n").unwrap();
            let snapshot = load(&LoadOptions::for_tests(root.clone(), true)).unwrap();
            std::fs::remove_dir_all(&root).unwrap();
            snapshot
        })
    }

    const DATE: &[u8; date::LEN] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    /// Parses `raw` (given a `Host` field, which HTTP/1.1 requires) and answers it; returns the
    /// outcome and the bytes the client would get.
    fn ask(raw: &str, service: Service<'_>, draining: bool) -> (Outcome, String) {
        let raw = &raw.replacen("\r\n", "\r\nHost: example.test\r\n", 1);
        let mut fields = request::Fields::default();
        let Parsed::Complete(req) = request::parse(raw.as_bytes(), &Limits::default(), &mut fields) else {
            panic!("not a complete request: {raw:?}");
        };
        let mut out = OutQueue::default();
        let mut bufs = PathBufs::default();
        let site = Site { service, date: DATE, draining };
        let outcome = out.turn(|out| respond(&req, site, &mut bufs, out));
        (outcome, String::from_utf8_lossy(&out.contents().unwrap()).into_owned())
    }

    fn get(raw: &str) -> (Outcome, String) {
        ask(raw, Service::Files(snapshot()), false)
    }

    /// The value of field `name` in the response head.
    fn field<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let head = response.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[test]
    fn a_cached_file_is_answered_whole_with_its_length_and_validators() {
        let (o, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\n\r\n");
        let len = APP_JS.len() * 20;
        assert_eq!(
            o,
            Outcome { status: Status::Ok, body_bytes: len as u64, close: false, cache: CacheUse::Hit }
        );
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert_eq!(field(&r, "Content-Length"), Some(len.to_string().as_str()));
        assert_eq!(field(&r, "Date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(field(&r, "ETag").is_some() && field(&r, "Last-Modified").is_some());
        assert_eq!(field(&r, "Connection"), None, "HTTP/1.1 keeps alive by default");
        assert_eq!(body(&r), APP_JS.repeat(20));
    }

    #[test]
    fn head_gets_the_same_head_and_no_body() {
        let (get_o, get_r) = get("GET /index.html HTTP/1.1\r\n\r\n");
        let (o, r) = get("HEAD /index.html HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.body_bytes), (Status::Ok, 0));
        assert_eq!(r, get_r.split_inclusive("\r\n\r\n").next().unwrap());
        assert!(get_o.body_bytes > 0);
    }

    #[test]
    fn the_preferred_encoding_is_chosen_and_varies() {
        let (o, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\nAccept-Encoding: gzip, br\r\n\r\n");
        assert_eq!(field(&r, "Content-Encoding"), Some("br"));
        assert_eq!(field(&r, "Vary"), Some("Accept-Encoding"));
        assert!(o.body_bytes < (APP_JS.len() * 20) as u64, "compressed");
        let (_, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
        assert_eq!(field(&r, "Content-Encoding"), Some("gzip"));
        let (_, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\nAccept-Encoding: br;q=0, gzip;q=0\r\n\r\n");
        assert_eq!(field(&r, "Content-Encoding"), None);
    }

    #[test]
    fn conditionals_answer_304_and_412() {
        let (_, r) = get("GET /index.html HTTP/1.1\r\n\r\n");
        let etag = field(&r, "ETag").unwrap();
        let (o, r) = get(&format!("GET /index.html HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n"));
        assert_eq!((o.status, o.body_bytes), (Status::NotModified, 0));
        assert!(r.starts_with("HTTP/1.1 304 Not Modified\r\n") && body(&r).is_empty(), "{r}");
        assert_eq!(field(&r, "ETag"), Some(etag));
        let (o, _) = get("GET /index.html HTTP/1.1\r\nIf-Match: \"other\"\r\n\r\n");
        assert_eq!(o.status, Status::PreconditionFailed);
        assert!(!o.close);
    }

    #[test]
    fn ranges_answer_206_and_416_on_the_chosen_representation() {
        let (o, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\nRange: bytes=7-14\r\n\r\n");
        assert_eq!((o.status, o.body_bytes), (Status::PartialContent, 8));
        let total = APP_JS.len() * 20;
        assert_eq!(field(&r, "Content-Range"), Some(format!("bytes 7-14/{total}").as_str()));
        assert_eq!(body(&r), &APP_JS[7..15]);
        let (o, r) = get("GET /assets/app-Bx81kQz2.js HTTP/1.1\r\nRange: bytes=999999-\r\n\r\n");
        assert_eq!(o.status, Status::RangeNotSatisfiable);
        assert_eq!(field(&r, "Content-Range"), Some(format!("bytes */{total}").as_str()));
        // HEAD ignores Range (GET only); a stale If-Range sends the whole file.
        assert_eq!(get("HEAD /index.html HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n").0.status, Status::Ok);
        let stale = "GET /index.html HTTP/1.1\r\nRange: bytes=0-1\r\nIf-Range: \"old\"\r\n\r\n";
        assert_eq!(get(stale).0.status, Status::Ok);
    }

    #[test]
    fn a_directory_without_its_slash_is_redirected_keeping_the_query() {
        let (o, r) = get("GET /docs?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.cache), (Status::MovedPermanently, CacheUse::None));
        assert_eq!(field(&r, "Location"), Some("/docs/?x=1"));
        assert_eq!(field(&r, "Cache-Control"), Some("no-cache"), "never a permanent redirect forever");
        assert_eq!(get("GET /docs/ HTTP/1.1\r\n\r\n").0.status, Status::Ok);
    }

    #[test]
    fn spa_routes_get_the_app_and_missing_assets_404() {
        let (o, r) = get("GET /settings/profile HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.cache), (Status::Ok, CacheUse::Hit));
        assert_eq!(body(&r), "<!doctype html><title>app</title>\n");
        let (o, _) = get("GET /assets/missing-AAAAAAAA.js HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.cache, o.close), (Status::NotFound, CacheUse::Miss, false));
        assert_eq!(
            get("GET /.git/config HTTP/1.1\r\n\r\n").0.status,
            Status::NotFound,
            "dotfiles never fall back"
        );
    }

    /// `_redirects` and `_headers` as the responder applies them (the loader compiled them from
    /// the fixture root): a rewrite to a directory without its slash, a redirect with a
    /// placeholder, a forced 404 with the target's content, and the fields matched per path.
    #[test]
    fn site_rules_rewrite_redirect_and_answer_404_with_their_fields() {
        let (o, r) = get("GET /docs-again HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.cache, body(&r)), (Status::Ok, CacheUse::Hit, "docs\n"));
        assert_eq!(field(&r, "X-Docs"), Some("1"), "the rewritten file's own fields");
        let (o, r) = get("GET /old/intro HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, field(&r, "Location")), (Status::Found, Some("/docs/?p=intro")));
        assert_eq!(field(&r, "X-Docs"), None, "a redirect gets the fields of its own path");
        let (o, r) = get("GET /hidden/x HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.cache, body(&r)), (Status::NotFound, CacheUse::Miss, "docs\n"));
        assert_eq!(field(&r, "ETag"), None);
        let (_, r) = get("GET /docs/missing.txt HTTP/1.1\r\n\r\n");
        assert_eq!(field(&r, "X-Docs"), Some("1"), "a 404 matches the rules at request time");
    }

    #[test]
    fn methods_other_than_get_and_head() {
        let (o, r) = get("OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.body_bytes), (Status::NoContent, 0));
        assert_eq!(field(&r, "Allow"), Some("GET, HEAD, OPTIONS"));
        let (o, r) = get("POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(o.status, Status::MethodNotAllowed);
        assert!(field(&r, "Allow").is_some());
        assert_eq!(get("BREW /pot HTTP/1.1\r\n\r\n").0.status, Status::NotImplemented);
    }

    #[test]
    fn a_target_that_is_no_path_is_400_and_closes() {
        let (o, r) = get("GET /a%zz HTTP/1.1\r\n\r\n");
        assert_eq!((o.status, o.close), (Status::BadRequest, true));
        assert_eq!(field(&r, "Connection"), Some("close"));
    }

    #[test]
    fn when_the_connection_closes() {
        let close = |raw: &str, draining| ask(raw, Service::Files(snapshot()), draining).0.close;
        assert!(!close("GET / HTTP/1.1\r\n\r\n", false));
        assert!(close("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false));
        assert!(close("GET / HTTP/1.0\r\n\r\n", false), "1.0 closes unless asked");
        assert!(!close("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false));
        assert!(close("GET / HTTP/1.1\r\n\r\n", true), "draining: every answer is the last");
        // A body held back for a 100 Continue we never send: where the next request starts is
        // unknown, so this answer is the last.
        let expect = "GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert!(close(expect, false));
        let (_, r) = get("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(field(&r, "Connection"), Some("keep-alive"));
    }

    #[test]
    fn the_admin_listener_answers_health_metrics_and_stats_and_nothing_else() {
        let sources = Sources::for_tests();
        let admin = |raw: &str, draining| ask(raw, Service::Admin(&sources), draining);
        let (o, r) = admin("GET /healthz HTTP/1.1\r\n\r\n", false);
        assert_eq!((o.status, o.cache), (Status::Ok, CacheUse::None));
        assert_eq!(body(&r), "ok\n");
        assert_eq!(field(&r, "Cache-Control"), Some("no-store"));
        let (o, r) = admin("GET /healthz HTTP/1.1\r\n\r\n", true);
        assert_eq!((o.status, o.close), (Status::ServiceUnavailable, true));
        assert_eq!(body(&r), "draining\n");
        let (o, r) = admin("GET /metrics HTTP/1.1\r\n\r\n", false);
        assert_eq!(o.status, Status::Ok);
        assert!(body(&r).contains("atomserve_http_requests_total"), "{r}");
        let (_, r) = admin("GET /stats HTTP/1.1\r\n\r\n", false);
        assert_eq!(field(&r, "Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(field(&r, "Content-Type"), Some("application/json"));
        assert_eq!(admin("GET /index.html HTTP/1.1\r\n\r\n", false).0.status, Status::NotFound);
        let (o, r) = admin("HEAD /healthz HTTP/1.1\r\n\r\n", false);
        assert_eq!((o.body_bytes, body(&r)), (0, ""));
    }

    #[test]
    fn an_invalid_request_gets_its_status_closes_and_head_has_no_body() {
        let mut out = OutQueue::default();
        let site = Site { service: Service::Files(snapshot()), date: DATE, draining: false };
        let o = invalid(&mut out, Status::HeaderFieldsTooLarge, site, true);
        assert_eq!((o.status, o.close, o.body_bytes), (Status::HeaderFieldsTooLarge, true, 0));
        let r = String::from_utf8(out.contents().unwrap()).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 ") && r.ends_with("\r\n\r\n"), "{r}");
        assert_eq!(field(&r, "Connection"), Some("close"));
    }
}
