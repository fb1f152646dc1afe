//! The `Date` header (RFC 9110 §5.6.7, IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
//!
//! Formatting a date per response would be wasted work: the value changes once a second. Each
//! worker keeps a [`DateCache`] that it refreshes at most once a second, at the top of its loop,
//! and every response that worker writes in that second shares the same 29 bytes. Per worker rather
//! than process-wide, so that no atomic or lock is needed to read it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const LEN: usize = 29;

/// The current second's `Date` value, refreshed at most once a second.
pub struct DateCache {
    secs: u64,
    text: [u8; LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    pub fn new() -> Self {
        let mut cache = DateCache { secs: u64::MAX, text: [0; LEN] };
        cache.refresh();
        cache
    }

    /// Re-renders the date if the second changed. Cheap: a vDSO clock read and a compare.
    pub fn refresh(&mut self) {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = format(secs);
        }
    }

    /// The rendered date.
    pub fn text(&self) -> &[u8; LEN] {
        &self.text
    }
}

/// Renders Unix time `secs` as an IMF-fixdate.
pub fn format(secs: u64) -> [u8; LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put2(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    let y = year.clamp(0, 9999) as u64;
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    put2(&mut out[17..19], rem / 3600);
    put2(&mut out[20..22], rem / 60 % 60);
    put2(&mut out[23..25], rem % 60);
    out
}

/// Length of a Common Log Format timestamp, `26/Nov/2026:03:19:31 +0000`.
pub const CLF_LEN: usize = 26;

/// Renders Unix time `secs` the way access logs (nginx, Apache) write it, in UTC.
pub fn format_clf(secs: u64) -> [u8; CLF_LEN] {
    let imf = format(secs); // "Thu, 26 Nov 2026 03:19:31 GMT"
    let mut out = *b"01/Jan/1970:00:00:00 +0000";
    out[..2].copy_from_slice(&imf[5..7]);
    out[3..6].copy_from_slice(&imf[8..11]);
    out[7..11].copy_from_slice(&imf[12..16]);
    out[12..20].copy_from_slice(&imf[17..25]);
    out
}

fn put2(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds; anything else
/// (including the obsolete RFC 850 and asctime forms) is `None`.
pub fn parse(s: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let s = s.trim_ascii();
    if s.len() != LEN
        || &s[3..5] != b", "
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || &s[25..] != b" GMT"
    {
        return None;
    }
    if s[19] != b':' || s[22] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        s[r].iter().try_fold(0u64, |a, &c| c.is_ascii_digit().then(|| a * 10 + u64::from(c - b'0')))
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| m.as_slice() == &s[8..11])? as u64 + 1;
    let year = num(12..16)?;
    let (h, m, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    Some(days as u64 * 86_400 + h * 3600 + m * 60 + sec)
}

/// Howard Hinnant's `days_from_civil`: (year, month 1-12, day 1-31) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn clf_timestamps() {
        assert_eq!(&format_clf(0), b"01/Jan/1970:00:00:00 +0000");
        assert_eq!(&format_clf(1_795_663_171), b"26/Nov/2026:03:19:31 +0000");
    }

    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&format(1_795_651_199), b"Wed, 25 Nov 2026 23:59:59 GMT");
        assert_eq!(&format(4_102_444_800), b"Fri, 01 Jan 2100 00:00:00 GMT");
    }

    #[test]
    fn parse_round_trips() {
        for t in [0, 784_111_777, 951_782_400, 1_795_651_199, 4_102_444_800] {
            assert_eq!(parse(&format(t)), Some(t), "{t}");
        }
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse(b"Sun, 36 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn cache_renders_now() {
        let cache = DateCache::new();
        assert!(cache.text().ends_with(b" GMT"));
    }
}
