//! `_headers`: custom response fields by URL pattern, in Netlify's and Cloudflare Pages' syntax.
//!
//! ```text
//! # a comment
//! /*
//!   X-Frame-Options: DENY
//!   Content-Security-Policy: default-src 'self'
//! /assets/*
//!   Cache-Control: max-age=31536000, immutable
//! /embed/*
//!   ! X-Frame-Options
//! ```
//!
//! A line starting with `/` opens a rule; the indented `Name: value` lines under it are the
//! fields it adds, and `! Name` *detaches* a field that another matching rule (or `--header`)
//! adds. Every matching rule applies. `Cache-Control` and `Content-Type` replace atomserve's own
//! value (a later rule's over an earlier one's); other fields are added, repeated if several
//! rules set them. Fields that would break framing or contradict what atomserve computes per
//! representation are refused at load ([`refused`]).
//!
//! For a cached file the rules are applied **at load**, into its pre-rendered heads: a request
//! pays nothing. Responses that are not a cached file (redirects, 404s, errors) match the rules
//! at request time with [`HeaderRules::write_matching`], which writes into a buffer the worker
//! reuses and allocates nothing.

use super::pattern::{Captures, Pattern};
use super::{Limits, SiteError};

/// One `Name: value` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Box<str>,
    pub value: Box<str>,
}

impl Field {
    /// Checks a field from `_headers` or `--header`: a token name, a value without control
    /// characters, within the limits, and not one atomserve must write itself.
    pub fn new(name: &str, value: &str, limits: &Limits) -> Result<Field, String> {
        let name = name.trim();
        let value = value.trim();
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("{name:?} is not a valid field name"));
        }
        if let Some(why) = refused(name) {
            return Err(format!("{name} cannot be set: {why}"));
        }
        if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(format!("the value of {name} contains a control character (CR, LF, NUL…)"));
        }
        if value.len() > limits.max_value_len {
            return Err(format!("the value of {name} is longer than {} bytes", limits.max_value_len));
        }
        Ok(Field { name: name.into(), value: value.into() })
    }

    fn is(&self, lower: &str) -> bool {
        self.name.eq_ignore_ascii_case(lower)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(self.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Why a field name may not be set by configuration, if it may not.
pub fn refused(name: &str) -> Option<&'static str> {
    const FRAMING: &[&str] = &[
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    ];
    const COMPUTED: &[&str] = &[
        "content-encoding",
        "content-range",
        "etag",
        "last-modified",
        "date",
        "vary",
        "accept-ranges",
        "server",
    ];
    let lower = name.to_ascii_lowercase();
    if FRAMING.contains(&lower.as_str()) {
        Some("it frames the message or the connection (hop-by-hop)")
    } else if COMPUTED.contains(&lower.as_str()) {
        Some("atomserve computes it for each representation")
    } else {
        None
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[derive(Clone, Debug)]
struct Rule {
    pattern: Pattern,
    set: Vec<Field>,
    /// Lower-case names this rule detaches.
    detach: Vec<Box<str>>,
}

/// The compiled `_headers` file plus `--header`s.
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    /// `--header` fields: every public response carries them (unless a rule detaches one).
    global: Vec<Field>,
    rules: Vec<Rule>,
    /// `global` rendered once, for responses that have no path to match (unparsable requests).
    global_lines: Box<[u8]>,
}

/// What the rules give one cached file, applied at load.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Field lines (`Name: value\r\n`…) to add to its heads.
    pub lines: Vec<u8>,
    pub content_type: Option<Box<str>>,
    pub cache_control: Option<Box<str>>,
}

impl HeaderRules {
    /// Compiles `text` (the `_headers` file called `file`, possibly empty) with the `--header`
    /// fields `global`.
    pub fn parse(text: &str, file: &str, global: Vec<Field>, limits: &Limits) -> Result<Self, SiteError> {
        let err = |line: usize, message: String| SiteError { file: file.into(), line, message };
        let mut rules: Vec<Rule> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indented = line.starts_with([' ', '\t']);
            if !indented {
                if !trimmed.starts_with('/') {
                    return Err(err(n, format!("{trimmed:?}: a rule starts with a path (/…); host patterns are not supported, and fields must be indented")));
                }
                if rules.len() == limits.max_header_rules {
                    return Err(err(n, format!("more than {} rules", limits.max_header_rules)));
                }
                let pattern = Pattern::parse(trimmed).map_err(|e| err(n, e.0))?;
                rules.push(Rule { pattern, set: Vec::new(), detach: Vec::new() });
                continue;
            }
            let Some(rule) = rules.last_mut() else {
                return Err(err(n, "a field before any path".into()));
            };
            if let Some(name) = trimmed.strip_prefix('!') {
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(is_tchar) {
                    return Err(err(n, format!("{name:?} is not a valid field name")));
                }
                rule.detach.push(name.to_ascii_lowercase().into());
                continue;
            }
            let Some((name, value)) = trimmed.split_once(':') else {
                return Err(err(n, format!("{trimmed:?} is not `Name: value` or `! Name`")));
            };
            rule.set.push(Field::new(name, value, limits).map_err(|m| err(n, m))?);
        }
        let mut global_lines = Vec::new();
        for f in &global {
            if !f.is("content-type") && !f.is("cache-control") {
                f.write(&mut global_lines);
            }
        }
        Ok(HeaderRules { global, rules, global_lines: global_lines.into() })
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.rules.is_empty()
    }

    /// Number of `_headers` rules.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The `--header` lines alone (for a response to a request that could not be parsed).
    pub fn global_lines(&self) -> &[u8] {
        &self.global_lines
    }

    /// What the rules give the cached file at `path` (load time).
    pub fn apply(&self, path: &[u8]) -> Applied {
        let mut applied = Applied::default();
        self.each(path, |f| {
            if f.is("content-type") {
                applied.content_type = Some(f.value.clone());
            } else if f.is("cache-control") {
                applied.cache_control = Some(f.value.clone());
            } else {
                f.write(&mut applied.lines);
            }
        });
        applied
    }

    /// Appends the fields for a response at `path` that is not a cached file (a redirect, a
    /// 404): every added field but `Content-Type` and `Cache-Control`, which belong to the file
    /// they were written for. Allocates nothing beyond `out`'s growth.
    pub fn write_matching(&self, path: &[u8], out: &mut Vec<u8>) {
        self.each(path, |f| {
            if !f.is("content-type") && !f.is("cache-control") {
                f.write(out);
            }
        });
    }

    /// Calls `visit` with each field that applies at `path`, in order: `--header`s first, then
    /// each matching rule's, leaving out those a matching rule detaches.
    fn each(&self, path: &[u8], mut visit: impl FnMut(&Field)) {
        if self.is_empty() {
            return;
        }
        let mut caps = Captures::default();
        let detached = |f: &Field, caps: &mut Captures| {
            self.rules.iter().any(|r| {
                !r.detach.is_empty() && r.detach.iter().any(|d| f.is(d)) && r.pattern.matches(path, caps)
            })
        };
        for f in &self.global {
            if !detached(f, &mut caps) {
                visit(f);
            }
        }
        for rule in &self.rules {
            if rule.set.is_empty() || !rule.pattern.matches(path, &mut caps) {
                continue;
            }
            for f in &rule.set {
                if !detached(f, &mut caps) {
                    visit(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> HeaderRules {
        HeaderRules::parse(text, "_headers", Vec::new(), &Limits::default()).unwrap()
    }

    fn error(text: &str) -> String {
        HeaderRules::parse(text, "_headers", Vec::new(), &Limits::default()).unwrap_err().to_string()
    }

    const EXAMPLE: &str = "# site-wide\n/*\n  X-Frame-Options: DENY\n  X-Content-Type-Options: nosniff\n\n\
/assets/*\n  Cache-Control: max-age=31536000, immutable\n  Access-Control-Allow-Origin: *\n\
/embed/*\n  ! X-Frame-Options\n/feed.xml\n  Content-Type: application/rss+xml\r\n";

    #[test]
    fn every_matching_rule_applies_in_order() {
        let r = rules(EXAMPLE);
        let a = r.apply(b"/assets/app.js");
        assert_eq!(
            String::from_utf8(a.lines).unwrap(),
            "X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nAccess-Control-Allow-Origin: *\r\n"
        );
        assert_eq!(a.cache_control.as_deref(), Some("max-age=31536000, immutable"));
        assert_eq!(a.content_type, None);
        assert_eq!(r.apply(b"/feed.xml").content_type.as_deref(), Some("application/rss+xml"));
    }

    #[test]
    fn a_detached_field_is_left_out_where_its_rule_matches() {
        let r = rules(EXAMPLE);
        let a = r.apply(b"/embed/player.html");
        assert_eq!(String::from_utf8(a.lines).unwrap(), "X-Content-Type-Options: nosniff\r\n");
        let global = vec![Field::new("X-Frame-Options", "SAMEORIGIN", &Limits::default()).unwrap()];
        let r = HeaderRules::parse(EXAMPLE, "_headers", global, &Limits::default()).unwrap();
        assert!(!String::from_utf8(r.apply(b"/embed/x").lines).unwrap().contains("SAMEORIGIN"));
        assert!(String::from_utf8(r.apply(b"/x").lines)
            .unwrap()
            .starts_with("X-Frame-Options: SAMEORIGIN\r\n"));
    }

    #[test]
    fn at_request_time_only_added_fields_are_written() {
        let r = rules(EXAMPLE);
        let mut out = Vec::new();
        r.write_matching(b"/assets/missing.js", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nAccess-Control-Allow-Origin: *\r\n"
        );
    }

    #[test]
    fn malformed_files_name_the_line_and_the_problem() {
        assert_eq!(
            error("/a\n  X-Ok: 1\n  Bad Name: 2\n"),
            "_headers:3: \"Bad Name\" is not a valid field name"
        );
        assert!(error("  X-A: 1\n").starts_with("_headers:1: a field before any path"));
        assert!(error("/a\nX-A: 1\n").contains("must be indented"));
        assert!(error("/a\n  Content-Length: 5\n").contains("frames the message"));
        assert!(error("/a\n  Transfer-Encoding: chunked\n").contains("hop-by-hop"));
        assert!(error("/a\n  ETag: \"x\"\n").contains("computes it"));
        assert!(error("/a\n  X-A: a\u{0}b\n").contains("control character"));
        assert!(error("/a\n  X-A: a\rb\n").contains("control character"));
        assert!(error("/a\n  no colon here\n").contains("is not `Name: value`"));
        assert!(error("/a/*/b\n").contains("may only end"));
        assert!(error(&format!("/a\n  X-A: {}\n", "v".repeat(2001))).contains("longer than 2000"));
        let many: String = (0..101).map(|i| format!("/p{i}\n  X-A: 1\n")).collect();
        assert_eq!(error(&many), "_headers:201: more than 100 rules");
    }
}
