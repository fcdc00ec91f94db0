//! Certificate expiry: `notAfter` read from a DER X.509 certificate.
//!
//! The peer certificate of an `https` check arrives as DER bytes. We only need one field,
//! so instead of a full X.509 parser this is a minimal DER walker that follows
//! `Certificate -> tbsCertificate -> validity -> notAfter`, skipping the optional `[0]`
//! version, the serial number, the signature algorithm and the issuer on the way, and
//! decodes both `UTCTime` and `GeneralizedTime`.

/// DER tag of a `SEQUENCE`.
const SEQUENCE: u8 = 0x30;
/// DER tag of the explicit `[0]` version in `tbsCertificate`.
const VERSION: u8 = 0xA0;
/// DER tag of a `UTCTime` (`YYMMDDHHMMSSZ`).
const UTC_TIME: u8 = 0x17;
/// DER tag of a `GeneralizedTime` (`YYYYMMDDHHMMSSZ`).
const GENERALIZED_TIME: u8 = 0x18;

/// One DER element: its tag, its content, and whatever follows it.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    rest: &'a [u8],
}

/// The certificate's `notAfter` as unix seconds; the error says what could not be read.
pub fn not_after(der: &[u8]) -> Result<i64, &'static str> {
    let certificate = read_element(der)?;
    expect_tag(&certificate, SEQUENCE)?;
    let tbs = read_element(certificate.content)?;
    expect_tag(&tbs, SEQUENCE)?;
    let mut field = read_element(tbs.content)?;
    if field.tag == VERSION {
        field = read_element(field.rest)?;
    }
    // `field` is the serial number; skip it, the signature algorithm and the issuer.
    let algorithm = read_element(field.rest)?;
    let issuer = read_element(algorithm.rest)?;
    let validity = read_element(issuer.rest)?;
    expect_tag(&validity, SEQUENCE)?;
    let not_before = read_element(validity.content)?;
    let not_after = read_element(not_before.rest)?;
    decode_time(&not_after)
}

/// Split the first DER element off `input`.
fn read_element(input: &[u8]) -> Result<Element<'_>, &'static str> {
    const TRUNCATED: &str = "truncated certificate";
    let (&tag, after_tag) = input.split_first().ok_or(TRUNCATED)?;
    let (&first, after_length) = after_tag.split_first().ok_or(TRUNCATED)?;
    let (length, body) = if first < 0x80 {
        (usize::from(first), after_length)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || after_length.len() < count {
            return Err("unsupported DER length in certificate");
        }
        let length = after_length[..count]
            .iter()
            .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte));
        (length, &after_length[count..])
    };
    if body.len() < length {
        return Err(TRUNCATED);
    }
    let (content, rest) = body.split_at(length);
    Ok(Element { tag, content, rest })
}

fn expect_tag(element: &Element<'_>, tag: u8) -> Result<(), &'static str> {
    if element.tag == tag {
        Ok(())
    } else {
        Err("unexpected certificate structure")
    }
}

/// Decode a `UTCTime` or `GeneralizedTime` (UTC, `Z` suffix, optional seconds) to unix seconds.
fn decode_time(element: &Element<'_>) -> Result<i64, &'static str> {
    const BAD: &str = "malformed certificate validity time";
    let text = std::str::from_utf8(element.content).map_err(|_| BAD)?;
    let text = text.strip_suffix('Z').ok_or(BAD)?;
    let (year, rest) = match element.tag {
        UTC_TIME => {
            let short = digits(text.get(..2).ok_or(BAD)?).ok_or(BAD)?;
            // RFC 5280: YY >= 50 means 19YY, otherwise 20YY.
            (
                if short >= 50 {
                    1900 + short
                } else {
                    2000 + short
                },
                &text[2..],
            )
        }
        GENERALIZED_TIME => (digits(text.get(..4).ok_or(BAD)?).ok_or(BAD)?, &text[4..]),
        _ => return Err("unexpected certificate validity time type"),
    };
    let field = |range: std::ops::Range<usize>| rest.get(range).and_then(digits).ok_or(BAD);
    let (month, day, hour, minute) = (field(0..2)?, field(2..4)?, field(4..6)?, field(6..8)?);
    let second = if rest.len() >= 10 { field(8..10)? } else { 0 };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(BAD);
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Parse a run of ASCII digits.
fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn certificate_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn utc_time_not_after_is_read_from_a_real_certificate() {
        let der = certificate_expiring(2031, 5, 17);
        assert_eq!(not_after(&der), Ok(1_936_742_400));
    }

    #[test]
    fn generalized_time_not_after_is_read_for_years_from_2050() {
        let der = certificate_expiring(2051, 1, 1);
        assert_eq!(not_after(&der), Ok(2_556_144_000));
    }

    #[test]
    fn both_time_encodings_decode_with_seconds() {
        let utc = Element {
            tag: UTC_TIME,
            content: b"991231235959Z",
            rest: &[],
        };
        assert_eq!(decode_time(&utc), Ok(946_684_799));
        let generalized = Element {
            tag: GENERALIZED_TIME,
            content: b"20000101000000Z",
            rest: &[],
        };
        assert_eq!(decode_time(&generalized), Ok(946_684_800));
    }

    #[test]
    fn garbage_and_truncated_input_are_errors_not_panics() {
        assert!(not_after(&[]).is_err());
        assert!(not_after(&[0x30, 0x82, 0xFF]).is_err());
        assert!(not_after(b"not a certificate at all").is_err());
        let der = certificate_expiring(2031, 5, 17);
        for cut in [1, 10, der.len() / 2] {
            assert!(not_after(&der[..cut]).is_err());
        }
        let bad_time = Element {
            tag: UTC_TIME,
            content: b"99123Z",
            rest: &[],
        };
        assert!(decode_time(&bad_time).is_err());
    }
}
