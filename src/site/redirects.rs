//! `_redirects`: redirects and rewrites by URL pattern, in Netlify's and Cloudflare Pages'
//! syntax.
//!
//! ```text
//! # from                 to                               status
//! /home                  /                                301
//! /blog/:year/:slug      /posts/:year-:slug               301
//! /docs/*                https://docs.example.com/:splat  302
//! /app/*                 /app/index.html                  200
//! /private/*             /404.html                        404!
//! ```
//!
//! One rule a line: `from to [status][!]`. The status is 301 when absent; 301, 302, 303, 307
//! and 308 redirect (`to` may then be an absolute `http(s)://` URL), 200 *rewrites* — the
//! response is the file at `to`, the address bar keeps `from` — and 404 answers `to`'s content
//! with status 404. The first matching rule wins. A rule applies only where no file exists
//! (Netlify's *shadowing*) unless it ends with `!`, which forces it. `/* /index.html 200` is the
//! SPA rule; when a `/*` rule is present it replaces the built-in fallback.
//!
//! The rules are compiled once at load. Matching takes a hash lookup for the static rules (a
//! fixed path) and a walk over the dynamic ones (placeholders, splats) that allocates nothing;
//! the target is expanded into a buffer the worker reuses.

use std::collections::HashMap;

use super::pattern::{Captures, Pattern};
use super::{Limits, SiteError};
use crate::http::path;

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A redirect with this status (301, 302, 303, 307, 308).
    Redirect(u16),
    /// Serve the target's file in place (200).
    Rewrite,
    /// Serve the target's file with status 404.
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Box<[u8]>),
    Placeholder(usize),
    Splat,
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Redirect {
    from: Pattern,
    to: Box<[Part]>,
    pub action: Action,
    /// `!`: applies even where a file exists.
    pub force: bool,
    /// The target is an absolute URL (another host).
    pub external: bool,
    /// The target has its own query: the request's is not carried over.
    has_query: bool,
    /// Where it is in its file (1-based), for errors found after parsing.
    pub line: usize,
}

impl Redirect {
    /// Writes the target for a request at `path` (what `from` matched, with `caps`) into `out`
    /// in URL form: literal text as written, captured text percent-encoded. A redirect also
    /// carries the request's `query` over unless the target has its own.
    pub fn expand(&self, path: &[u8], caps: &Captures, query: &[u8], out: &mut Vec<u8>) {
        out.clear();
        for part in self.to.iter() {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Placeholder(i) => path::encode_into(caps.placeholder(path, *i), out),
                Part::Splat => path::encode_into(caps.splat(path), out),
            }
        }
        if matches!(self.action, Action::Redirect(_)) && !self.has_query {
            out.extend_from_slice(query);
        }
    }
}

/// The compiled `_redirects` file.
#[derive(Clone, Debug, Default)]
pub struct Redirects {
    rules: Vec<Redirect>,
    /// Static rules by path: their indexes in `rules`, ascending.
    by_path: HashMap<Box<[u8]>, Vec<usize>>,
    /// Indexes of the dynamic rules, ascending.
    dynamic: Vec<usize>,
    /// A rule's `from` is `/*`: it takes over the built-in SPA fallback.
    catch_all: bool,
}

impl Redirects {
    /// Compiles `text` (the `_redirects` file called `file`, possibly empty).
    pub fn parse(text: &str, file: &str, limits: &Limits) -> Result<Self, SiteError> {
        let err = |line: usize, message: String| SiteError { file: file.into(), line, message };
        let mut r = Redirects::default();
        let (mut statics, mut dynamics) = (0, 0);
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > limits.max_redirect_line {
                return Err(err(n, format!("a rule longer than {} bytes", limits.max_redirect_line)));
            }
            let mut rule = parse_rule(line).map_err(|m| err(n, m))?;
            rule.line = n;
            let index = r.rules.len();
            if let Some(path) = rule.from.static_path() {
                statics += 1;
                if statics > limits.max_static_redirects {
                    return Err(err(n, format!("more than {} static rules", limits.max_static_redirects)));
                }
                r.by_path.entry(path.into_boxed_slice()).or_default().push(index);
            } else {
                dynamics += 1;
                if dynamics > limits.max_dynamic_redirects {
                    return Err(err(
                        n,
                        format!(
                            "more than {} rules with placeholders or splats",
                            limits.max_dynamic_redirects
                        ),
                    ));
                }
                r.catch_all |= rule.from.matches_everything();
                r.dynamic.push(index);
            }
            r.rules.push(rule);
        }
        Ok(r)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// A `/*` rule exists (it replaces the built-in SPA fallback).
    pub fn has_catch_all(&self) -> bool {
        self.catch_all
    }

    /// Every rule that rewrites to (or answers 404 with) a fixed path: the targets a load
    /// checks exist.
    pub fn fixed_targets(&self) -> impl Iterator<Item = (&Redirect, &[u8])> {
        self.rules.iter().filter_map(|r| match (&*r.to, r.action) {
            (_, Action::Redirect(_)) => None,
            ([Part::Literal(l)], _) => Some((r, &**l)),
            _ => None,
        })
    }

    /// The first rule that applies to `path`: it matches, and either no file exists there
    /// (`exists` false) or the rule is forced. Fills `caps` for [`Redirect::expand`].
    pub fn find(&self, path: &[u8], exists: bool, caps: &mut Captures) -> Option<&Redirect> {
        let applies = |i: &usize| !exists || self.rules[*i].force;
        let fixed = self.by_path.get(path).and_then(|list| list.iter().copied().find(applies));
        for &i in &self.dynamic {
            if fixed.is_some_and(|f| f < i) {
                break;
            }
            if applies(&i) && self.rules[i].from.matches(path, caps) {
                return Some(&self.rules[i]);
            }
        }
        fixed.map(|i| &self.rules[i])
    }
}

fn parse_rule(line: &str) -> Result<Redirect, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.iter().skip(1).any(|f| f.contains('=') && !f.starts_with('/') && !f.contains("://")) {
        return Err(format!("{line:?}: query-parameter, country and language conditions are not supported"));
    }
    let (from, to, status) = match fields.as_slice() {
        [from, to] => (*from, *to, "301"),
        [from, to, status] => (*from, *to, *status),
        [_] => return Err(format!("{line:?}: a rule needs a target (from to [status])")),
        _ => return Err(format!("{line:?}: expected `from to [status][!]`")),
    };
    let (status, force) = match status.strip_suffix('!') {
        Some(s) => (s, true),
        None => (status, false),
    };
    let action = match status {
        "200" => Action::Rewrite,
        "404" => Action::NotFound,
        "301" | "302" | "303" | "307" | "308" => Action::Redirect(status.parse().unwrap_or(301)),
        _ => return Err(format!("status {status:?} is not one of 200, 301, 302, 303, 307, 308, 404")),
    };
    let from = Pattern::parse(from).map_err(|e| e.0)?;
    let external = to.starts_with("http://") || to.starts_with("https://");
    if !external && !to.starts_with('/') {
        return Err(format!("target {to:?} must be a path (/…) or an http(s):// URL"));
    }
    if external && !matches!(action, Action::Redirect(_)) {
        return Err(format!(
            "target {to:?}: a {status} serves a file of the root, it cannot be another host"
        ));
    }
    if to.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(format!("target {to:?} contains a control character"));
    }
    let parts = compile_target(to, &from)?;
    Ok(Redirect { from, to: parts.into(), action, force, external, has_query: to.contains('?'), line: 0 })
}

/// Splits a target into literal text and the captures it names (`:name`, `:splat`).
fn compile_target(to: &str, from: &Pattern) -> Result<Vec<Part>, String> {
    let bytes = to.as_bytes();
    let mut parts = Vec::new();
    let mut literal = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_name =
            bytes[i] == b':' && bytes.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
        if !starts_name {
            literal.push(bytes[i]);
            i += 1;
            continue;
        }
        let end = bytes[i + 1..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(bytes.len(), |p| i + 1 + p);
        let name = &to[i + 1..end];
        let part = if name == "splat" {
            if !from.has_splat() {
                return Err("target uses :splat but the pattern has no *".to_string());
            }
            Part::Splat
        } else {
            match from.placeholder(name) {
                Some(index) => Part::Placeholder(index),
                None => return Err(format!("target uses :{name}, which the pattern does not capture")),
            }
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(part);
        i = end;
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.into()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Redirects {
        Redirects::parse(text, "_redirects", &Limits::default()).unwrap()
    }

    fn error(text: &str) -> String {
        Redirects::parse(text, "_redirects", &Limits::default()).unwrap_err().to_string()
    }

    /// Where a request for `target` goes: (action, expanded target), or None.
    fn go(r: &Redirects, target: &str, exists: bool) -> Option<(Action, String)> {
        let path = path::strip_query(target.as_bytes());
        let mut caps = Captures::default();
        let rule = r.find(path, exists, &mut caps)?;
        let mut out = Vec::new();
        rule.expand(path, &caps, path::query(target.as_bytes()), &mut out);
        Some((rule.action, String::from_utf8(out).unwrap()))
    }

    const EXAMPLE: &str = "# comment\n/home / 301\n/old-blog/:year/:slug /blog/:year-:slug\n\
/docs/* https://docs.example.com/:splat 302\n/search /find?from=search 307\n\
/app/* /app/index.html 200\n/private/* /404.html 404!\n/home /elsewhere 302\n/* /index.html 200\n";

    #[test]
    fn the_first_matching_rule_wins_and_its_target_is_expanded() {
        let r = parse(EXAMPLE);
        assert_eq!(go(&r, "/home", false), Some((Action::Redirect(301), "/".into())));
        assert_eq!(
            go(&r, "/old-blog/2024/hello", false),
            Some((Action::Redirect(301), "/blog/2024-hello".into()))
        );
        assert_eq!(
            go(&r, "/docs/guide/intro?x=1", false),
            Some((Action::Redirect(302), "https://docs.example.com/guide/intro?x=1".into()))
        );
        assert_eq!(go(&r, "/search?q=a", false), Some((Action::Redirect(307), "/find?from=search".into())));
        assert_eq!(go(&r, "/app/settings", false), Some((Action::Rewrite, "/app/index.html".into())));
        assert_eq!(go(&r, "/anything/else", false), Some((Action::Rewrite, "/index.html".into())));
        assert!(r.has_catch_all());
    }

    #[test]
    fn an_existing_file_shadows_all_but_forced_rules() {
        let r = parse(EXAMPLE);
        assert_eq!(go(&r, "/home", true), None);
        assert_eq!(go(&r, "/private/key.txt", true), Some((Action::NotFound, "/404.html".into())));
        assert_eq!(go(&r, "/private/key.txt", false), Some((Action::NotFound, "/404.html".into())));
    }

    #[test]
    fn a_dynamic_rule_before_a_static_one_wins() {
        let r = parse("/a/* /first\n/a/b /second\n");
        assert_eq!(go(&r, "/a/b", false), Some((Action::Redirect(301), "/first".into())));
        let r = parse("/a/b /first\n/a/* /second\n");
        assert_eq!(go(&r, "/a/b", false), Some((Action::Redirect(301), "/first".into())));
        assert_eq!(go(&r, "/a/c", false), Some((Action::Redirect(301), "/second".into())));
    }

    #[test]
    fn captured_text_is_percent_encoded_in_the_target() {
        let r = parse("/u/:name /users/:name\n");
        assert_eq!(go(&r, "/u/a b\u{e9}", false), Some((Action::Redirect(301), "/users/a%20b%C3%A9".into())));
    }

    #[test]
    fn malformed_rules_name_the_line_and_the_problem() {
        assert_eq!(
            error("/ok /fine\n/only-from\n"),
            "_redirects:2: \"/only-from\": a rule needs a target (from to [status])"
        );
        assert!(error("/a /b 418\n").contains("status \"418\""));
        assert!(error("/a b\n").contains("must be a path"));
        assert!(error("/a https://x.test/ 200\n").contains("cannot be another host"));
        assert!(error("/a/:x /b/:y\n").contains(":y, which the pattern does not capture"));
        assert!(error("/a /b/:splat\n").contains("no *"));
        assert!(error("/a q=:q /b\n").contains("not supported"));
        assert!(error("/a /b 301 Country=fr\n").contains("not supported"));
        assert!(error("/a /b 301 extra\n").contains("expected `from to [status][!]`"));
        assert!(error(&format!("/a /{}\n", "b".repeat(1000))).contains("longer than 1000"));
        let many: String = (0..2001).map(|i| format!("/p{i} /q\n")).collect();
        assert_eq!(error(&many), "_redirects:2001: more than 2000 static rules");
        let many: String = (0..101).map(|i| format!("/p{i}/* /q\n")).collect();
        assert!(error(&many).starts_with("_redirects:101: more than 100 rules with"));
    }

    #[test]
    fn a_port_in_an_external_target_is_not_a_placeholder() {
        let r = parse("/x https://example.com:8443/y 302\n");
        assert_eq!(go(&r, "/x", false), Some((Action::Redirect(302), "https://example.com:8443/y".into())));
    }
}
