//! `http::date::parse` (IMF-fixdate) on arbitrary bytes, and `format` of what it accepts.

#![no_main]

use atomserve::http::date::{format, parse};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31 23:59:59 + 1: `format` renders four-digit years only.
const YEAR_10000: u64 = 253_402_300_800;

fuzz_target!(|s: &[u8]| {
    let Some(t) = parse(s) else { return };
    if t >= YEAR_10000 {
        return; // only `Fri, 31 Dec 9999 23:59:60 GMT` (a leap second) gets here
    }
    let text = format(t);
    assert_eq!(parse(&text), Some(t));
    // parse is lenient in three ways only: the weekday is not checked, a day past the month's
    // end rolls over, and second 60 (a leap second) is the next minute's 0. Anything else that it
    // accepts is exactly what format writes.
    let s = s.trim_ascii();
    let digits = |r: std::ops::Range<usize>| std::str::from_utf8(&s[r]).unwrap().parse::<u32>().unwrap();
    let (day, year, sec) = (digits(5..7), digits(12..16), digits(23..25));
    let days_in_month = match &s[8..11] {
        b"Feb" if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        b"Feb" => 28,
        b"Apr" | b"Jun" | b"Sep" | b"Nov" => 30,
        _ => 31,
    };
    if day <= days_in_month && sec < 60 {
        assert_eq!(&text[3..], &s[3..], "{:?}", String::from_utf8_lossy(s));
    }
});
