use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;

use super::canonical;
use super::record::hash_value;
use super::GENESIS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum VerifyStatus {
    /// Every record chains and hashes correctly.
    Intact,
    /// Every complete record is intact, but the last line is cut short: a
    /// crash in the middle of a write, not an edit.
    TornTail { bytes: u64 },
    /// The chain breaks at `seq`: a record was altered, removed, reordered or
    /// inserted there.
    Tampered { seq: u64, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    #[serde(flatten)]
    pub status: VerifyStatus,
    /// Records that verified.
    pub records: u64,
    /// Hash of the last intact record (the head of the chain).
    pub head: String,
}

pub fn verify_file(path: &Path) -> std::io::Result<VerifyReport> {
    match std::fs::File::open(path) {
        Ok(f) => verify_reader(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VerifyReport {
            status: VerifyStatus::Intact,
            records: 0,
            head: GENESIS.to_owned(),
        }),
        Err(e) => Err(e),
    }
}

/// Stream the log once, checking seq, prev, hash and canonical form.
pub fn verify_reader<R: Read>(r: R) -> std::io::Result<VerifyReport> {
    verify_reader_from(r, 1, GENESIS)
}

/// Verify a suffix of a log that starts at record `first_seq`, whose
/// predecessor's hash is `prev` (from a trusted earlier verification or a
/// checkpoint). `records` in the report counts only the suffix.
pub fn verify_reader_from<R: Read>(
    r: R,
    first_seq: u64,
    prev: &str,
) -> std::io::Result<VerifyReport> {
    let mut reader = BufReader::with_capacity(1 << 20, r);
    let mut line = Vec::with_capacity(1024);
    let mut prev = prev.to_owned();
    let mut expected = first_seq;
    let mut records = 0u64;
    let tampered = |seq: u64, reason: String, records: u64, head: &str| VerifyReport {
        status: VerifyStatus::Tampered { seq, reason },
        records,
        head: head.to_owned(),
    };
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let body = if complete {
            &line[..line.len() - 1]
        } else {
            &line[..]
        };
        if !complete {
            // The last line has no newline. A crash mid-write leaves a prefix
            // of a valid record (JSON that ends early), or the whole record
            // without its newline. Anything else was written on purpose.
            let at_eof = reader.fill_buf()?.is_empty();
            let parsed = serde_json::from_slice::<serde_json::Value>(body);
            let torn = at_eof
                && match &parsed {
                    Err(e) => e.is_eof(),
                    Ok(v) => check_record(v.clone(), body, expected, &prev).is_ok(),
                };
            if torn {
                return Ok(VerifyReport {
                    status: VerifyStatus::TornTail {
                        bytes: body.len() as u64,
                    },
                    records,
                    head: prev,
                });
            }
        }
        if complete {
            // The stored bytes, scanned and hashed once; anything the fast
            // path is not sure of falls through to the full check below.
            if let Some(hash) = canonical::check(body, expected, &prev) {
                prev = hash;
                expected += 1;
                records += 1;
                continue;
            }
        }
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(tampered(
                    expected,
                    format!("record is not valid JSON ({e})"),
                    records,
                    &prev,
                ))
            }
        };
        match check_record(v, body, expected, &prev) {
            Ok(hash) => {
                if !complete {
                    return Ok(tampered(
                        expected,
                        "last record is followed by garbage".into(),
                        records,
                        &prev,
                    ));
                }
                prev = hash;
                expected += 1;
                records += 1;
            }
            Err(reason) => return Ok(tampered(expected, reason, records, &prev)),
        }
    }
    Ok(VerifyReport {
        status: VerifyStatus::Intact,
        records,
        head: prev,
    })
}

fn check_record(
    mut v: serde_json::Value,
    body: &[u8],
    expected: u64,
    prev: &str,
) -> Result<String, String> {
    let seq = v
        .get("seq")
        .and_then(|s| s.as_u64())
        .ok_or("record has no seq")?;
    if seq != expected {
        return Err(format!(
            "expected seq {expected}, found {seq} (a record was removed, inserted or reordered)"
        ));
    }
    let p = v
        .get("prev")
        .and_then(|s| s.as_str())
        .ok_or("record has no prev")?;
    if p != prev {
        return Err("prev does not match the hash of the record before it".into());
    }
    let stated = v
        .get("hash")
        .and_then(|s| s.as_str())
        .ok_or("record has no hash")?
        .to_owned();
    let canonical = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    if canonical != body {
        return Err("record is not in canonical form (it was edited)".into());
    }
    let actual = hash_value(&mut v)?;
    if actual != stated {
        return Err("hash does not match the record's content (it was edited)".into());
    }
    Ok(stated)
}

/// The full check of one complete line (parse, re-serialise, compare, hash),
/// as the loop above runs it when the fast path declines: the reference the
/// fast path is tested against.
#[cfg(test)]
pub(super) fn full_check(body: &[u8], expected: u64, prev: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("record is not valid JSON ({e})"))?;
    check_record(v, body, expected, prev)
}
