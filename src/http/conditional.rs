//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since`, evaluated in the RFC's order (§13.2.2), and `If-Range` (§13.1.5).
//!
//! ETags are strong (they hash the bytes), so both strong and weak comparison work on them.
//! Dates are compared at one-second resolution, as HTTP-dates carry. A date that is not a valid
//! IMF-fixdate is ignored, as the RFC requires for an invalid date (the obsolete RFC 850 and
//! asctime forms are treated as invalid: the request then simply gets a full response).

use super::date;

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Serve normally (200, or 206 if a valid range applies).
    Proceed,
    /// `304 Not Modified` (GET/HEAD with a matching `If-None-Match`, or not modified since).
    NotModified,
    /// `412 Precondition Failed` (`If-Match` or `If-Unmodified-Since` failed).
    PreconditionFailed,
}

/// The conditional header fields of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'b> {
    pub if_match: Option<&'b [u8]>,
    pub if_none_match: Option<&'b [u8]>,
    pub if_modified_since: Option<&'b [u8]>,
    pub if_unmodified_since: Option<&'b [u8]>,
    pub if_range: Option<&'b [u8]>,
    /// Further `If-Match` fields: a list field sent several times means one list (RFC 9110
    /// §5.3), so every one of them counts.
    pub if_match_more: More<'b>,
    /// Further `If-None-Match` fields (a browser never sends two, a proxy chain might).
    pub if_none_match_more: More<'b>,
}

impl Conditions<'_> {
    /// No conditional field at all (further occurrences only follow a first one).
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
            && self.if_range.is_none()
    }
}

/// Further occurrences of a list field, without allocating: up to three, then only the fact
/// that there were more (`overflow`), which the evaluation answers conservatively.
#[derive(Debug, Default, Clone, Copy)]
pub struct More<'b> {
    fields: [&'b [u8]; 3],
    len: u8,
    overflow: bool,
}

impl<'b> More<'b> {
    pub fn push(&mut self, field: &'b [u8]) {
        match self.fields.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = field;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// Whether any of the further fields matches; `None` if some were not kept.
    fn matches(&self, etag: &[u8], weak: bool) -> Option<bool> {
        let any = self.fields[..usize::from(self.len)].iter().any(|list| list_matches(list, etag, weak));
        if any {
            Some(true)
        } else if self.overflow {
            None
        } else {
            Some(false)
        }
    }
}

/// Evaluates the preconditions of a GET/HEAD against a representation with `etag` (quoted, e.g.
/// `"1a2b"`) last modified at `modified` (Unix seconds).
pub fn evaluate(c: &Conditions<'_>, etag: &[u8], modified: u64) -> Outcome {
    // 1. If-Match (strong comparison), else 2. If-Unmodified-Since.
    if let Some(list) = c.if_match {
        // More fields than were kept: give the benefit of the doubt (serving is always safe
        // for GET/HEAD; a wrong 412 is not).
        let more = c.if_match_more.matches(etag, false).unwrap_or(true);
        if !list_matches(list, etag, false) && !more {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(since) = c.if_unmodified_since.and_then(date::parse) {
        if modified > since {
            return Outcome::PreconditionFailed;
        }
    }
    // 3. If-None-Match (weak comparison), else 4. If-Modified-Since.
    if let Some(list) = c.if_none_match {
        // More fields than were kept: answer in full (a 200 is always correct, a wrong 304 not).
        let more = c.if_none_match_more.matches(etag, true).unwrap_or(false);
        if list_matches(list, etag, true) || more {
            return Outcome::NotModified;
        }
    } else if let Some(since) = c.if_modified_since.and_then(date::parse) {
        if modified <= since {
            return Outcome::NotModified;
        }
    }
    Outcome::Proceed
}

/// Whether the request's `If-None-Match` names `etag` itself (weak comparison), not by `*`:
/// the client holds that representation. Unkept further fields count as no.
pub fn names(c: &Conditions<'_>, etag: &[u8]) -> bool {
    let named = |list: &[u8]| list.trim_ascii() != b"*" && list_matches(list, etag, true);
    c.if_none_match.is_some_and(named) || c.if_none_match_more.matches(etag, true) == Some(true)
}

/// `If-Range`: whether a `Range` may be honoured. An entity tag must match strongly (a weak tag
/// never does); a date must equal `Last-Modified` exactly.
pub fn range_applies(c: &Conditions<'_>, etag: &[u8], modified: u64) -> bool {
    let Some(value) = c.if_range.map(<[u8]>::trim_ascii) else { return true };
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return !value.starts_with(b"W/") && value == etag;
    }
    date::parse(value) == Some(modified)
}

/// Whether a comma-separated entity-tag list (or `*`) matches `etag`.
fn list_matches(list: &[u8], etag: &[u8], weak: bool) -> bool {
    let list = list.trim_ascii();
    if list == b"*" {
        return true;
    }
    list.split(|&c| c == b',').map(<[u8]>::trim_ascii).any(|tag| {
        let (is_weak, opaque) = match tag.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        opaque == etag && (weak || !is_weak)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &[u8] = b"\"5-abc\"";
    const T: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn c<'a>(f: impl FnOnce(&mut Conditions<'a>)) -> Conditions<'a> {
        let mut c = Conditions::default();
        f(&mut c);
        c
    }

    #[test]
    fn if_none_match() {
        assert_eq!(evaluate(&c(|c| c.if_none_match = Some(b"\"5-abc\"")), TAG, T), Outcome::NotModified);
        assert_eq!(evaluate(&c(|c| c.if_none_match = Some(b"W/\"5-abc\"")), TAG, T), Outcome::NotModified);
        assert_eq!(
            evaluate(&c(|c| c.if_none_match = Some(b"\"x\", \"5-abc\"")), TAG, T),
            Outcome::NotModified
        );
        assert_eq!(evaluate(&c(|c| c.if_none_match = Some(b"*")), TAG, T), Outcome::NotModified);
        assert_eq!(evaluate(&c(|c| c.if_none_match = Some(b"\"other\"")), TAG, T), Outcome::Proceed);
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
        let both = c(|c| {
            c.if_none_match = Some(b"\"other\"");
            c.if_modified_since = Some(b"Sun, 06 Nov 1994 08:49:37 GMT");
        });
        assert_eq!(evaluate(&both, TAG, T), Outcome::Proceed);
    }

    /// `names`: the tag itself, weak or strong, in the first or a further field; never `*`.
    #[test]
    fn names_the_held_representation() {
        assert!(names(&c(|c| c.if_none_match = Some(b"\"x\", W/\"5-abc\"")), TAG));
        assert!(!names(&c(|c| c.if_none_match = Some(b"*")), TAG));
        assert!(!names(&c(|c| c.if_none_match = Some(b"\"5-abc-br\"")), TAG));
        assert!(!names(&Conditions::default(), TAG));
        let more = c(|c| {
            c.if_none_match = Some(b"\"x\"");
            c.if_none_match_more.push(b"\"5-abc\"");
        });
        assert!(names(&more, TAG));
    }

    /// Regression: with two If-None-Match fields only the last one counted, so a cached
    /// representation named in the first field got a full 200.
    #[test]
    fn repeated_list_fields_form_one_list() {
        let two = c(|c| {
            c.if_none_match = Some(b"\"5-abc\"");
            c.if_none_match_more.push(b"\"other\"");
        });
        assert_eq!(evaluate(&two, TAG, T), Outcome::NotModified);
        let two = c(|c| {
            c.if_none_match = Some(b"\"other\"");
            c.if_none_match_more.push(b"\"x\", \"5-abc\"");
        });
        assert_eq!(evaluate(&two, TAG, T), Outcome::NotModified);
        let mut many = c(|c| c.if_none_match = Some(b"\"a\""));
        for _ in 0..5 {
            many.if_none_match_more.push(b"\"b\"");
        }
        assert_eq!(evaluate(&many, TAG, T), Outcome::Proceed, "unknown fields: answer in full");
        let if_match = c(|c| {
            c.if_match = Some(b"\"other\"");
            c.if_match_more.push(b"\"5-abc\"");
        });
        assert_eq!(evaluate(&if_match, TAG, T), Outcome::Proceed);
        let if_match = c(|c| {
            c.if_match = Some(b"\"other\"");
            c.if_match_more.push(b"\"x\"");
        });
        assert_eq!(evaluate(&if_match, TAG, T), Outcome::PreconditionFailed);
    }

    #[test]
    fn if_modified_since() {
        let at = |d: &'static [u8]| c(move |c| c.if_modified_since = Some(d));
        assert_eq!(evaluate(&at(b"Sun, 06 Nov 1994 08:49:37 GMT"), TAG, T), Outcome::NotModified);
        assert_eq!(evaluate(&at(b"Sun, 06 Nov 1994 08:49:36 GMT"), TAG, T), Outcome::Proceed);
        assert_eq!(evaluate(&at(b"Sunday, 06-Nov-94 08:49:37 GMT"), TAG, T), Outcome::Proceed); // ignored
        assert_eq!(evaluate(&at(b"garbage"), TAG, T), Outcome::Proceed);
    }

    #[test]
    fn if_match_and_unmodified_since() {
        assert_eq!(evaluate(&c(|c| c.if_match = Some(b"\"other\"")), TAG, T), Outcome::PreconditionFailed);
        assert_eq!(evaluate(&c(|c| c.if_match = Some(b"W/\"5-abc\"")), TAG, T), Outcome::PreconditionFailed);
        assert_eq!(evaluate(&c(|c| c.if_match = Some(b"\"5-abc\"")), TAG, T), Outcome::Proceed);
        let before = c(|c| c.if_unmodified_since = Some(b"Sun, 06 Nov 1994 08:49:36 GMT"));
        assert_eq!(evaluate(&before, TAG, T), Outcome::PreconditionFailed);
    }

    #[test]
    fn if_range() {
        assert!(range_applies(&c(|c| c.if_range = Some(b"\"5-abc\"")), TAG, T));
        assert!(!range_applies(&c(|c| c.if_range = Some(b"W/\"5-abc\"")), TAG, T));
        assert!(!range_applies(&c(|c| c.if_range = Some(b"\"old\"")), TAG, T));
        assert!(range_applies(&c(|c| c.if_range = Some(b"Sun, 06 Nov 1994 08:49:37 GMT")), TAG, T));
        assert!(!range_applies(&c(|c| c.if_range = Some(b"Sun, 06 Nov 1994 08:49:38 GMT")), TAG, T));
        assert!(range_applies(&Conditions::default(), TAG, T));
    }
}
