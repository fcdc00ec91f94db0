//! Human units in config: durations (`500ms`, `30s`, `1m30s`, `14d`) and byte sizes
//! (`64MiB`, `1 MiB`, `512k`).
//!
//! Both parse from strings and deserialize from TOML so that a bad value is reported by
//! the TOML parser with its line and column.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the human way in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// A byte size written the human way in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// The longest duration accepted anywhere (100 years): every `now + duration` and every
/// conversion to milliseconds stays far inside `i64`.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a duration or a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty duration; write e.g. \"500ms\", \"30s\", \"5m\"")]
    EmptyDuration,
    #[error("invalid duration {text:?}: {reason}; write e.g. \"500ms\", \"30s\", \"1h30m\"")]
    InvalidDuration { text: String, reason: String },
    #[error("duration {text:?} is longer than the 100-year limit")]
    DurationTooLong { text: String },
    #[error("invalid size {text:?}; write e.g. \"64MiB\"")]
    InvalidSize { text: String },
    #[error("invalid size {text:?}: unknown unit {unit:?} (use KiB, MiB, GiB)")]
    UnknownSizeUnit { text: String, unit: String },
    #[error("size {text:?} is too large")]
    SizeTooLarge { text: String },
}

/// Parse `500ms`, `30s`, `5m`, `2h`, `14d`, `1h30m`, `1.5s`, `250us`, `1h 30m` (the
/// `humantime` syntax). A bare `0` is zero; a bare number without unit is an error.
/// Durations above [`MAX_DURATION`] are refused.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    let duration = humantime::parse_duration(s).map_err(|e| UnitError::InvalidDuration {
        text: shorten(text),
        reason: duration_problem(&e),
    })?;
    if duration > MAX_DURATION {
        return Err(UnitError::DurationTooLong {
            text: shorten(text),
        });
    }
    Ok(duration)
}

/// What is wrong with a duration, in the words config/README.md uses.
fn duration_problem(error: &humantime::DurationError) -> String {
    match error {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a number lacks its unit (us, ms, s, m, h, d, w)".into()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!(
                "unknown unit {:?} (use us, ms, s, m, h, d, w)",
                shorten(unit)
            )
        }
        humantime::DurationError::NumberOverflow => "the number is too large".into(),
        other => other.to_string(),
    }
}

/// Whole milliseconds of `d` as `i64`, saturating (for time arithmetic on unix ms).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// At most 64 characters of `text` for an error message (hostile input can be huge).
fn shorten(text: &str) -> String {
    const KEEP: usize = 64;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Render a duration compactly: `250ms`, `30s`, `5m`, `1h30m`, `14d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}us", d.as_micros())
        };
    }
    if ms < 1000 || !ms.is_multiple_of(1000) {
        return if ms < 10_000 {
            format!("{ms}ms")
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Parse `64MiB`, `1 MiB`, `512KiB`, `10MB`, `4096`, `512k`.
pub fn parse_byte_size(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..split].parse().map_err(|_| UnitError::InvalidSize {
        text: shorten(text),
    })?;
    let factor: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        unit => {
            return Err(UnitError::UnknownSizeUnit {
                text: shorten(text),
                unit: shorten(unit),
            });
        }
    };
    let bytes = number * factor;
    // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast exact-or-below.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError::SizeTooLarge {
            text: shorten(text),
        });
    }
    Ok(bytes as u64)
}

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
    pub fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        parse_duration(s).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"500ms\", \"30s\" or \"5m\"")
        })? {
            Raw::Text(t) => parse_duration(&t)
                .map(HumanDuration)
                .map_err(serde::de::Error::custom),
            Raw::Seconds(s) if s <= MAX_DURATION.as_secs() => Ok(HumanDuration::from_secs(s)),
            Raw::Seconds(s) => Err(serde::de::Error::custom(UnitError::DurationTooLong {
                text: s.to_string(),
            })),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a size such as \"64MiB\" or a number of bytes")
        })? {
            Raw::Text(t) => parse_byte_size(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
            Raw::Bytes(b) => Ok(ByteSize(b)),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn durations_format_compactly() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_byte_size("1 MiB"), Ok(1024 * 1024));
        assert_eq!(parse_byte_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("lots").is_err());
    }

    #[test]
    fn durations_beyond_the_limit_are_errors_not_panics() {
        for text in [
            "99999999999999999999s",
            "18446744073709551615s 1s",
            "200y",
            "1e30s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        let too_long: Result<HumanDuration, _> = toml::from_str::<toml::Table>("d = 99999999999")
            .map(|t| t["d"].clone())
            .and_then(HumanDuration::deserialize);
        assert!(too_long.is_err());
    }

    #[test]
    fn sizes_beyond_u64_are_errors() {
        assert!(parse_byte_size("99999999999999999999GiB").is_err());
        assert!(parse_byte_size("1.5.5MiB").is_err());
    }

    #[test]
    fn millis_saturates() {
        assert_eq!(millis(Duration::MAX), i64::MAX);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }

    proptest::proptest! {
        #[test]
        fn any_duration_text_parses_or_errors_within_the_limit(text in "\\PC{0,40}") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(d <= MAX_DURATION);
            }
        }

        #[test]
        fn unit_shaped_duration_text_never_panics(text in "[0-9.]{0,30}(us|µs|ms|s|m|h|d|w|y|x)?[0-9.]{0,25}[smhd]?") {
            let _ = parse_duration(&text);
            let _ = parse_byte_size(&text);
        }

        #[test]
        fn any_size_text_parses_or_errors(text in "[0-9.]{0,30} ?(k|KiB|MiB|GiB|mb|é)?") {
            let _ = parse_byte_size(&text);
        }
    }
}
