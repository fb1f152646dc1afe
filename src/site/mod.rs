//! The site's own rules, as static hosts made them conventional: `_headers` (custom response
//! fields by path), `_redirects` (redirects and rewrites by path) and `--header` (fields on every
//! response). Compiled once per load into [`SiteRules`], which the snapshot carries: a reload
//! replaces files and rules together, and a malformed rule fails the load like an unreadable
//! file — the previous snapshot keeps serving.
//!
//! | limit | value | why |
//! |---|---|---|
//! | `_headers` rules | 100 | Cloudflare Pages' limit; every 404 and redirect matches them all |
//! | field value | 2,000 bytes | Cloudflare Pages' limit |
//! | static redirects (no `:placeholder`, no `*`) | 2,000 | Cloudflare Pages' limit; a hash lookup each |
//! | dynamic redirects | 100 | Cloudflare Pages' limit; tried in order on every request that misses |
//! | redirect line | 1,000 bytes | Cloudflare Pages' limit |
//! | either file | 512 KiB | far above what the rule limits allow, far below what would hurt |

pub mod headers;
pub mod pattern;
pub mod redirects;

use std::fmt;

pub use headers::{Field, HeaderRules};
pub use redirects::{Action, Redirects};

/// The limits of the two files.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_header_rules: usize,
    pub max_value_len: usize,
    pub max_static_redirects: usize,
    pub max_dynamic_redirects: usize,
    pub max_redirect_line: usize,
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_rules: 100,
            max_value_len: 2_000,
            max_static_redirects: 2_000,
            max_dynamic_redirects: 100,
            max_redirect_line: 1_000,
            max_file_bytes: 512 * 1024,
        }
    }
}

/// A rule that cannot be used, and where it is.
#[derive(Debug, PartialEq, Eq)]
pub struct SiteError {
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            n => write!(f, "{}:{n}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for SiteError {}

/// Everything the site configures, compiled.
#[derive(Clone, Debug, Default)]
pub struct SiteRules {
    pub headers: HeaderRules,
    pub redirects: Redirects,
}

/// One configuration file's text and the name errors give it.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl SiteRules {
    /// Compiles the two files (either may be absent: empty text) and the `--header` values
    /// (`Name: value` each).
    pub fn compile(headers: Source<'_>, redirects: Source<'_>, global: &[String]) -> Result<Self, SiteError> {
        let limits = Limits::default();
        let mut fields = Vec::with_capacity(global.len());
        for value in global {
            let field = value
                .split_once(':')
                .ok_or_else(|| format!("{value:?} is not `Name: value`"))
                .and_then(|(name, value)| Field::new(name, value, &limits));
            fields.push(field.map_err(|message| SiteError { file: "--header".into(), line: 0, message })?);
        }
        Ok(SiteRules {
            headers: HeaderRules::parse(headers.text, headers.name, fields, &limits)?,
            redirects: Redirects::parse(redirects.text, redirects.name, &limits)?,
        })
    }
}
