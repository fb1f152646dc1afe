//! URL patterns of `_headers` and `_redirects` (Netlify's and Cloudflare Pages' syntax), matched
//! against a normalised request path without allocating.
//!
//! A pattern is a path whose segments are literal, a `:placeholder` (exactly one non-empty
//! segment), or — last only — `*`, the *splat*, which matches the rest of the path, empty
//! included: `/blog/*` matches `/blog`, `/blog/` and `/blog/2024/post`. Matching is on the
//! decoded, normalised key (`crate::http::path::normalize`), so `/caf%C3%A9` and `/café` are one
//! path, and dot segments are already resolved.
//!
//! A target (the right-hand side of a redirect) may use what the pattern captured: `:name` for
//! a placeholder and `:splat` for the splat, anywhere in it (`/articles/:year-:month`).

use std::fmt;

/// The most placeholders one pattern may have.
pub const MAX_PLACEHOLDERS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<[u8]>),
    /// A placeholder: its index among the pattern's placeholders.
    Placeholder(usize),
}

/// A compiled URL pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    segments: Box<[Segment]>,
    /// The pattern ends with `*`.
    splat: bool,
    /// Placeholder names, in order (`:slug` → `slug`).
    names: Box<[Box<str>]>,
}

/// What a match captured: byte ranges of the matched path.
#[derive(Clone, Copy, Debug, Default)]
pub struct Captures {
    placeholders: [(usize, usize); MAX_PLACEHOLDERS],
    splat: (usize, usize),
}

impl Captures {
    /// The text of placeholder `i` in `path`.
    pub fn placeholder<'p>(&self, path: &'p [u8], i: usize) -> &'p [u8] {
        let (a, b) = self.placeholders[i];
        &path[a..b]
    }

    /// The text the splat matched in `path` (without its leading slash).
    pub fn splat<'p>(&self, path: &'p [u8]) -> &'p [u8] {
        &path[self.splat.0..self.splat.1]
    }
}

/// Why a pattern is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Pattern {
    /// Compiles `text`, which must start with `/`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError(format!("pattern {text:?} must start with /")));
        }
        let mut segments = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut splat = false;
        let body = text.trim_end_matches('/');
        let parts: Vec<&str> = if body.is_empty() { Vec::new() } else { body[1..].split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(PatternError(format!("in {text:?}: * may only end a pattern")));
                }
                splat = true;
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return Err(PatternError(format!("in {text:?}: bad placeholder :{name}")));
                }
                if name == "splat" || names.iter().any(|n| &**n == name) {
                    return Err(PatternError(format!("in {text:?}: placeholder :{name} used twice")));
                }
                if names.len() == MAX_PLACEHOLDERS {
                    return Err(PatternError(format!(
                        "in {text:?}: more than {MAX_PLACEHOLDERS} placeholders"
                    )));
                }
                segments.push(Segment::Placeholder(names.len()));
                names.push(name.into());
            } else if part.contains('*') {
                return Err(PatternError(format!("in {text:?}: * must be a whole segment")));
            } else if part.is_empty() || *part == "." || *part == ".." {
                return Err(PatternError(format!("in {text:?}: empty or dot segment")));
            } else {
                segments.push(Segment::Literal(part.as_bytes().into()));
            }
        }
        Ok(Pattern { segments: segments.into(), splat, names: names.into() })
    }

    /// The pattern is a fixed path: no placeholder, no splat.
    pub fn is_static(&self) -> bool {
        !self.splat && self.names.is_empty()
    }

    /// The path a static pattern matches (`/a/b`; `/` for the root).
    pub fn static_path(&self) -> Option<Vec<u8>> {
        if !self.is_static() {
            return None;
        }
        let mut path = Vec::new();
        for s in self.segments.iter() {
            if let Segment::Literal(l) = s {
                path.push(b'/');
                path.extend_from_slice(l);
            }
        }
        if path.is_empty() {
            path.push(b'/');
        }
        Some(path)
    }

    /// The pattern is `/*`: every path.
    pub fn matches_everything(&self) -> bool {
        self.splat && self.segments.is_empty()
    }

    /// The index of placeholder `name`, if the pattern has it.
    pub fn placeholder(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    pub fn has_splat(&self) -> bool {
        self.splat
    }

    /// Matches a normalised path (`/`, `/a/b`; no trailing slash but for the root).
    pub fn matches(&self, path: &[u8], caps: &mut Captures) -> bool {
        let mut pos = 0; // at a '/' (or the end)
        for segment in self.segments.iter() {
            if pos >= path.len() || path[pos] != b'/' {
                return false;
            }
            let start = pos + 1;
            let end = path[start..].iter().position(|&c| c == b'/').map_or(path.len(), |i| start + i);
            if start == end {
                return false; // the root `/` has no segment
            }
            match segment {
                Segment::Literal(l) => {
                    if path[start..end] != **l {
                        return false;
                    }
                }
                Segment::Placeholder(i) => caps.placeholders[*i] = (start, end),
            }
            pos = end;
        }
        let rest = &path[pos..];
        if self.splat {
            let from = if rest.first() == Some(&b'/') { pos + 1 } else { pos };
            caps.splat = (from, path.len());
            true
        } else {
            rest.is_empty() || rest == b"/"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> Option<Vec<String>> {
        let p = Pattern::parse(pattern).unwrap();
        let mut caps = Captures::default();
        p.matches(path.as_bytes(), &mut caps).then(|| {
            let mut out: Vec<String> = (0..p.names.len())
                .map(|i| String::from_utf8_lossy(caps.placeholder(path.as_bytes(), i)).into_owned())
                .collect();
            if p.splat {
                out.push(format!("*{}", String::from_utf8_lossy(caps.splat(path.as_bytes()))));
            }
            out
        })
    }

    #[test]
    fn literals_match_whole_segments_only() {
        assert_eq!(m("/about", "/about"), Some(vec![]));
        assert_eq!(m("/about", "/about/"), Some(vec![]));
        assert_eq!(m("/about", "/aboutus"), None);
        assert_eq!(m("/about", "/about/team"), None);
        assert_eq!(m("/", "/"), Some(vec![]));
        assert_eq!(m("/", "/a"), None);
    }

    #[test]
    fn placeholders_take_one_non_empty_segment() {
        assert_eq!(m("/blog/:year/:slug", "/blog/2024/hello"), Some(vec!["2024".into(), "hello".into()]));
        assert_eq!(m("/blog/:year/:slug", "/blog/2024"), None);
        assert_eq!(m("/blog/:year/:slug", "/blog/2024/hello/more"), None);
        assert_eq!(m("/u/:id", "/u/caf\u{e9}"), Some(vec!["caf\u{e9}".into()]));
    }

    #[test]
    fn the_splat_takes_the_rest_empty_included() {
        assert_eq!(m("/news/*", "/news/2024/jan"), Some(vec!["*2024/jan".into()]));
        assert_eq!(m("/news/*", "/news"), Some(vec!["*".into()]));
        assert_eq!(m("/news/*", "/newsroom"), None);
        assert_eq!(m("/*", "/"), Some(vec!["*".into()]));
        assert_eq!(m("/*", "/a/b"), Some(vec!["*a/b".into()]));
        assert_eq!(m("/:lang/*", "/fr/docs/x"), Some(vec!["fr".into(), "*docs/x".into()]));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["about", "/a/*/b", "/a*", "/:", "/:a/:a", "/:splat", "/a//b", "/a/../b", "/:x-y"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} accepted");
        }
        let nine = (0..9).map(|i| format!("/:p{i}")).collect::<String>();
        assert!(Pattern::parse(&nine).unwrap_err().0.contains("more than 8"));
    }

    #[test]
    fn static_patterns_know_their_path() {
        assert_eq!(Pattern::parse("/a/b/").unwrap().static_path(), Some(b"/a/b".to_vec()));
        assert_eq!(Pattern::parse("/").unwrap().static_path(), Some(b"/".to_vec()));
        assert_eq!(Pattern::parse("/a/*").unwrap().static_path(), None);
        assert!(Pattern::parse("/*").unwrap().matches_everything());
    }
}
