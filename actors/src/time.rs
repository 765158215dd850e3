//! Wall-clock time as ChatSDK shows it: ISO-8601 UTC strings with milliseconds.
//!
//! Replicated commands carry the proposer's clock reading (`now_ms`) so every replica applies
//! the same timestamps; this module only formats and reads the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso(ms: u64) -> String {
    with_iso(ms, str::to_owned)
}

/// Hands `f` the ISO form of `ms` (as [`iso`]) without allocating it.
///
/// Every rendered message and event carries a few of these, so the digits are written into a
/// fixed buffer on the stack (`format!` with padding cost ~3 % of a node's CPU at 7,000
/// sends/s, and a `String` per timestamp four allocations per rendered message).
pub fn with_iso<R>(ms: u64, f: impl FnOnce(&str) -> R) -> R {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let Ok(year @ 0..=9999) = u64::try_from(y) else {
        // Beyond four-digit years (no clock reads that); the general form.
        return f(&format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            ms % 1000
        ));
    };
    let mut out = *b"0000-00-00T00:00:00.000Z";
    digits(&mut out[0..4], year);
    digits(&mut out[5..7], u64::from(m));
    digits(&mut out[8..10], u64::from(d));
    digits(&mut out[11..13], rem / 3600);
    digits(&mut out[14..16], (rem / 60) % 60);
    digits(&mut out[17..19], rem % 60);
    digits(&mut out[20..23], ms % 1000);
    // Digits and ASCII punctuation only, so this borrows (never copies or replaces).
    f(&String::from_utf8_lossy(&out))
}

/// Reads an ISO-8601 instant as the API accepts it: `YYYY-MM-DD`, or that with
/// `THH:MM[:SS[.fff…]]` and `Z` or an offset `±HH:MM` (no zone: UTC). `None` when it is not one,
/// or before 1970.
pub fn parse_iso(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&mo) {
        return None;
    }
    if !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') {
            return None;
        }
        let (h, mi) = (num(11, 2)?, num(14, 2)?);
        if b.get(13) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        ms += (h * 3600 + mi * 60) * 1000;
        i = 16;
        if b.get(i) == Some(&b':') {
            let sec = num(17, 2)?;
            if sec > 60 {
                return None;
            }
            ms += sec.min(59) * 1000;
            i = 19;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                let frac = &s[start..i.min(start + 3)];
                let scale = 10i64.pow(3 - frac.len() as u32);
                ms += frac.parse::<i64>().ok()? * scale;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = (oh * 60 + om) * 60_000;
                ms += if sign == b'+' { -offset } else { offset };
            }
            _ => return None,
        }
    }
    u64::try_from(ms).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Writes `n` into `into` as decimal digits, zero-padded to its length.
fn digits(into: &mut [u8], mut n: u64) {
    for slot in into.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso(1_795_651_200_000), "2026-11-26T00:00:00.000Z");
        assert_eq!(iso(1_796_272_611_987), "2026-12-03T04:36:51.987Z");
        assert_eq!(iso(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats_and_common_forms() {
        for ms in [0, 951_782_400_123, 1_796_272_611_987, 253_402_300_799_999] {
            assert_eq!(parse_iso(&iso(ms)), Some(ms));
        }
        assert_eq!(parse_iso("2026-12-03"), Some(1_796_256_000_000));
        assert_eq!(parse_iso("2026-12-03T04:36"), Some(1_796_272_560_000));
        assert_eq!(parse_iso("2026-12-03T04:36:51Z"), Some(1_796_272_611_000));
        assert_eq!(
            parse_iso("2026-12-03T05:36:51.9876+01:00"),
            Some(1_796_272_611_987)
        );
        assert_eq!(
            parse_iso("2026-12-03T03:36:51.5-01:00"),
            Some(1_796_272_611_500)
        );
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30",
            "2026-12-03T24:00",
            "2026-12-03X",
            "1969-12-31",
            "2026-12-03T04:36:51.Z",
            "2026-12-03T04:36Zjunk",
            "twenty",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }
}
