use std::io::Read;
use std::path::Path;
use std::sync::Arc;

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
    let hasher = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    verify_blocks(r, first_seq, prev, BLOCK, hasher)
}

/// Bytes read at a time (a block grows to hold a longer line).
const BLOCK: usize = 1 << 20;
/// The first block's size: small logs (most checkpoint scans, the tests'
/// tens of thousands of small verifications) do not pay for zeroing a
/// full block.
const FIRST_BLOCK: usize = 64 << 10;

/// Complete lines read from the log: `buf[..end]` ends with a newline (or is
/// empty), `buf[end..len]` is the start of the next line, and `eof` says the
/// reader had nothing more.
struct Block {
    buf: Vec<u8>,
    len: usize,
    end: usize,
    eof: bool,
}

impl Block {
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let done = &self.buf[..self.end];
        let mut at = 0;
        memchr::memchr_iter(b'\n', done).map(move |nl| {
            let line = &done[at..nl];
            at = nl + 1;
            line
        })
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.end..self.len]
    }
}

/// Read the next block into `buf` (any length; zero-filled to `size` once and
/// reused): `carry` (the cut-off line of the block before) first, then as
/// much as fits, and more if not even one line does.
fn read_block<R: Read>(
    r: &mut R,
    carry: &[u8],
    mut buf: Vec<u8>,
    size: usize,
) -> std::io::Result<Block> {
    let want = size.max(carry.len() * 2);
    if buf.len() < want {
        // A fresh zeroed allocation (calloc: pages the kernel zeroes, and no
        // byte-by-byte fill in unoptimised builds, where `resize` was most of
        // the tamper tests' time); what `buf` held is overwritten below anyway.
        buf = vec![0; want];
    }
    buf[..carry.len()].copy_from_slice(carry);
    let mut len = carry.len();
    let mut eof = false;
    loop {
        if len == buf.len() {
            if memchr::memchr(b'\n', &buf[carry.len()..len]).is_some() {
                break;
            }
            let grown = buf.len() * 2;
            buf.resize(grown, 0);
        }
        match r.read(&mut buf[len..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let end = memchr::memrchr(b'\n', &buf[..len]).map_or(0, |nl| nl + 1);
    Ok(Block { buf, len, end, eof })
}

/// The record hashes of a block's lines, where each line's `hash` member is
/// where cordon writes it ([`canonical::tail_cut`]): the work of the hashing
/// thread.
fn tail_digests(block: &Block) -> Vec<Option<[u8; 64]>> {
    block
        .lines()
        .map(|l| canonical::tail_cut(l).map(|cut| canonical::digest(l, cut)))
        .collect()
}

/// The chain as verified so far.
struct Chain {
    prev: String,
    expected: u64,
    records: u64,
}

impl Chain {
    fn tampered(&self, reason: String) -> VerifyReport {
        VerifyReport {
            status: VerifyStatus::Tampered {
                seq: self.expected,
                reason,
            },
            records: self.records,
            head: self.prev.clone(),
        }
    }

    fn accept(&mut self, hash: &str) {
        self.prev.clear();
        self.prev.push_str(hash);
        self.expected += 1;
        self.records += 1;
    }

    /// One complete line (without its newline), scanned (`scanned`) and, if
    /// the hashing thread got to it, hashed (`digest`, over the bytes
    /// [`canonical::tail_cut`] leaves): the fast path when both agree with
    /// the chain, else the full check. `Some` ends verification there.
    fn line(
        &mut self,
        body: &[u8],
        scanned: Option<canonical::Scanned>,
        digest: Option<[u8; 64]>,
    ) -> Option<VerifyReport> {
        if let Some(s) = scanned {
            let d = match digest {
                Some(d) if canonical::tail_cut(body) == Some(s.cut) => d,
                _ => canonical::digest(body, s.cut),
            };
            if s.accepts(body, self.expected, self.prev.as_bytes(), &d) {
                // Valid UTF-8 (checked by the scan).
                if let Ok(hash) = std::str::from_utf8(s.stated(body)) {
                    self.accept(hash);
                    return None;
                }
            }
        }
        // The full check, which decides and words the error.
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Some(self.tampered(format!("record is not valid JSON ({e})"))),
        };
        match check_record(v, body, self.expected, &self.prev) {
            Ok(hash) => {
                self.accept(&hash);
                None
            }
            Err(reason) => Some(self.tampered(reason)),
        }
    }

    /// The last line, which has no newline. A crash mid-write leaves a
    /// prefix of a valid record (JSON that ends early), or the whole record
    /// without its newline. Anything else was written on purpose.
    fn last_line<R: Read>(self, r: &mut R, body: &[u8]) -> std::io::Result<VerifyReport> {
        // Nothing more to read (as `BufRead::fill_buf` would ask).
        let at_eof = loop {
            match r.read(&mut [0u8; 1]) {
                Ok(n) => break n == 0,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        let parsed = serde_json::from_slice::<serde_json::Value>(body);
        let torn = at_eof
            && match &parsed {
                Err(e) => e.is_eof(),
                Ok(v) => check_record(v.clone(), body, self.expected, &self.prev).is_ok(),
            };
        if torn {
            return Ok(VerifyReport {
                status: VerifyStatus::TornTail {
                    bytes: body.len() as u64,
                },
                records: self.records,
                head: self.prev,
            });
        }
        Ok(match parsed {
            Err(e) => self.tampered(format!("record is not valid JSON ({e})")),
            Ok(v) => match check_record(v, body, self.expected, &self.prev) {
                Ok(_) => self.tampered("last record is followed by garbage".into()),
                Err(reason) => self.tampered(reason),
            },
        })
    }

    fn intact(self) -> VerifyReport {
        VerifyReport {
            status: VerifyStatus::Intact,
            records: self.records,
            head: self.prev,
        }
    }
}

/// The verification loop: blocks of `size` bytes, each line scanned here and
/// (with `hasher`, once the log is longer than a block) hashed on a second
/// thread at the same time. A record's hash covers its own line only, so the
/// hashing needs nothing from the chain; the chain and every decision stay on
/// this thread, in order, as without the second thread.
pub(super) fn verify_blocks<R: Read>(
    mut r: R,
    first_seq: u64,
    prev: &str,
    size: usize,
    hasher: bool,
) -> std::io::Result<VerifyReport> {
    let mut chain = Chain {
        prev: prev.to_owned(),
        expected: first_seq,
        records: 0,
    };
    let mut checker = canonical::Checker::new();
    let mut block = read_block(&mut r, &[], Vec::new(), size.min(FIRST_BLOCK))?;
    if !hasher || block.eof {
        // One thread: scan and hash each line in turn.
        let mut spare = Vec::new();
        loop {
            for body in block.lines() {
                if let Some(report) = chain.line(body, checker.scan(body), None) {
                    return Ok(report);
                }
            }
            if block.eof {
                return finish(chain, &mut r, &block);
            }
            let next = read_block(&mut r, block.rest(), spare, size)?;
            spare = std::mem::replace(&mut block, next).buf;
        }
    }
    std::thread::scope(|s| {
        let (to_hasher, blocks) = std::sync::mpsc::channel::<Arc<Block>>();
        let (done, digests) = std::sync::mpsc::channel::<Vec<Option<[u8; 64]>>>();
        s.spawn(move || {
            for block in blocks {
                let d = tail_digests(&block);
                // Dropped before answering, so its buffer can be reused.
                drop(block);
                if done.send(d).is_err() {
                    break;
                }
            }
        });
        let mut block = Arc::new(block);
        let _ = to_hasher.send(Arc::clone(&block));
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut scanned = Vec::new();
        loop {
            // Scan this block while the hasher hashes it ...
            scanned.clear();
            scanned.extend(block.lines().map(|body| checker.scan(body)));
            // ... and queue the next one, so the hasher never waits on us.
            let next = if block.eof {
                None
            } else {
                let buf = spare.pop().unwrap_or_default();
                let next = Arc::new(read_block(&mut r, block.rest(), buf, size)?);
                let _ = to_hasher.send(Arc::clone(&next));
                Some(next)
            };
            // A hasher that died (it cannot fail, but a panic would end it)
            // leaves every line to be hashed here.
            let hashed = digests.recv().unwrap_or_default();
            for (n, body) in block.lines().enumerate() {
                let digest = hashed.get(n).copied().flatten();
                let s = scanned.get(n).copied().flatten();
                if let Some(report) = chain.line(body, s, digest) {
                    return Ok(report);
                }
            }
            match next {
                None => return finish(chain, &mut r, &block),
                Some(next) => {
                    let done = std::mem::replace(&mut block, next);
                    if let Ok(b) = Arc::try_unwrap(done) {
                        spare.push(b.buf);
                    }
                }
            }
        }
    })
}

/// After the last block: its cut-off line, if any, is the log's last line.
fn finish<R: Read>(chain: Chain, r: &mut R, block: &Block) -> std::io::Result<VerifyReport> {
    if block.rest().is_empty() {
        Ok(chain.intact())
    } else {
        chain.last_line(r, block.rest())
    }
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
