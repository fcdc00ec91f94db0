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

/// Parse `500ms`, `30s`, `5m`, `2h`, `14d`, `1h30m`, `250us`. A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; write e.g. \"500ms\", \"30s\", \"5m\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} lacks a unit (ms, s, m, h, d)"))?;
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}; write e.g. \"500ms\", \"30s\", \"5m\""
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let seconds = match &after[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            unit => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use us, ms, s, m, h, d, w)"
                ));
            }
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &after[unit_len..];
    }
    Ok(total)
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
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..split]
        .parse()
        .map_err(|_| format!("invalid size {text:?}; write e.g. \"64MiB\""))?;
    let factor: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        unit => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    Ok((number * factor) as u64)
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
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
            Raw::Seconds(s) => Ok(HumanDuration::from_secs(s)),
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
}
