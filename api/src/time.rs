//! RFC 3339 UTC timestamps ⇄ Unix seconds, without a date library: the API only needs whole
//! seconds in UTC (`2024-05-01T10:05:00Z`), between 1970 and 9999.

/// Why a timestamp was refused (the message is shown to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`.
    #[error("expected an RFC 3339 UTC time such as 2024-05-01T10:05:00Z")]
    Syntax,
    /// A field is out of range (month 13, 31 February, 25 hours, …).
    #[error("not a valid calendar date and time")]
    Range,
    /// An offset other than UTC.
    #[error("times must be UTC (Z or +00:00)")]
    NotUtc,
    /// A non-zero fraction of a second.
    #[error("times must be whole seconds")]
    Fraction,
    /// Before 1970-01-01T00:00:00Z.
    #[error("times before 1970-01-01T00:00:00Z are not served")]
    BeforeEpoch,
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), H. Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix_s: u64) -> String {
    let secs = i64::try_from(unix_s).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0i64, |n, c| {
        n.checked_mul(10)?.checked_add(i64::from(c - b'0'))
    })
}

/// Parses an RFC 3339 time in UTC (`Z`, `z` or `+00:00`/`-00:00`) to Unix seconds. A `T`, `t`
/// or space separates date and time; a fraction is accepted only if it is zero.
pub fn parse_rfc3339(s: &str) -> Result<u64, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return Err(TimeError::Syntax);
    }
    let field = |from: usize, to: usize| b.get(from..to).and_then(digits).ok_or(TimeError::Syntax);
    let sep = |at: usize, ok: &[u8]| match b.get(at) {
        Some(c) if ok.contains(c) => Ok(()),
        _ => Err(TimeError::Syntax),
    };
    let y = field(0, 4)?;
    sep(4, b"-")?;
    let mo = field(5, 7)?;
    sep(7, b"-")?;
    let d = field(8, 10)?;
    sep(10, b"Tt ")?;
    let h = field(11, 13)?;
    sep(13, b":")?;
    let mi = field(14, 16)?;
    sep(16, b":")?;
    let se = field(17, 19)?;
    let mut rest = b.get(19..).ok_or(TimeError::Syntax)?;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(TimeError::Syntax);
        }
        let (f, tail) = frac.split_at(n);
        if f.iter().any(|c| *c != b'0') {
            return Err(TimeError::Fraction);
        }
        rest = tail;
    }
    match rest {
        b"Z" | b"z" | b"+00:00" | b"-00:00" => {}
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            return Err(TimeError::NotUtc)
        }
        _ => return Err(TimeError::Syntax),
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return Err(TimeError::Range);
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).map_err(|_| TimeError::BeforeEpoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_round_trip() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0u64),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2024-05-01T10:05:00Z", 1_714_557_900),
            ("2100-03-01T00:00:00Z", 4_107_542_400),
        ] {
            assert_eq!(parse_rfc3339(text), Ok(secs), "{text}");
            assert_eq!(format_rfc3339(secs), text);
        }
        for secs in (0..5_000_000_000u64).step_by(86_399 * 37) {
            assert_eq!(parse_rfc3339(&format_rfc3339(secs)), Ok(secs));
        }
    }

    #[test]
    fn accepted_variants_and_refusals() {
        assert_eq!(parse_rfc3339("2024-05-01t10:05:00z"), Ok(1_714_557_900));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:05:00+00:00"),
            Ok(1_714_557_900)
        );
        assert_eq!(parse_rfc3339("2024-05-01T10:05:00.000Z"), Ok(1_714_557_900));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:05:00.5Z"),
            Err(TimeError::Fraction)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T10:05:00+02:00"),
            Err(TimeError::NotUtc)
        );
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), Err(TimeError::Range));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), Err(TimeError::Range));
        assert_eq!(parse_rfc3339("2024-05-01T24:00:00Z"), Err(TimeError::Range));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(TimeError::BeforeEpoch)
        );
        assert_eq!(parse_rfc3339("2024-05-01"), Err(TimeError::Syntax));
        assert_eq!(parse_rfc3339("1714557900"), Err(TimeError::Syntax));
        assert_eq!(parse_rfc3339("2024-05-01T10:05:00"), Err(TimeError::Syntax));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:05:00.Z"),
            Err(TimeError::Syntax)
        );
        assert_eq!(
            parse_rfc3339("+024-05-01T10:05:00Z"),
            Err(TimeError::Syntax)
        );
    }
}
