//! Timestamps for people: RFC 3339 in UTC and "5m ago", without a calendar crate.

/// `2026-11-23T20:15:04Z` for unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `20:15` (UTC) for unix milliseconds: short form for tables and subjects.
pub fn clock_time(ms: i64) -> String {
    let rem = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", rem / 3600, (rem % 3600) / 60)
}

/// `42s ago`, `5m ago`, `3h ago`, `2d ago` relative to `now_ms`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let secs = now_ms.saturating_sub(ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// Parse `2026-11-23T20:15:04Z` (UTC, optional fraction; `+00:00` for `Z` is accepted)
/// into unix milliseconds, through `humantime`'s RFC 3339 parser. Years 1970 to 9999.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let utc = match text.strip_suffix("+00:00") {
        Some(stem) => humantime::parse_rfc3339(&format!("{stem}Z")),
        None => humantime::parse_rfc3339(text),
    };
    let since_epoch = utc.ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_464_904_000), "2026-11-23T20:15:04Z");
        assert_eq!(
            parse_rfc3339("2026-11-23T20:15:04Z"),
            Some(1_795_464_904_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00.5Z"),
            Some(1_709_164_800_500)
        );
        assert_eq!(clock_time(1_795_464_904_000), "20:15");
    }

    #[test]
    fn malformed_times_are_none_not_panics() {
        for text in [
            "2026-01-01T00:00:00.éééZ",
            "99999-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "é",
            "",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T20:15:04+00:00"),
            Some(1_795_464_904_000)
        );
        assert_eq!(
            ago(i64::MIN, i64::MAX),
            format!("{}d ago", i64::MAX / 1000 / 86_400)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_none(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }

        #[test]
        fn timestamp_shaped_text_parses_or_is_none(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9é]{0,12})?(Z|\\+00:00|é)") {
            if let Some(ms) = parse_rfc3339(&text) {
                proptest::prop_assert!(ms >= 0);
            }
        }

        #[test]
        fn any_unix_ms_formats(ms in proptest::num::i64::ANY, now in proptest::num::i64::ANY) {
            let _ = (rfc3339(ms), clock_time(ms), ago(ms, now));
        }
    }

    #[test]
    fn ago_uses_the_largest_sensible_unit() {
        assert_eq!(ago(0, 42_000), "42s ago");
        assert_eq!(ago(0, 600_000), "10m ago");
        assert_eq!(ago(0, 3 * 86_400_000), "3d ago");
    }
}
