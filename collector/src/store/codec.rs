//! Compact binary encoding of stored values: varint primitives and result blocks.
//!
//! Values are hand-encoded (LEB128 varints, zigzag for signed numbers, length-prefixed
//! UTF-8) rather than JSON, because a pass result is stored millions of times and sled's
//! per-entry overhead already dominates. Results are encoded in blocks that share one
//! string table (versions, reasons, condition texts repeat from result to result), and
//! each result stores its start time and sequence as deltas from the previous one, so a
//! typical pass result costs about ten bytes. Conditions are kept for non-pass results
//! only. The same run encoding serves sealed blocks and the groups of inbox entries.

use std::collections::HashMap;

use postflight_probe::report::{ConditionReport, Facts, Outcome};

/// A stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub &'static str);

/// Appends primitives to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// The bytes written so far.
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// Unsigned LEB128.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    /// Zigzag-encoded signed varint.
    pub(crate) fn zigzag(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub(crate) fn f64(&mut self, value: f64) {
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// A presence byte, then the string if present.
    pub(crate) fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(text) => {
                self.u8(1);
                self.str(text);
            }
            None => self.u8(0),
        }
    }

    /// Appends bytes as they are (no length).
    pub(crate) fn raw(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads primitives back, never panicking on truncated or corrupt input.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    /// The encoded value.
    buf: &'a [u8],
    /// Offset of the next unread byte.
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not read yet (a bound for pre-allocations).
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or(CodecError("value is truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError("varint is longer than 10 bytes"))
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, CodecError> {
        let raw = self.varint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A varint that must fit in `usize` (lengths, counts, indexes).
    pub(crate) fn len(&mut self) -> Result<usize, CodecError> {
        usize::try_from(self.varint()?).map_err(|_| CodecError("length does not fit in memory"))
    }

    /// A varint that must fit in `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        u32::try_from(self.varint()?).map_err(|_| CodecError("number does not fit in 32 bits"))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, CodecError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError("value is truncated"))?;
        self.pos = end;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(f64::from_bits(u64::from_le_bytes(array)))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.len()?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or(CodecError("length is too large"))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError("value is truncated"))?;
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError("string is not UTF-8"))
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_owned)
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }
}

/// Outcome as a 2-bit code.
pub(crate) fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
        Outcome::Error => 2,
    }
}

/// Inverse of [`outcome_code`].
pub(crate) fn outcome_from_code(code: u8) -> Result<Outcome, CodecError> {
    match code {
        0 => Ok(Outcome::Pass),
        1 => Ok(Outcome::Fail),
        2 => Ok(Outcome::Error),
        _ => Err(CodecError("unknown outcome code")),
    }
}

/// One stored result, without what its series already says (service, check, probe, kind).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawResult {
    /// When the run started, unix milliseconds.
    pub started_at_ms: i64,
    /// The probe's result sequence number.
    pub seq: u64,
    /// How long the run took, microseconds.
    pub duration_us: u64,
    /// How the run ended.
    pub outcome: Outcome,
    /// Why it failed or errored.
    pub reason: Option<String>,
    /// Observed facts.
    pub facts: Facts,
    /// Conditions, kept for non-pass results only.
    pub conditions: Vec<ConditionReport>,
}

/// Format marker of a result block, so the layout can evolve.
const BLOCK_FORMAT: u8 = 1;

// Header byte of one result: outcome in bits 0-1, then presence flags.
const HAS_REASON: u8 = 1 << 2;
const HAS_STATUS: u8 = 1 << 3;
const HAS_VERSION: u8 = 1 << 4;
const HAS_EXTRA_FACTS: u8 = 1 << 5;
const HAS_CONDITIONS: u8 = 1 << 6;

// Flags byte of the rarer facts.
const FACT_CERT_DAYS: u8 = 1;
const FACT_CERT_EXPIRES: u8 = 1 << 1;
const FACT_EXIT: u8 = 1 << 2;
const FACT_VALUE: u8 = 1 << 3;
const FACT_MISSING: u8 = 1 << 4;
const FACT_FAILED_ITERATION: u8 = 1 << 5;

// Flags byte of one condition.
const CONDITION_OK: u8 = 1;
const CONDITION_HAS_ERROR: u8 = 1 << 1;

/// Strings of one block, each stored once and referred to by index.
#[derive(Default)]
struct StringTable<'a> {
    /// Index of each string already in the table.
    index: HashMap<&'a str, u64>,
    /// The strings in index order.
    strings: Vec<&'a str>,
}

impl<'a> StringTable<'a> {
    fn intern(&mut self, text: &'a str) -> u64 {
        if let Some(&index) = self.index.get(text) {
            return index;
        }
        let index = self.strings.len() as u64;
        self.strings.push(text);
        self.index.insert(text, index);
        index
    }
}

/// Encodes runs of results that share one string table (a block, or the groups of an
/// inbox entry). Write the runs, then [`finish`](Self::finish) puts the table first.
#[derive(Default)]
pub(crate) struct ResultsEncoder<'a> {
    /// Strings referenced by the runs so far.
    table: StringTable<'a>,
}

impl<'a> ResultsEncoder<'a> {
    /// Writes `results` (sorted by start, seq) as a count and records; start times and
    /// sequence numbers are deltas from `base_*` (the first result's, usually).
    pub(crate) fn run(
        &mut self,
        out: &mut Writer,
        base_ts: i64,
        base_seq: u64,
        results: &'a [RawResult],
    ) {
        out.varint(results.len() as u64);
        let (mut prev_ts, mut prev_seq) = (base_ts, base_seq);
        for result in results {
            out.zigzag(result.started_at_ms.wrapping_sub(prev_ts));
            out.zigzag(result.seq.wrapping_sub(prev_seq) as i64);
            encode_result_body(out, &mut self.table, result);
            (prev_ts, prev_seq) = (result.started_at_ms, result.seq);
        }
    }

    /// Appends the string table and then `body` (the runs) to `out`.
    pub(crate) fn finish(self, out: &mut Writer, body: &[u8]) {
        out.varint(self.table.strings.len() as u64);
        for text in &self.table.strings {
            out.str(text);
        }
        out.raw(body);
    }
}

/// Reads a string table written by [`ResultsEncoder::finish`].
pub(crate) fn read_table<'a>(input: &mut Reader<'a>) -> Result<Vec<&'a str>, CodecError> {
    let len = input.len()?;
    let mut table = Vec::with_capacity(len.min(input.remaining()));
    for _ in 0..len {
        table.push(input.str()?);
    }
    Ok(table)
}

/// Reads one run written by [`ResultsEncoder::run`].
pub(crate) fn read_run(
    input: &mut Reader<'_>,
    table: &[&str],
    base_ts: i64,
    base_seq: u64,
) -> Result<Vec<RawResult>, CodecError> {
    let count = input.len()?;
    let mut results = Vec::with_capacity(count.min(input.remaining()));
    let (mut prev_ts, mut prev_seq) = (base_ts, base_seq);
    for _ in 0..count {
        let started_at_ms = prev_ts.wrapping_add(input.zigzag()?);
        let seq = prev_seq.wrapping_add(input.zigzag()? as u64);
        results.push(decode_result_body(input, table, started_at_ms, seq)?);
        (prev_ts, prev_seq) = (started_at_ms, seq);
    }
    Ok(results)
}

/// Encodes a block: results sorted by (start, seq); `base_*` are those of its key.
pub(crate) fn encode_results(base_ts: i64, base_seq: u64, results: &[RawResult]) -> Vec<u8> {
    let mut encoder = ResultsEncoder::default();
    let mut body = Writer::with_capacity(results.len() * 12 + 4);
    encoder.run(&mut body, base_ts, base_seq, results);
    let body = body.into_bytes();
    let mut out = Writer::with_capacity(body.len() + 32);
    out.u8(BLOCK_FORMAT);
    encoder.finish(&mut out, &body);
    out.into_bytes()
}

/// Decodes a block written by [`encode_results`] with the same base.
pub(crate) fn decode_results(
    base_ts: i64,
    base_seq: u64,
    bytes: &[u8],
) -> Result<Vec<RawResult>, CodecError> {
    let mut input = Reader::new(bytes);
    if input.u8()? != BLOCK_FORMAT {
        return Err(CodecError("unknown result block format"));
    }
    let table = read_table(&mut input)?;
    read_run(&mut input, &table, base_ts, base_seq)
}

fn encode_result_body<'a>(out: &mut Writer, table: &mut StringTable<'a>, result: &'a RawResult) {
    let facts = &result.facts;
    let extra = extra_fact_flags(facts);
    let mut header = outcome_code(result.outcome);
    let flag = |present: bool, bit: u8| if present { bit } else { 0 };
    header |= flag(result.reason.is_some(), HAS_REASON);
    header |= flag(facts.status.is_some(), HAS_STATUS);
    header |= flag(facts.version.is_some(), HAS_VERSION);
    header |= flag(extra != 0, HAS_EXTRA_FACTS);
    header |= flag(!result.conditions.is_empty(), HAS_CONDITIONS);
    out.u8(header);
    out.varint(result.duration_us);
    if let Some(status) = facts.status {
        out.varint(u64::from(status));
    }
    if let Some(version) = &facts.version {
        out.varint(table.intern(version));
    }
    if let Some(reason) = &result.reason {
        out.varint(table.intern(reason));
    }
    if extra != 0 {
        encode_extra_facts(out, table, facts, extra);
    }
    if !result.conditions.is_empty() {
        encode_conditions(out, table, &result.conditions);
    }
}

fn extra_fact_flags(facts: &Facts) -> u8 {
    let mut flags = 0;
    let mut set = |present: bool, bit: u8| {
        if present {
            flags |= bit;
        }
    };
    set(facts.cert_days_left.is_some(), FACT_CERT_DAYS);
    set(facts.cert_expires_at.is_some(), FACT_CERT_EXPIRES);
    set(facts.exit.is_some(), FACT_EXIT);
    set(facts.value.is_some(), FACT_VALUE);
    set(!facts.missing.is_empty(), FACT_MISSING);
    set(facts.failed_iteration.is_some(), FACT_FAILED_ITERATION);
    flags
}

fn encode_extra_facts<'a>(
    out: &mut Writer,
    table: &mut StringTable<'a>,
    facts: &'a Facts,
    flags: u8,
) {
    out.u8(flags);
    if let Some(days) = facts.cert_days_left {
        out.f64(days);
    }
    if let Some(expires) = facts.cert_expires_at {
        out.zigzag(expires);
    }
    if let Some(exit) = facts.exit {
        out.zigzag(i64::from(exit));
    }
    if let Some(value) = facts.value {
        out.f64(value);
    }
    if !facts.missing.is_empty() {
        out.varint(facts.missing.len() as u64);
        for name in &facts.missing {
            out.varint(table.intern(name));
        }
    }
    if let Some(iteration) = facts.failed_iteration {
        out.varint(u64::from(iteration));
    }
}

fn encode_conditions<'a>(
    out: &mut Writer,
    table: &mut StringTable<'a>,
    conditions: &'a [ConditionReport],
) {
    out.varint(conditions.len() as u64);
    for condition in conditions {
        out.varint(table.intern(&condition.expression));
        out.varint(table.intern(&condition.expected));
        out.varint(table.intern(&condition.actual));
        let mut flags = if condition.ok { CONDITION_OK } else { 0 };
        if condition.error.is_some() {
            flags |= CONDITION_HAS_ERROR;
        }
        out.u8(flags);
        if let Some(error) = &condition.error {
            out.varint(table.intern(error));
        }
    }
}

/// Looks up a string-table reference.
fn table_string(input: &mut Reader<'_>, table: &[&str]) -> Result<String, CodecError> {
    let index = input.len()?;
    table
        .get(index)
        .map(|s| (*s).to_owned())
        .ok_or(CodecError("string index out of range"))
}

fn decode_result_body(
    input: &mut Reader<'_>,
    table: &[&str],
    started_at_ms: i64,
    seq: u64,
) -> Result<RawResult, CodecError> {
    let header = input.u8()?;
    let outcome = outcome_from_code(header & 0b11)?;
    let duration_us = input.varint()?;
    let mut facts = Facts::default();
    if header & HAS_STATUS != 0 {
        let status = u16::try_from(input.varint()?);
        facts.status = Some(status.map_err(|_| CodecError("status code out of range"))?);
    }
    if header & HAS_VERSION != 0 {
        facts.version = Some(table_string(input, table)?);
    }
    let reason = match header & HAS_REASON {
        0 => None,
        _ => Some(table_string(input, table)?),
    };
    if header & HAS_EXTRA_FACTS != 0 {
        decode_extra_facts(input, table, &mut facts)?;
    }
    let conditions = match header & HAS_CONDITIONS {
        0 => Vec::new(),
        _ => decode_conditions(input, table)?,
    };
    Ok(RawResult {
        started_at_ms,
        seq,
        duration_us,
        outcome,
        reason,
        facts,
        conditions,
    })
}

fn decode_extra_facts(
    input: &mut Reader<'_>,
    table: &[&str],
    facts: &mut Facts,
) -> Result<(), CodecError> {
    let flags = input.u8()?;
    if flags & FACT_CERT_DAYS != 0 {
        facts.cert_days_left = Some(input.f64()?);
    }
    if flags & FACT_CERT_EXPIRES != 0 {
        facts.cert_expires_at = Some(input.zigzag()?);
    }
    if flags & FACT_EXIT != 0 {
        let exit = i32::try_from(input.zigzag()?);
        facts.exit = Some(exit.map_err(|_| CodecError("exit code out of range"))?);
    }
    if flags & FACT_VALUE != 0 {
        facts.value = Some(input.f64()?);
    }
    if flags & FACT_MISSING != 0 {
        let count = input.len()?;
        for _ in 0..count {
            facts.missing.push(table_string(input, table)?);
        }
    }
    if flags & FACT_FAILED_ITERATION != 0 {
        facts.failed_iteration = Some(input.u32()?);
    }
    Ok(())
}

fn decode_conditions(
    input: &mut Reader<'_>,
    table: &[&str],
) -> Result<Vec<ConditionReport>, CodecError> {
    let count = input.len()?;
    let mut conditions = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let expression = table_string(input, table)?;
        let expected = table_string(input, table)?;
        let actual = table_string(input, table)?;
        let flags = input.u8()?;
        let error = match flags & CONDITION_HAS_ERROR {
            0 => None,
            _ => Some(table_string(input, table)?),
        };
        conditions.push(ConditionReport {
            expression,
            expected,
            actual,
            ok: flags & CONDITION_OK != 0,
            error,
        });
    }
    Ok(conditions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pass_result(ts: i64, seq: u64) -> RawResult {
        RawResult {
            started_at_ms: ts,
            seq,
            duration_us: 12_345,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts {
                status: Some(200),
                version: Some("1.4.2".into()),
                ..Facts::default()
            },
            conditions: Vec::new(),
        }
    }

    fn failed_result(ts: i64, seq: u64) -> RawResult {
        RawResult {
            started_at_ms: ts,
            seq,
            duration_us: 5_000_000,
            outcome: Outcome::Fail,
            reason: Some("body.status is \"degraded\"".into()),
            facts: Facts {
                status: Some(503),
                version: Some("1.4.2".into()),
                cert_days_left: Some(-1.5),
                cert_expires_at: Some(1_700_000_000),
                exit: Some(-9),
                value: Some(f64::NAN),
                missing: vec!["libpango-1.0.so.0".into(), "MONGODB_URI".into()],
                failed_iteration: Some(3),
            },
            conditions: vec![
                ConditionReport {
                    expression: "status == 200".into(),
                    expected: "== 200".into(),
                    actual: "503".into(),
                    ok: false,
                    error: None,
                },
                ConditionReport {
                    expression: "body.status == \"ok\"".into(),
                    expected: "== \"ok\"".into(),
                    actual: "<none>".into(),
                    ok: false,
                    error: Some("body is not JSON".into()),
                },
            ],
        }
    }

    #[test]
    fn result_without_conditions_round_trips_in_a_few_bytes() {
        let results = vec![pass_result(1_700_000_000_000, 41)];
        let bytes = encode_results(1_700_000_000_000, 41, &results);
        assert!(bytes.len() <= 20, "pass result took {} bytes", bytes.len());
        assert_eq!(
            decode_results(1_700_000_000_000, 41, &bytes).unwrap(),
            results
        );
    }

    #[test]
    fn result_with_conditions_and_all_facts_round_trips() {
        let results = vec![failed_result(-20, 7)];
        let bytes = encode_results(-20, 7, &results);
        let decoded = decode_results(-20, 7, &bytes).unwrap();
        // NaN != NaN, so compare its bits separately.
        assert!(decoded[0].facts.value.unwrap().is_nan());
        let mut expected = results[0].clone();
        let mut actual = decoded[0].clone();
        expected.facts.value = None;
        actual.facts.value = None;
        assert_eq!(actual, expected);
    }

    #[test]
    fn block_shares_strings_and_deltas_between_results() {
        let base = 1_700_000_000_000;
        let results: Vec<RawResult> = (0..32)
            .map(|i| pass_result(base + i * 10_000, 100 + i as u64 * 3))
            .collect();
        let bytes = encode_results(base, 100, &results);
        assert!(
            bytes.len() <= 32 * 10 + 16,
            "block took {} bytes",
            bytes.len()
        );
        assert_eq!(decode_results(base, 100, &bytes).unwrap(), results);
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let bytes = encode_results(0, 0, &[failed_result(0, 0)]);
        for cut in 0..bytes.len() {
            assert!(decode_results(0, 0, &bytes[..cut]).is_err());
        }
        assert!(decode_results(0, 0, &[9]).is_err());
    }

    #[test]
    fn varints_round_trip_extremes() {
        let mut out = Writer::default();
        for v in [0, 1, 127, 128, u64::MAX] {
            out.varint(v);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            out.zigzag(v);
        }
        let bytes = out.into_bytes();
        let mut input = Reader::new(&bytes);
        for v in [0, 1, 127, 128, u64::MAX] {
            assert_eq!(input.varint().unwrap(), v);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(input.zigzag().unwrap(), v);
        }
        assert!(input.is_at_end());
    }
}
