//! Reading a response body without trusting its size.
//!
//! A health endpoint that suddenly returns a 2 GiB body must not take the probe down with
//! it: the declared `Content-Length` is checked before anything is read, then the body is
//! streamed chunk by chunk and reading stops as soon as the running total passes the cap.
//! At most one chunk beyond the cap is ever held in memory.

use reqwest::Response;

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// The body is (or declares itself) larger than the cap.
    TooLarge,
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// Capacity reserved up front when the server does not declare a length.
const UNKNOWN_LENGTH_CAPACITY: usize = 8 * 1024;

/// Read the whole body of `response`, failing once it exceeds `limit` bytes.
pub(crate) async fn read_capped(response: &mut Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
    let capacity = declared.map_or(UNKNOWN_LENGTH_CAPACITY, |length| length as usize);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `1 MiB`, `512 KiB`, `1500 bytes`: a limit as an operator wrote it.
pub(crate) fn describe_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_size;

    #[test]
    fn limits_are_described_in_the_largest_exact_unit() {
        assert_eq!(describe_size(1024 * 1024), "1 MiB");
        assert_eq!(describe_size(512 * 1024), "512 KiB");
        assert_eq!(describe_size(3 * 1024 * 1024 * 1024), "3 GiB");
        assert_eq!(describe_size(1500), "1500 bytes");
    }
}
